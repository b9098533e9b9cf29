"""4D-RGPT's student: E_v (SigLIP) -> TPE -> E_p (3x3 downsample MLP) -> LLM (Qwen2) -> D_head.

Data flow for a batch (paper Sec. 4.1, Fig. 2):
- `encode_visuals`: every image of the batch (SoM images and video frames, in prompt order)
  goes through E_v (`vision_features`; or its features come cached, `r4d.model.features`, when
  E_v is frozen); the `feature_layer` hidden state (NVILA: second-to-last) gets TPE(t) added
  to all its tokens when the image is a frame with timestamp t and TPE is on; E_p maps each
  image to `tokens_per_image` embeddings.
- `embed`: the LLM's token embeddings, with the `<vis>` slots (found by an explicit boolean mask
  of the input ids) filled by the visual embeddings in order; with region tokens on, each
  `<obj_N>` position also receives the key frame's E_p features pooled under that region's mask.
- the LLM and its lm_head (D_head) give logits; the last layer's hidden states at the visual
  positions (`StudentOutput.visual_mask`) are the student latents that P4D distils.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoTokenizer,
    Qwen2Config,
    Qwen2ForCausalLM,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from r4d.errors import InputError
from r4d.io.atomic import atomic_dir, atomic_path
from r4d.io.weights import load_strict
from r4d.model.config import StudentConfig
from r4d.model.projector import DownsampleProjector, space_to_channel
from r4d.model.tpe import timestamp_encoding

WEIGHTS = "model.safetensors"


@dataclass
class StudentOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None  # LLM hidden states, last = student latents
    visual_mask: torch.Tensor  # (B, L) bool, where visual embeddings sit in the sequence
    visual_embeds: torch.Tensor  # (V, T, H) E_p outputs, one row per image


class R4DStudent(nn.Module):
    def __init__(self, config: StudentConfig):
        super().__init__()
        self.config = config
        vision = SiglipVisionConfig(**config.vision, vision_use_head=False)
        self.vision = SiglipVisionModel(vision)  # E_v
        self.projector = DownsampleProjector(
            vision.hidden_size, config.llm["hidden_size"], config.downsample
        )
        self.llm = Qwen2ForCausalLM(Qwen2Config(**config.llm))  # LLM + D_head (lm_head)
        self.fusion = _fusion_adapter(config, vision.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def add_fusion(self, kind: str, width: int) -> None:
        """Turn this student into a 4D-Concat ("concat") or 4D-PE ("pe") baseline that takes
        F_4D of width `width`; the new layer starts where the student is unchanged."""
        self.config.fusion, self.config.fusion_width = kind, width
        self.config.__post_init__()
        self.fusion = _fusion_adapter(self.config, self.vision.config.hidden_size)

    def images_per_sample(self, input_ids: torch.Tensor) -> list[int]:
        """How many images (SoM image and frames) each prompt of a batch holds."""
        slots = (input_ids == self.config.visual_token_id).sum(1)
        return (slots // self.config.tokens_per_image).tolist()

    # -- E_v -> TPE -> E_p --------------------------------------------------------------------

    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """E_v's `feature_layer` hidden state, what E_p reads: (V, 3, S, S) -> (V, P, C)."""
        out = self.vision(pixel_values=pixel_values, output_hidden_states=True)
        return out.hidden_states[self.config.feature_layer]

    def encode_visuals(
        self,
        pixel_values: torch.Tensor | None,
        times: torch.Tensor,
        fused: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(V, 3, S, S) images and their timestamps (V,) (NaN: no time) -> (V, T, H).

        `features` (V, P, C): E_v's outputs for the images (`vision_features`, e.g. read from a
        `r4d.model.features.FeatureCache`) in place of the images; E_v is then skipped.
        `fused` (V, P, D): the teacher's F_4D on each image's patch grid, for the 4D-Concat /
        4D-PE baselines (zeros where an image has none, e.g. the SoM image)."""
        if features is None:
            if pixel_values is None:
                raise InputError("give the images or E_v's features", field="pixel_values")
            features = self.vision_features(pixel_values)
        else:
            features = features.to(self.vision.dtype)  # as E_v would give them
        if self.fusion is not None:
            if fused is None:
                raise InputError(
                    f"this student ({self.config.fusion}) needs the teacher's F_4D for every image",
                    field="fused",
                )
            fused = fused.to(features.dtype)
            if self.config.fusion == "concat":
                features = self.fusion(torch.cat([features, fused], dim=-1))
            else:
                features = features + self.fusion(fused)
        if self.config.tpe:
            known = ~torch.isnan(times)
            enc = timestamp_encoding(torch.nan_to_num(times), features.shape[-1])
            enc = enc.to(features.dtype) * known[:, None].to(features.dtype)
            features = features + enc[:, None, :]
        return self.projector(features)

    # -- the LLM's input embeddings ------------------------------------------------------------

    def embed(self, input_ids, visual_embeds, regions=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings with visual slots filled; returns (embeddings, visual mask)."""
        embeds = self.llm.get_input_embeddings()(input_ids)
        visual_mask = input_ids == self.config.visual_token_id
        slots, given = int(visual_mask.sum()), visual_embeds.shape[0] * visual_embeds.shape[1]
        if slots != given:
            raise InputError(
                f"the prompts have {slots} visual slots but the images give {given} "
                f"embeddings ({visual_embeds.shape[0]} images x "
                f"{visual_embeds.shape[1]})",
                field="input_ids",
            )
        flat = visual_embeds.reshape(-1, visual_embeds.shape[-1]).to(embeds.dtype)
        embeds = embeds.masked_scatter(visual_mask[..., None], flat)
        if regions is not None and self.config.region_tokens:
            embeds = embeds + self._region_embeddings(input_ids, visual_embeds, regions)
        return embeds, visual_mask

    def _region_embeddings(self, input_ids, visual_embeds, regions) -> torch.Tensor:
        """At every `<obj_N>` position, the key frame's E_p features averaged under its mask.

        The mask (R, S, S) is averaged over each patch and summed over each E_p block, so the
        weights follow the same grid, padding and order as E_p's tokens."""
        patch = int(self.config.vision["patch_size"])
        per_patch = F.avg_pool2d(regions["masks"][:, None].float(), patch)[:, 0]  # (R, p, p)
        side = per_patch.shape[-1]
        weights = space_to_channel(
            per_patch.reshape(len(per_patch), -1, 1), side, side, self.config.downsample
        ).sum(-1)
        weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-6)
        pooled = torch.einsum(
            "rt,rth->rh", weights.to(visual_embeds.dtype), visual_embeds[regions["visual"]]
        )
        where = (input_ids[regions["batch"]] == regions["token"][:, None]).to(pooled.dtype)
        added = torch.zeros(
            *input_ids.shape, pooled.shape[-1], dtype=pooled.dtype, device=pooled.device
        )
        return added.index_add(0, regions["batch"], where[..., None] * pooled[:, None, :])

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        visual_times: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        regions: dict | None = None,
        visual_embeds: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        fused: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | None = None,
    ) -> StudentOutput:
        """Pass images (pixel_values, visual_times), their E_v outputs (features, visual_times)
        or their E_p outputs (visual_embeds). `num_items_in_batch`: L_SFT is the sum of the
        target tokens' losses over it (default: their mean), as transformers' trainers do so
        that several processes together take the mean over the global batch's tokens."""
        if visual_embeds is None:
            visual_embeds = self.encode_visuals(pixel_values, visual_times, fused, features)
        embeds, visual_mask = self.embed(input_ids, visual_embeds, regions)
        extra = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
        out = self.llm(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            labels=labels,
            output_hidden_states=output_hidden_states,
            **extra,
        )
        return StudentOutput(out.loss, out.logits, out.hidden_states, visual_mask, visual_embeds)

    # -- files ---------------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path, tokenizer=None) -> None:
        """config.json + model.safetensors (+ the tokenizer). A new folder appears whole; an
        existing one is updated file by file, each file atomically."""
        folder = Path(folder)
        with atomic_dir(folder) if not folder.exists() else nullcontext(folder) as tmp:
            self.config.save(tmp)
            state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
            with atomic_path(tmp / WEIGHTS) as weights:
                save_file(state, str(weights), metadata={"format": "pt"})
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu"):
        """(model, tokenizer) from a folder written by `save_pretrained` (safetensors only)."""
        folder = Path(folder)
        if not (folder / WEIGHTS).is_file():
            raise InputError(f"no {WEIGHTS} (is this an r4d student folder?)", where=folder)
        config = StudentConfig.load(folder)
        model = cls(config)
        state = load_file(str(folder / WEIGHTS), device=str(device))
        load_strict(model, state, folder / WEIGHTS)
        tokenizer = (
            AutoTokenizer.from_pretrained(str(folder))
            if (folder / "tokenizer.json").is_file()
            else None
        )
        return model.to(device).eval(), tokenizer


