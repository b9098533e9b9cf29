"""4D-RGPT's student: E_v (SigLIP) -> TPE -> E_p (3x3 downsample MLP) -> LLM (Qwen2) -> D_head.

Data flow for a batch (paper Sec. 4.1, Fig. 2):
- `projector_inputs`, then `projector` (E_p): every image of the batch (SoM image tiles and
  video frames, in prompt order) goes through E_v (`vision_features`; or its features come cached,
  `r4d.model.features`, when E_v is frozen); the `feature_layer` hidden state (NVILA:
  second-to-last) gets TPE(t) added to all its tokens when the image is a frame with timestamp
  t and TPE is on; E_p maps each image to `tokens_per_image` embeddings.
- `embed`: the LLM's token embeddings, with the visual slots (`visual_token_id`, an id outside
  the vocabulary: found by an explicit boolean mask of the input ids, and replaced before the
  lookup so the embedding table never sees it) filled by the visual embeddings in order; with
  region tokens on, each `<obj_N>` position also receives E_p applied to the key frame's E_p
  inputs pooled under that region's mask on the patch grid.
- the LLM and its lm_head (D_head) give logits; the last layer's hidden states at the visual
  positions (`StudentOutput.visual_mask`) are the student latents that P4D distils.

`R4DStudent` is a transformers `PreTrainedModel` with `GenerationMixin`: `from_pretrained`
(with `dtype` / `torch_dtype` and `device_map`) returns the model, `AutoModel` finds it by the
config's `model_type` (registered in `r4d.model`), and `generate(input_ids, attention_mask,
pixel_values, visual_times, ...)` encodes the visuals once at prefill and decodes with the
LLM's KV cache (or without one, `use_cache=False`, re-encoding them each step).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from transformers import (
    GenerationMixin,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
    SiglipVisionConfig,
    SiglipVisionModel,
)
from transformers.cache_utils import Cache
from transformers.utils import ModelOutput
from transformers.utils import logging as hf_logging

from r4d.errors import InputError
from r4d.io.atomic import atomic_dir, atomic_path, match_umask, write_text
from r4d.io.weights import check_shapes, weight_shapes
from r4d.model.config import StudentConfig
from r4d.model.processor import StudentProcessor
from r4d.model.projector import DownsampleProjector
from r4d.model.tpe import timestamp_encoding

WEIGHTS = "model.safetensors"
# Inputs that only the prefill reads: later decoding steps hold no visual slot.
VISUAL_INPUTS = ("pixel_values", "visual_times", "features", "fused", "regions", "visual_embeds")


@dataclass
class StudentOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: Cache | None = None  # the LLM's KV cache, when use_cache
    hidden_states: tuple[torch.Tensor, ...] | None = None  # LLM hidden states, last = latents
    visual_mask: torch.Tensor | None = None  # (B, L) bool, where visual embeddings sit
    visual_embeds: torch.Tensor | None = None  # (V, T, H) E_p outputs, one row per image


class R4DStudent(PreTrainedModel, GenerationMixin):
    config_class = StudentConfig
    base_model_prefix = "student"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True

    def __init__(self, config: StudentConfig):
        super().__init__(config)
        vision = SiglipVisionConfig(**config.vision, vision_use_head=False)
        self.vision = SiglipVisionModel(vision)  # E_v
        self.projector = DownsampleProjector(
            vision.hidden_size, config.llm["hidden_size"], config.downsample
        )
        self.llm = Qwen2ForCausalLM(Qwen2Config(**config.llm))  # LLM + D_head (lm_head)
        self.fusion = _fusion_adapter(config, vision.hidden_size)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Nothing to do: E_v and the LLM initialise themselves (their own `post_init`), E_p
        keeps PyTorch's initialisation and a fusion layer its own (`_fusion_adapter`)."""

    def get_input_embeddings(self) -> nn.Module:
        return self.llm.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.llm.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.llm.get_output_embeddings()

    def resize_token_embeddings(self, new_num_tokens=None, pad_to_multiple_of=None, **kwargs):
        """Grow (or shrink) the LLM's embedding table and D_head, e.g. for tokens a fine-tune
        adds; the config follows."""
        table = self.llm.resize_token_embeddings(new_num_tokens, pad_to_multiple_of, **kwargs)
        self.config.llm["vocab_size"] = table.num_embeddings
        return table

    def add_fusion(self, kind: str, width: int) -> None:
        """Turn this student into a 4D-Concat ("concat") or 4D-PE ("pe") baseline that takes
        F_4D of width `width`; the new layer starts where the student is unchanged."""
        self.config.fusion, self.config.fusion_width = kind, width
        self.config.validate()
        self.fusion = _fusion_adapter(self.config, self.vision.config.hidden_size)

    def images_per_sample(self, input_ids: torch.Tensor) -> list[int]:
        """How many images (SoM image tiles and frames) each prompt of a batch holds."""
        slots = (input_ids == self.config.visual_token_id).sum(1)
        return (slots // self.config.tokens_per_image).tolist()

    # -- E_v -> TPE, what E_p reads ---------------------------------------------------------

    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """E_v's `feature_layer` hidden state, what E_p reads: (V, 3, S, S) -> (V, P, C)."""
        out = self.vision(pixel_values=pixel_values, output_hidden_states=True)
        return out.hidden_states[self.config.feature_layer]

    def projector_inputs(
        self,
        pixel_values: torch.Tensor | None,
        times: torch.Tensor,
        fused: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(V, 3, S, S) images and their timestamps (V,) (NaN: no time) -> (V, P, C), what E_p
        reads: E_v's features (+ the fusion baseline's F_4D) + TPE(t).

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
        return features

    # -- the LLM's input embeddings ------------------------------------------------------------

    def embed(
        self, input_ids, visual_embeds=None, regions=None, projector_inputs=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings with visual slots filled; returns (embeddings, visual mask). The
        slots' ids are replaced before the lookup (they are in no vocabulary); the slots must
        take every visual embedding (V images x T), or none when `visual_embeds` is None.
        `regions` (region tokens on) need the images' `projector_inputs` (V, P, C) too."""
        visual_mask = input_ids == self.config.visual_token_id
        embeds = self.llm.get_input_embeddings()(input_ids.masked_fill(visual_mask, 0))
        slots = int(visual_mask.sum())
        given = 0 if visual_embeds is None else visual_embeds.shape[0] * visual_embeds.shape[1]
        if slots != given:
            shown = (
                "no images"
                if visual_embeds is None
                else f"{visual_embeds.shape[0]} images x {visual_embeds.shape[1]}"
            )
            raise InputError(
                f"the prompts have {slots} visual slots but the images give {given} "
                f"embeddings ({shown})",
                field="input_ids",
            )
        if visual_embeds is None:
            return embeds, visual_mask
        flat = visual_embeds.reshape(-1, visual_embeds.shape[-1]).to(embeds.dtype)
        embeds = embeds.masked_scatter(visual_mask[..., None], flat)
        if regions is not None and self.config.region_tokens:
            if projector_inputs is None:
                raise InputError(
                    "region tokens need the images' E_p inputs, not only E_p's outputs",
                    field="projector_inputs",
                )
            added = self._region_embeddings(input_ids, projector_inputs, regions)
            embeds = embeds + added.to(embeds.dtype)
        return embeds, visual_mask

    def _region_embeddings(self, input_ids, projector_inputs, regions) -> torch.Tensor:
        """At every `<obj_N>` position, E_p applied to the key frame's E_p inputs averaged
        under its mask on the patch grid, as if that average filled a whole E_p block.

        Pooling on E_v's patches rather than on E_p's tokens keeps the region apart from its
        neighbours: one E_p token covers 3x3 patches (24 px at the tiny size), more than a
        whole object of the world, so a block's average mixes it with the floor and others."""
        patch = int(self.config.vision["patch_size"])
        per_patch = F.avg_pool2d(regions["masks"][:, None].float(), patch)[:, 0]  # (R, p, p)
        weights = per_patch.flatten(1)
        weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-6)
        chosen = projector_inputs[regions["visual"]]  # (R, P, C)
        pooled = torch.einsum("rp,rpc->rc", weights.to(chosen.dtype), chosen)
        block = self.config.downsample**2
        pooled = self.projector(pooled[:, None, :].expand(-1, block, -1).contiguous())[:, 0]
        where = (input_ids[regions["batch"]] == regions["token"][:, None]).to(pooled.dtype)
        added = torch.zeros(
            *input_ids.shape, pooled.shape[-1], dtype=pooled.dtype, device=pooled.device
        )
        return added.index_add(0, regions["batch"], where[..., None] * pooled[:, None, :])

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        visual_times: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        regions: dict | None = None,
        visual_embeds: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        fused: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> StudentOutput:
        """Pass images (pixel_values, visual_times), their E_v outputs (features, visual_times)
        or their E_p outputs (visual_embeds); a prompt without visual slots (a decoding step)
        takes none. `visual_times` (V,) seconds, NaN for no time (the SoM image); without it
        no image has a time (refused when TPE is on). `num_items_in_batch`: L_SFT is the sum
        of the target tokens' losses over it (default: their mean), as transformers' trainers
        do so that several processes together take the mean over the global batch's tokens.
        `cache` / `use_cache` / `position_ids` go to the LLM (what `generate` passes)."""
        if visual_embeds is None and (pixel_values is not None or features is not None):
            if visual_times is None:
                if self.config.tpe:
                    raise InputError(
                        "a student with TPE needs the visuals' times", field="visual_times"
                    )
                count = len(pixel_values if features is None else features)
                visual_times = torch.full((count,), float("nan"), device=self.device)
            inputs = self.projector_inputs(pixel_values, visual_times, fused, features)
            visual_embeds = self.projector(inputs)
        else:
            inputs = None
        embeds, visual_mask = self.embed(input_ids, visual_embeds, regions, inputs)
        if num_items_in_batch is not None:
            kwargs["num_items_in_batch"] = num_items_in_batch
        out = self.llm(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=bool(use_cache),
            labels=labels,
            output_hidden_states=output_hidden_states,
            **kwargs,
        )
        return StudentOutput(
            loss=out.loss,
            logits=out.logits,
            cache=out.cache,
            hidden_states=out.hidden_states,
            visual_mask=visual_mask,
            visual_embeds=visual_embeds,
        )

    def prepare_inputs_for_generation(self, input_ids, is_first_iteration=False, **kwargs):
        """transformers' preparation, with the visual inputs kept for the prefill only (and
        for every step when decoding without a cache, which re-reads the whole prompt)."""
        inputs = super().prepare_inputs_for_generation(
            input_ids, is_first_iteration=is_first_iteration, **kwargs
        )
        if not is_first_iteration and kwargs.get("use_cache", True):
            for name in VISUAL_INPUTS:
                inputs.pop(name, None)
        return inputs

    # -- files ---------------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path, tokenizer=None) -> None:
        """config.json + model.safetensors + generation_config.json (+ the processor: the
        tokenizer and processor_config.json), a folder `from_pretrained`, `AutoModel` and
        `AutoProcessor` read. A new folder appears whole; an existing one is updated file by
        file, each file atomically."""
        folder = Path(folder)
        self.config.architectures = [type(self).__name__]
        self.config.dtype = self.dtype
        generation = self.generation_config
        if tokenizer is not None:
            generation.eos_token_id = tokenizer.eos_token_id
            generation.pad_token_id = tokenizer.pad_token_id
        with atomic_dir(folder) if not folder.exists() else nullcontext(folder) as tmp:
            self.config.save(tmp)
            write_text(tmp / "generation_config.json", generation.to_json_string())
            state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
            with atomic_path(tmp / WEIGHTS) as weights:
                save_file(state, str(weights), metadata={"format": "pt"})
                match_umask(weights)  # safetensors writes 0600
            if tokenizer is not None:
                StudentProcessor(tokenizer, self.config).save_pretrained(str(tmp))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs) -> R4DStudent:
        """The student of a folder `save_pretrained` wrote (safetensors only), as transformers
        loads models: `dtype` (or `torch_dtype`), `device_map` and the rest as in
        `PreTrainedModel.from_pretrained`. A local folder is checked first (its config's fields,
        its weight file, every tensor's shape: an InputError naming the file); any weight left
        missing or unused is an InputError too. A schema-1 folder loads as it was.
        `progress=True` shows transformers' loading bar (default: quiet, as r4d's commands)."""
        folder = Path(pretrained_model_name_or_path)
        if folder.is_dir():
            if not (folder / WEIGHTS).is_file():
                raise InputError(f"no {WEIGHTS} (is this an r4d student folder?)", where=folder)
            checked = StudentConfig.load(folder)
            if not isinstance(kwargs.get("config"), StudentConfig):
                kwargs["config"] = checked
            with torch.device("meta"):
                skeleton = cls(kwargs["config"])
            check_shapes(skeleton, weight_shapes(folder / WEIGHTS), folder / WEIGHTS)
        want_info = kwargs.pop("output_loading_info", False)
        with quiet_loading(not kwargs.pop("progress", False)):
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs
            )
        wrong = {k: sorted(info.get(k) or []) for k in ("missing_keys", "unexpected_keys")}
        if any(wrong.values()):
            raise InputError(
                "weights do not fit the model: "
                + ", ".join(f"{k.split('_')[0]} {v[:4]} ({len(v)})" for k, v in wrong.items()),
                where=folder / WEIGHTS,
            )
        model.eval()
        return (model, info) if want_info else model


@contextmanager
def quiet_loading(quiet: bool = True):
    """transformers' progress bars off for the block (when `quiet`), as they were after."""
    was = hf_logging.is_progress_bar_enabled()
    if quiet and was:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and was:
            hf_logging.enable_progress_bar()


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
