"""NVILA-Lite checkpoint folders: load one from a local path (and write one, for tests and
export).

The layout (REFERENCE.md §1): a top-level `config.json` (`model_type: llava_llama`, with
`mm_vision_select_layer` and the projector type), `llm/` (a Qwen2ForCausalLM folder with its
tokenizer), `vision_tower/` (a SiglipVisionModel folder; released weights carry the
`vision_model.` key prefix of transformers 4) and `mm_projector/` (the projector's
`layers.<i>.*` weights, `mm_projector_type: mlp_downsample_3x3_fix`). Weights are read with
safetensors and nothing runs remote code. Tokens r4d's prompts need (`<vis>`, `<video>`,
`<obj_N>`) are added to the tokenizer when missing, growing the embedding table.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, Qwen2ForCausalLM, SiglipVisionModel

from r4d.errors import InputError
from r4d.io.atomic import atomic_dir, write_text
from r4d.model.config import StudentConfig
from r4d.model.modeling import R4DStudent
from r4d.model.projector import DownsampleProjector
from r4d.model.tokenizer import PROMPT_TOKENS, REGION_TOKENS, VISUAL

PROJECTOR_TYPES = ("mlp_downsample_3x3_fix", "mlp_downsample_3x3")
PARTS = ("llm", "vision_tower", "mm_projector")
_DROP = {
    "architectures",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "_name_or_path",
    "auto_map",
    "model_type",
    "vision_use_head",
}


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except OSError as err:
        raise InputError(f"cannot read ({err.strerror})", where=path) from None
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON ({err})", where=path) from None


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise InputError("no .safetensors weights", where=folder)
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


def load_nvila(
    folder: str | Path,
    time_cues=(),
    region_tokens: bool = False,
    dtype: torch.dtype = torch.float32,
):
    """(R4DStudent, tokenizer) from an NVILA-Lite checkpoint folder on local disk."""
    folder = Path(folder)
    for part in PARTS:
        if not (folder / part).is_dir():
            raise InputError(f"not an NVILA checkpoint: no {part}/ folder", where=folder)
    top = _json(folder / "config.json")
    projector_cfg = _json(folder / "mm_projector" / "config.json")
    kind = projector_cfg.get("mm_projector_type", top.get("mm_projector_type"))
    if kind not in PROJECTOR_TYPES:
        raise InputError(
            f"projector type {kind!r}; r4d reads {PROJECTOR_TYPES}",
            where=folder / "mm_projector" / "config.json",
            field="mm_projector_type",
        )

    tokenizer = AutoTokenizer.from_pretrained(str(folder / "llm"), trust_remote_code=False)
    missing = [t for t in PROMPT_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing})
    vision = SiglipVisionModel.from_pretrained(str(folder / "vision_tower"), dtype=dtype)
    llm = Qwen2ForCausalLM.from_pretrained(str(folder / "llm"), dtype=dtype)
    if len(tokenizer) > llm.get_input_embeddings().num_embeddings:
        llm.resize_token_embeddings(len(tokenizer))

    vision_cfg = {k: v for k, v in vision.config.to_diff_dict().items() if k not in _DROP}
    llm_cfg = {k: v for k, v in llm.config.to_diff_dict().items() if k not in _DROP}
    llm_cfg["vocab_size"] = llm.get_input_embeddings().num_embeddings
    config = StudentConfig(
        vision=vision_cfg,
        llm=llm_cfg,
        feature_layer=int(top.get("mm_vision_select_layer", -2)),
        time_cues=list(time_cues),
        region_tokens=region_tokens,
        visual_token_id=tokenizer.convert_tokens_to_ids(VISUAL),
        separator_token_id=tokenizer.encode("\n", add_special_tokens=False)[0],
        region_token_ids=tokenizer.convert_tokens_to_ids(REGION_TOKENS),
    )
    projector = DownsampleProjector(vision.config.hidden_size, llm.config.hidden_size)
    state = _weights(folder / "mm_projector")
    state = {k.removeprefix("mm_projector."): v for k, v in state.items()}
    try:
        projector.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise InputError(
            f"projector weights do not fit ({str(err).splitlines()[0]})",
            where=folder / "mm_projector",
        ) from None
    return _assemble(config, vision, projector.to(dtype), llm), tokenizer


def _assemble(config: StudentConfig, vision, projector, llm) -> R4DStudent:
    """An R4DStudent around modules that already hold their weights (no re-initialisation)."""
    with torch.device("meta"):
        model = R4DStudent(config)
    model.vision, model.projector, model.llm = vision, projector, llm
    return model.eval()


def save_nvila(model: R4DStudent, tokenizer, folder: str | Path) -> None:
    """Write a student in the NVILA-Lite folder layout (vision keys with `vision_model.`)."""
    with atomic_dir(Path(folder)) as tmp:
        top = {
            "model_type": "llava_llama",
            "architectures": ["LlavaLlamaModel"],
            "mm_vision_select_layer": model.config.feature_layer,
            "mm_vision_select_feature": "cls_patch",
            "mm_projector_type": "mlp_downsample_3x3_fix",
            "hidden_size": model.config.llm["hidden_size"],
            "mm_hidden_size": model.config.vision["hidden_size"],
        }
        write_text(tmp / "config.json", json.dumps(top, indent=1) + "\n")
        model.llm.save_pretrained(str(tmp / "llm"))
        tokenizer.save_pretrained(str(tmp / "llm"))
        vision_dir = tmp / "vision_tower"
        vision_dir.mkdir()
        cfg = model.vision.config.to_dict()
        cfg["architectures"] = ["SiglipVisionModel"]
        write_text(vision_dir / "config.json", json.dumps(cfg, indent=1) + "\n")
        state = {f"vision_model.{k}": v.contiguous() for k, v in model.vision.state_dict().items()}
        save_file(state, str(vision_dir / "model.safetensors"), metadata={"format": "pt"})
        proj_dir = tmp / "mm_projector"
        proj_dir.mkdir()
        write_text(
            proj_dir / "config.json",
            json.dumps(
                {"model_type": "v2l_projector", "mm_projector_type": "mlp_downsample_3x3_fix"}
            )
            + "\n",
        )
        state = {k: v.contiguous() for k, v in model.projector.state_dict().items()}
        save_file(state, str(proj_dir / "model.safetensors"), metadata={"format": "pt"})