def _fusion_adapter(config: StudentConfig, vision_width: int) -> nn.Module | None:
    """4D-Concat: Linear(C + D -> C) starting as the identity on E_v's features; 4D-PE:
    Linear(D -> C) starting at zero. Either way the student starts as it was."""
    if config.fusion == "none":
        return None
    if config.fusion_width <= 0:
        raise InputError(
            "a fusion baseline needs fusion_width (the teacher's F_4D width)", field="fusion_width"
        )
    if config.fusion == "concat":
        layer = nn.Linear(vision_width + config.fusion_width, vision_width)
        with torch.no_grad():
            layer.weight.zero_()
            layer.weight[:, :vision_width] = torch.eye(vision_width)
            layer.bias.zero_()
        return layer
    layer = nn.Linear(config.fusion_width, vision_width)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def fused_latents(
    teacher_latents: torch.Tensor, images_per_sample: list[int], frames: int, patch_side: int
) -> torch.Tensor:
    """Align F_4D (B, T', h, w, D) with a batch's images: (V, P, D) on each image's patch grid.

    A sample's last `frames` images are its video frames; frame n takes token step n * T' //
    frames (the tubelet it belongs to), resized bilinearly to patch_side x patch_side; images
    before them (the SoM image) get zeros."""
    out = []
    for b, count in enumerate(images_per_sample):
        steps = teacher_latents.shape[1]
        grid = teacher_latents[b][torch.arange(frames) * steps // frames]  # (N, h, w, D)
        grid = F.interpolate(
            grid.permute(0, 3, 1, 2).float(),
            size=(patch_side, patch_side),
            mode="bilinear",
            align_corners=False,
        )
        grid = grid.permute(0, 2, 3, 1).reshape(frames, patch_side * patch_side, -1)
        pad = torch.zeros(count - frames, *grid.shape[1:], dtype=grid.dtype, device=grid.device)
        out.append(torch.cat([pad, grid]))
    return torch.cat(out)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
