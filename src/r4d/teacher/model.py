"""The 4D perception teacher (L4P's shape): E_4D, a video ViT, and one DPT head D_m per modality.

- `encode`: a clip (B, T, 3, H, W) in [0, 1] -> ImageNet normalisation -> VideoMAE (E_4D) ->
  the hook block outputs F_4D, each (B, T', h, w, D) (time-major token grid).
- `decode` (`TeacherHeads`, the heads alone, is what P4D keeps frozen beside the student):
  F_4D (the teacher's own, or a student's projected latents in P4D's L_ED) -> P_m:
  depth (B, 1, T, H, W) metres (exp of the head's log-depth), flow (B, 2, T, H, W) backward
  optical flow in output pixels (frame t -> t-1), motion (B, 1, T, H, W) logits, camray
  (B, 6, T, h, w) Plucker rays [d, o x d] in the first frame's camera coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from transformers import VideoMAEConfig, VideoMAEModel

from r4d.errors import InputError
from r4d.io.atomic import atomic_path, match_umask
from r4d.io.weights import load_strict, unreadable_weights
from r4d.teacher.config import IMAGENET_MEAN, IMAGENET_STD, TeacherConfig
from r4d.teacher.heads import DPTHead3D

OUT_CHANNELS = {"depth": 1, "flow": 2, "motion": 1, "camray": 6}
WEIGHTS = "model.safetensors"


@dataclass
class TeacherOutput:
    latents: list[torch.Tensor]  # F_4D: one (B, T', h, w, D) tensor per hook
    maps: dict[str, torch.Tensor]  # P_m, see the module docstring


def build_heads(config: TeacherConfig) -> nn.ModuleDict:
    """D_m: one 3D DPT head per modality, reading the hooks' F_4D."""
    dense = {"branches": config.dense_branches, "scales": config.dense_fusion}
    heads = {
        m: DPTHead3D(
            config.width,
            config.head_channels,
            config.fusion,
            OUT_CHANNELS[m],
            **({} if m == "camray" else dense),
        )
        for m in config.modalities
    }
    return nn.ModuleDict(heads)


def decode(
    config: TeacherConfig, heads: nn.ModuleDict, latents: list[torch.Tensor], modalities=None
) -> dict[str, torch.Tensor]:
    """F_4D (B, T', h, w, D) per hook -> P_m for `modalities` (default: all the heads)."""
    hooks = [x.permute(0, 4, 1, 2, 3) for x in latents]
    frames, side = config.frames, config.image_size
    patch_grid = (frames, *config.grid[1:])
    maps = {}
    for name in modalities or config.modalities:
        raw = heads[name](hooks, patch_grid if name == "camray" else (frames, side, side))
        maps[name] = torch.exp(raw) if name == "depth" else raw
    return maps


class TeacherHeads(nn.Module):
    """The teacher's D_m without E_4D: all P4D's L_ED needs (its parameters are named as in a
    Teacher, `heads.<modality>.*`, so a teacher folder's weights load into it)."""

    SKIPPED = ("encoder.",)  # E_4D's weights in a teacher folder are left unread

    def __init__(self, config: TeacherConfig):
        super().__init__()
        self.config = config
        self.heads = build_heads(config)

    def decode(self, latents: list[torch.Tensor], modalities=None) -> dict[str, torch.Tensor]:
        return decode(self.config, self.heads, latents, modalities)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device="cpu") -> TeacherHeads:
        """The heads of a teacher folder; E_4D's weights are not read."""
        return load_folder(cls, folder, device)


class Teacher(nn.Module):
    SKIPPED = ()

    def __init__(self, config: TeacherConfig):
        super().__init__()
        self.config = config
        self.encoder = VideoMAEModel(VideoMAEConfig(**config.encoder))  # E_4D
        self.heads = build_heads(config)  # D_m
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1), False)

    def encode(self, video: torch.Tensor) -> list[torch.Tensor]:
        """(B, T, 3, H, W) in [0, 1] -> F_4D, one (B, T', h, w, D) tensor per hook."""
        expected = (self.config.frames, 3, self.config.image_size, self.config.image_size)
        if tuple(video.shape[1:]) != expected:
            raise InputError(
                f"the teacher takes clips of shape (B, {expected}), got {tuple(video.shape)}",
                field="video",
            )
        out = self.encoder(pixel_values=(video - self.mean) / self.std, output_hidden_states=True)
        t, h, w = self.config.grid
        return [out.hidden_states[i].reshape(len(video), t, h, w, -1) for i in self.config.hooks]

    def decode(self, latents: list[torch.Tensor], modalities=None) -> dict[str, torch.Tensor]:
        return decode(self.config, self.heads, latents, modalities)

    def forward(self, video: torch.Tensor, modalities=None) -> TeacherOutput:
        latents = self.encode(video)
        return TeacherOutput(latents, self.decode(latents, modalities))

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save(folder)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_path(folder / WEIGHTS) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
            match_umask(tmp)  # safetensors writes 0600

    @classmethod
    def from_pretrained(cls, folder: str | Path, device="cpu") -> Teacher:
        return load_folder(cls, folder, device)


def load_folder(cls, folder: str | Path, device="cpu"):
    """A `cls` (Teacher or TeacherHeads) from a teacher folder: its config, and from its
    weights the tensors `cls` has (strictly: every one of them; others only when `cls.SKIPPED`
    names their prefix)."""
    folder = Path(folder)
    if not (folder / WEIGHTS).is_file():
        raise InputError(f"no {WEIGHTS} (is this an r4d teacher folder?)", where=folder)
    model = cls(TeacherConfig.load(folder))
    wanted = set(model.state_dict())
    try:
        with safe_open(str(folder / WEIGHTS), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys() if k in wanted}
            unexpected = [k for k in f.keys() if k not in wanted and not k.startswith(cls.SKIPPED)]
    except (SafetensorError, OSError) as err:
        raise unreadable_weights(folder / WEIGHTS, err) from None
    if unexpected:
        raise InputError(f"unexpected weights {unexpected[:4]}", where=folder / WEIGHTS)
    load_strict(model, state, folder / WEIGHTS)
    return model.to(device).eval()
