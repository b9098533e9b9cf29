"""The teacher's configuration and presets (REFERENCE.md §3).

`encoder` holds VideoMAEConfig arguments (E_4D: tubelet + patch embedding, fixed sinusoidal
position table, pre-norm blocks with q/v biases). `hooks` are the block outputs the heads read
(F_4D); `head_channels` the per-hook branch widths of every DPT head and `fusion` their fused
width; `dense_branches` / `dense_fusion` the dense heads' resampling (L4P's by default; the tiny
preset upsamples less inside the head, which keeps its 3D convolutions cheap on a CPU). Dense
maps come out at the input's (T, H, W); camray at (T, h, w) of the patch grid.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from r4d.errors import InputError

SCHEMA = "r4d.teacher/1"
MODALITIES = ("depth", "flow", "motion", "camray")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class TeacherConfig:
    encoder: dict[str, Any]
    hooks: list[int]
    head_channels: list[int]
    fusion: int
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    # log2 resampling (t, h, w) of each hook's branch and of each refinenet (1..4), dense heads
    dense_branches: list[list[int]] = field(
        default_factory=lambda: [[1, 2, 2], [1, 1, 1], [0, 0, 0], [-1, -1, -1]]
    )
    dense_fusion: list[list[int]] = field(
        default_factory=lambda: [[0, 1, 1], [0, 1, 1], [1, 1, 1], [1, 1, 1]]
    )
    schema: str = SCHEMA

    def __post_init__(self):
        if len(self.hooks) != len(self.head_channels):
            raise InputError(
                f"{len(self.hooks)} hooks but {len(self.head_channels)} branch widths",
                field="head_channels",
            )
        depth = int(self.encoder["num_hidden_layers"])
        bad = [h for h in self.hooks if not 0 <= h <= depth]
        if bad:
            raise InputError(f"hook {bad[0]} outside the encoder's 0..{depth}", field="hooks")
        unknown = sorted(set(self.modalities) - set(MODALITIES))
        if unknown:
            raise InputError(f"unknown modality {unknown[0]!r}", field="modalities")

    @property
    def frames(self) -> int:
        return int(self.encoder["num_frames"])

    @property
    def image_size(self) -> int:
        return int(self.encoder["image_size"])

    @property
    def grid(self) -> tuple[int, int, int]:
        """(T', h, w): the token grid, time-major then row-major."""
        side = self.image_size // int(self.encoder["patch_size"])
        return self.frames // int(self.encoder["tubelet_size"]), side, side

    @property
    def width(self) -> int:
        return int(self.encoder["hidden_size"])

    def save(self, folder: str | Path) -> None:
        from r4d.io.atomic import write_text

        write_text(Path(folder) / "config.json", json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> TeacherConfig:
        path = Path(folder) / "config.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"cannot read a teacher config ({err})", where=path) from None
        if data.get("schema") != SCHEMA:
            raise InputError(f"schema {data.get('schema')!r}, expected {SCHEMA!r}", where=path)
        return cls(**data)


def tiny_config() -> TeacherConfig:
    """Trainable on a CPU: 16 frames of 64x64 in 8x8 patches, tubelet 2 (8x8x8 tokens); the
    dense heads fuse up to (16, 32, 32) and resize to (16, 64, 64) before head2."""
    encoder = {
        "image_size": 64,
        "patch_size": 8,
        "num_frames": 16,
        "tubelet_size": 2,
        "hidden_size": 128,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "intermediate_size": 512,
    }
    return TeacherConfig(
        _videomae(encoder),
        hooks=[2, 3, 4, 6],
        head_channels=[16, 24, 32, 32],
        fusion=16,
        dense_branches=[[1, 1, 1], [1, 0, 0], [0, 0, 0], [-1, -1, -1]],
        dense_fusion=[[0, 1, 1], [0, 1, 1], [1, 0, 0], [1, 1, 1]],
    )


def l4p_config() -> TeacherConfig:
    """L4P: VideoMAEv2 ViT-g/14 on 16 x 224 x 224, hooks [14, 21, 28, 36]."""
    encoder = {
        "image_size": 224,
        "patch_size": 14,
        "num_frames": 16,
        "tubelet_size": 2,
        "hidden_size": 1408,
        "num_hidden_layers": 40,
        "num_attention_heads": 16,
        "intermediate_size": 6144,
    }
    return TeacherConfig(
        _videomae(encoder), hooks=[14, 21, 28, 36], head_channels=[256, 512, 1024, 1024], fusion=256
    )


def _videomae(encoder: dict) -> dict:
    return {
        **encoder,
        "num_channels": 3,
        "qkv_bias": True,
        "use_mean_pooling": False,
        "layer_norm_eps": 1e-6,
        "hidden_act": "gelu",
    }


PRESETS = {"tiny": tiny_config, "l4p": l4p_config}
