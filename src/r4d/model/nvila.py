"""NVILA-Lite checkpoint folders: load one from a local path, and write one that VILA loads.

The layout (REFERENCE.md §1): a top-level `config.json` (`model_type: llava_llama`, VILA's
LlavaLlamaConfig: `llm_cfg`, `vision_tower_cfg` and `mm_projector_cfg` name the sub-folders
below, with `mm_vision_select_layer`, `model_dtype`, `image_aspect_ratio`, ...), `llm/` (a
Qwen2ForCausalLM folder with its tokenizer and chat template), `vision_tower/` (a
SiglipVisionModel folder with its `preprocessor_config.json`; weights carry the
`vision_model.` key prefix of transformers 4) and `mm_projector/` (the projector's `layers.<i>.*`
weights, `mm_projector_type: mlp_downsample_3x3_fix`). Weights are read with safetensors and
nothing runs remote code.

A folder is evaluated as released: its tokenizer is used untouched (`<obj_N>` stays text; the
visual slots are ids outside the vocabulary, `r4d.model.config.VISUAL_SLOT`, and the separator
after each image is the tokenizer's own newline), and its images are made as its
preprocessor_config.json and top config say: resized with the processor's `resample` filter
(bicubic), the SoM image tiled when `image_aspect_ratio` is "dynamic" (between `min_tiles` and
`max_tiles` tiles). New tokens appear only where a fine-tune asks for them: with region tokens
on, `<obj_1>` ... `<obj_16>` are added to the tokenizer and the embedding table grows.

VILA pins transformers 4.46, so what `save_nvila` writes is readable by it as well as by the
transformers r4d runs on: the LLM's RoPE base under the v4 keys (`rope_theta`, `rope_scaling`)
beside v5's `rope_parameters`, `torch_dtype` beside `dtype`, the chat template inside
`tokenizer_config.json` as well as in `chat_template.jinja`, and a v4 tokenizer class name.

A VILA1.5-style tower (SigLIP with its attention-pooling head, `vision_use_head: true`) loads
with the head dropped: NVILA and VILA1.5 both read the hidden states of
`mm_vision_select_layer`, never the pooled output, so the head changes no logit, and without it
the student is the one `R4DStudent(config)` builds.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, Qwen2ForCausalLM, SiglipVisionModel

from r4d.errors import InputError
from r4d.io.atomic import atomic_dir, match_umask, write_text
from r4d.io.weights import read_weights, weight_shapes
from r4d.model.config import ASPECT_RATIOS, RESAMPLE, VISUAL_SLOT, StudentConfig
from r4d.model.modeling import R4DStudent, quiet_loading
from r4d.model.processor import SYSTEM
from r4d.model.projector import DownsampleProjector
from r4d.model.tokenizer import IM_END, IM_START, REGION_TOKENS

PROJECTOR_TYPE = "mlp_downsample_3x3_fix"  # r4d's E_p; what save_nvila writes
PROJECTOR_TYPES = (PROJECTOR_TYPE, "mlp_downsample_3x3")  # what load_nvila reads
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

# A Qwen2 chat opening with the system line r4d's prompts start with (`r4d.model.processor`),
# for a tokenizer that carries no template of its own: VILA formats every conversation with it.
# (json.dumps writes a string as a Jinja literal.)
CHAT_TEMPLATE = "".join(
    [
        "{% for message in messages %}",
        "{% if loop.first and message['role'] != 'system' %}",
        "{{ " + json.dumps(SYSTEM) + " }}",
        "{% endif %}",
        "{{ " + json.dumps(IM_START) + " + message['role'] + '\\n' + message['content'] + ",
        json.dumps(IM_END + "\n") + " }}",
        "{% endfor %}",
        "{% if add_generation_prompt %}{{ " + json.dumps(IM_START + "assistant\n") + " }}",
        "{% endif %}",
    ]
)
# Top-level fields NVILA-Lite releases carry that r4d has no setting for (VILA's LlavaLlamaConfig).
NVILA_LITE_FIELDS = {
    "mm_vision_select_feature": "cls_patch",
    "mm_use_im_start_end": False,
    "mm_use_im_patch_token": False,
    "fps": 0.0,  # 0: sample num_video_frames uniformly
    "vision_resolution": -1,
    "interpolate_mode": "linear",
    "s2": False,
    "dynamic_s2": False,
    "num_time_tokens": 0,
    "image_encoder": json.dumps({"_target_": "llava.model.encoders.BasicImageEncoder"}),
    "video_encoder": json.dumps({"_target_": "llava.model.encoders.BasicVideoEncoder"}),
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
        state.update(read_weights(f))
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

    for part in ("llm", "vision_tower"):  # a truncated or foreign file, named before loading
        for weights in sorted((folder / part).glob("*.safetensors")):
            weight_shapes(weights)
    tokenizer = AutoTokenizer.from_pretrained(str(folder / "llm"), trust_remote_code=False)
    if region_tokens:  # a fine-tune that asks for <obj_N> tokens (the only tokens r4d adds)
        missing = [t for t in REGION_TOKENS if t not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": missing})
    with quiet_loading():
        vision = _vision_tower(folder / "vision_tower", dtype)
        llm = Qwen2ForCausalLM.from_pretrained(str(folder / "llm"), dtype=dtype)
    if len(tokenizer) > llm.get_input_embeddings().num_embeddings:
        llm.resize_token_embeddings(len(tokenizer))

    vision_cfg = {k: v for k, v in vision.config.to_diff_dict().items() if k not in _DROP}
    llm_cfg = {k: v for k, v in llm.config.to_diff_dict().items() if k not in _DROP}
    llm_cfg["vocab_size"] = llm.get_input_embeddings().num_embeddings
    vocab = tokenizer.get_vocab()
    config = StudentConfig(
        vision=vision_cfg,
        llm=llm_cfg,
        feature_layer=int(top.get("mm_vision_select_layer", -2)),
        **_preprocessing(folder / "vision_tower"),
        **_tiling(top, folder / "config.json"),
        time_cues=list(time_cues),
        region_tokens=region_tokens,
        visual_token_id=VISUAL_SLOT,
        separator_token_id=tokenizer.encode("\n", add_special_tokens=False)[0],
        region_token_ids=[vocab[t] for t in REGION_TOKENS if t in vocab],
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


def _vision_tower(folder: Path, dtype: torch.dtype) -> SiglipVisionModel:
    """E_v from a SiglipVisionModel folder, every encoder weight filled and none left over. A
    pooling head (VILA1.5's towers) is dropped after loading (see the module docstring), so its
    weights may be there or not, whatever the config says."""
    vision, info = SiglipVisionModel.from_pretrained(
        str(folder), dtype=dtype, output_loading_info=True
    )
    missing, unexpected = (
        sorted(k for k in info[kind] if not k.startswith("head."))
        for kind in ("missing_keys", "unexpected_keys")
    )
    if missing or unexpected:
        raise InputError(
            f"vision tower weights do not fit its config: missing {missing[:4]} "
            f"({len(missing)}), unexpected {unexpected[:4]} ({len(unexpected)})",
            where=folder,
        )
    if vision.config.vision_use_head:
        del vision.head
        vision.use_head = vision.config.vision_use_head = False
    return vision


def _preprocessing(folder: Path) -> dict:
    """image_mean / image_std and the resize filter from the tower's preprocessor_config.json,
    when it has one (SiglipImageProcessor's default filter is bicubic)."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return {"resample": "bicubic"}
    processor = _json(path)
    out = {
        k: tuple(float(x) for x in processor[k])
        for k in ("image_mean", "image_std")
        if k in processor
    }
    filters = {number: name for name, number in RESAMPLE.items()}
    number = processor.get("resample", RESAMPLE["bicubic"])
    if number not in filters:
        raise InputError(
            f"resample {number!r}; r4d reads {sorted(filters)} ({', '.join(filters.values())})",
            where=path,
            field="resample",
        )
    out["resample"] = filters[number]
    return out


def _tiling(top: dict, path: Path) -> dict:
    """How the SoM image is made, from the top config: VILA's `image_aspect_ratio` ("dynamic":
    NVILA-Lite's tiles, "resize": one tile) and its tile counts."""
    aspect = top.get("image_aspect_ratio", "resize")
    if aspect not in ASPECT_RATIOS:
        raise InputError(
            f"image_aspect_ratio {aspect!r}; r4d reads {ASPECT_RATIOS}",
            where=path,
            field="image_aspect_ratio",
        )
    return {
        "image_aspect_ratio": aspect,
        "min_tiles": int(top.get("min_tiles", 1)),
        "max_tiles": int(top.get("max_tiles", 12)),
    }


def _assemble(config: StudentConfig, vision, projector, llm) -> R4DStudent:
    """An R4DStudent around modules that already hold their weights (no re-initialisation)."""
    with torch.device("meta"):
        model = R4DStudent(config)
    model.vision, model.projector, model.llm = vision, projector, llm
    return model.eval()


def save_nvila(
    model: R4DStudent,
    tokenizer,
    folder: str | Path,
    num_video_frames: int = 16,
) -> None:
    """Write a student as an NVILA-Lite folder that VILA (transformers 4.46) and `load_nvila`
    both load. `num_video_frames`: frames VILA samples per video (the paper's 16). How images
    are made comes from the student's config: `image_aspect_ratio` ("dynamic": NVILA-Lite's
    tiling of still images, "resize": one square tile), `min_tiles` / `max_tiles`, and the
    resize filter in the tower's preprocessor_config.json."""
    if model.config.fusion != "none":
        raise InputError(
            f"a {model.config.fusion!r} fusion student needs the teacher's F_4D at inference; "
            "VILA has no place for it",
            field="fusion",
        )
    dtype = model.llm.dtype
    with atomic_dir(Path(folder)) as tmp:
        llm_cfg = _save_llm(model.llm, tokenizer, tmp / "llm")
        vision_cfg = _save_vision(model, tmp / "vision_tower")
        projector_cfg = _save_projector(model.projector, tmp / "mm_projector")
        top = {
            "architectures": ["LlavaLlamaModel"],
            "model_type": "llava_llama",
            "llm_cfg": llm_cfg,
            "vision_tower_cfg": vision_cfg,
            "mm_projector_cfg": projector_cfg,
            "model_dtype": str(dtype),
            "hidden_size": model.config.llm["hidden_size"],
            "mm_hidden_size": model.config.vision["hidden_size"],
            "mm_vision_select_layer": model.config.feature_layer,
            "mm_projector_type": PROJECTOR_TYPE,
            "num_video_frames": num_video_frames,
            **NVILA_LITE_FIELDS,
            "image_aspect_ratio": model.config.image_aspect_ratio,
            "min_tiles": model.config.min_tiles,
            "max_tiles": model.config.max_tiles,
            "use_time_pe": model.config.tpe,  # 4D-RGPT's flag; plain VILA ignores it
        }
        write_text(tmp / "config.json", json.dumps(top, indent=1) + "\n")


def _v4_dtype(cfg: dict, dtype: torch.dtype) -> dict:
    """transformers 4 reads the weights' dtype from `torch_dtype`, 5 from `dtype`."""
    name = str(dtype).removeprefix("torch.")
    return {**cfg, "dtype": name, "torch_dtype": name}


def _save_llm(llm, tokenizer, folder: Path) -> dict:
    """llm/: the Qwen2 weights, a config that transformers 4 and 5 both read, the tokenizer."""
    llm.save_pretrained(str(folder))
    cfg = _v4_dtype(_json(folder / "config.json"), llm.dtype)
    rope = dict(llm.config.rope_parameters)  # v5: {"rope_type", "rope_theta", ...}
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["rope_scaling"] = None if rope.get("rope_type", "default") == "default" else rope
    write_text(folder / "config.json", json.dumps(cfg, indent=1) + "\n")
    _save_tokenizer(tokenizer, folder)
    return cfg


def _save_tokenizer(tokenizer, folder: Path) -> None:
    """The tokenizer with its chat template where transformers 4.46 looks for it
    (tokenizer_config.json) and where newer ones write it (chat_template.jinja), under a class
    name 4.46 knows."""
    tokenizer.save_pretrained(str(folder))
    template = tokenizer.chat_template or CHAT_TEMPLATE
    write_text(folder / "chat_template.jinja", template)
    path = folder / "tokenizer_config.json"
    cfg = _json(path)
    cfg["chat_template"] = template
    if cfg.get("tokenizer_class") in (None, "TokenizersBackend"):  # v5's generic fast tokenizer
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    extra = cfg.get("extra_special_tokens")
    if isinstance(extra, list):  # v5's list form; v4 calls it additional_special_tokens
        cfg.setdefault("additional_special_tokens", extra)
    write_text(path, json.dumps(cfg, indent=1) + "\n")


def _save_vision(model: R4DStudent, folder: Path) -> dict:
    """vision_tower/: SigLIP's config, weights (transformers 4's `vision_model.` keys) and the
    SiglipImageProcessor settings of the student's normalisation."""
    folder.mkdir()
    vision = model.vision
    cfg = _v4_dtype(vision.config.to_dict(), vision.dtype)
    cfg["architectures"] = ["SiglipVisionModel"]
    write_text(folder / "config.json", json.dumps(cfg, indent=1) + "\n")
    state = {f"vision_model.{k}": v.contiguous() for k, v in vision.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    match_umask(folder / "model.safetensors")  # safetensors writes 0600
    size = model.config.image_size
    processor = {
        "image_processor_type": "SiglipImageProcessor",
        "do_resize": True,
        "size": {"height": size, "width": size},
        "resample": RESAMPLE[model.config.resample],  # PIL's filter number
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(model.config.image_mean),
        "image_std": list(model.config.image_std),
    }
    write_text(folder / "preprocessor_config.json", json.dumps(processor, indent=1) + "\n")
    return cfg


def _save_projector(projector, folder: Path) -> dict:
    """mm_projector/: the `layers.<i>.*` weights and the config VILA's MultimodalProjector reads."""
    folder.mkdir()
    cfg = _v4_dtype(
        {
            "architectures": ["MultimodalProjector"],
            "model_type": "v2l_projector",
            "mm_projector_type": PROJECTOR_TYPE,
        },
        next(projector.parameters()).dtype,
    )
    write_text(folder / "config.json", json.dumps(cfg, indent=1) + "\n")
    state = {k: v.contiguous() for k, v in projector.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    match_umask(folder / "model.safetensors")  # safetensors writes 0600
    return cfg
