"""The student's configuration and presets (`config.json` beside the weights).

`StudentConfig` is a transformers `PreTrainedConfig` (`model_type` "r4d_student"), so
`AutoConfig` reads a student folder. `vision` holds SiglipVisionConfig arguments (E_v), `llm`
Qwen2Config arguments (LLM + D_head); E_p's widths follow from them, and the config owns every
size derived from them (`token_grid`, `tokens_per_image`).

Token ids tie the model to its tokenizer. `visual_token_id` marks the slots that visual
embeddings fill: `VISUAL_SLOT` (-200, VILA's IMAGE_TOKEN_INDEX), an id outside every vocabulary
that the processor inserts between separately tokenized text pieces and that the embedding
lookup never sees, so a released tokenizer is used untouched. (Folders of schema 1 carry the id
of a `<vis>` token of their own tokenizer, which works the same way.) `separator_token_id`
follows every image (VILA's "\\n", the tokenizer's own newline); `region_token_ids` are
`<obj_1>`, `<obj_2>`, ... where the tokenizer has them as single tokens (r4d's own tokenizers;
an NVILA tokenizer only when a fine-tune with region tokens adds them).

How E_v's images are made: every image is resized to `image_size` squared with `resample` and
normalised with `image_mean` / `image_std`; with `image_aspect_ratio` "dynamic" (NVILA-Lite) the
SoM image is instead tiled (`r4d.model.processor.dynamic_tiles`, between `min_tiles` and
`max_tiles` tiles plus a thumbnail); "resize" (r4d's tiny students) shows it as one tile.

Schema 2 is schema 1 plus `model_type` and the image settings above; a schema-1 folder is read
as what it was (one bilinear tile a SoM image), and saving it writes schema 2.
"""

from __future__ import annotations

import json
from dataclasses import field, fields
from pathlib import Path
from typing import Any

from transformers import PreTrainedConfig, Qwen2Config

from r4d.errors import InputError

SCHEMA = "r4d.student/2"
OLD_SCHEMAS = ("r4d.student/1",)  # read as what they were (see the module docstring)
MODEL_TYPE = "r4d_student"
VISUAL_SLOT = -200  # the id of a visual slot (VILA's IMAGE_TOKEN_INDEX): in no vocabulary
TIME_CUES = ("tpe", "marks", "prompt")
FUSIONS = ("none", "concat", "pe")
ASPECT_RATIOS = ("resize", "dynamic")
RESAMPLE = {"bilinear": 2, "bicubic": 3}  # name -> PIL's filter number (preprocessor_config)


class StudentConfig(PreTrainedConfig):
    model_type = MODEL_TYPE

    vision: dict[str, Any] = field(default_factory=dict)
    llm: dict[str, Any] = field(default_factory=dict)
    feature_layer: int = -2  # E_v hidden state fed to E_p (NVILA: the second-to-last layer)
    downsample: int = 3  # E_p folds blocks of downsample x downsample patches
    time_cues: list[str] = field(default_factory=list)  # any of TIME_CUES
    region_tokens: bool = False  # add mask-pooled E_p features at <obj_N> (beyond the paper)
    # Tab. 4 baselines that feed the teacher's F_4D to the student (they need it at inference):
    # "concat" joins F_4D to E_v's features and maps back to E_v's width; "pe" adds a projection
    # of F_4D to them as a positional encoding (SR-3D style). `fusion_width` is F_4D's width.
    fusion: str = "none"
    fusion_width: int = 0
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resample: str = "bilinear"  # the filter that resizes images to image_size (NVILA: bicubic)
    image_aspect_ratio: str = "resize"  # the SoM image: one tile, or "dynamic" tiling (NVILA)
    min_tiles: int = 1
    max_tiles: int = 12
    visual_token_id: int = VISUAL_SLOT
    separator_token_id: int = 0
    region_token_ids: list[int] = field(default_factory=list)
    schema: str = SCHEMA

    def __post_init__(self, **kwargs):
        self.image_mean, self.image_std = tuple(self.image_mean), tuple(self.image_std)
        self.validate()
        super().__post_init__(**kwargs)

    def validate(self) -> None:
        """Refuse settings r4d has no meaning for (InputError naming the field)."""
        if self.schema != SCHEMA:
            raise InputError(f"schema {self.schema!r}, expected {SCHEMA!r}", field="schema")
        choices = {
            "fusion": FUSIONS,
            "image_aspect_ratio": ASPECT_RATIOS,
            "resample": tuple(RESAMPLE),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InputError(
                    f"unknown {name} {getattr(self, name)!r}; expected one of {allowed}",
                    field=name,
                )
        unknown = sorted(set(self.time_cues) - set(TIME_CUES))
        if unknown:
            raise InputError(
                f"unknown time cue(s) {unknown}; expected any of {TIME_CUES}", field="time_cues"
            )
        if not 1 <= self.min_tiles <= self.max_tiles:
            raise InputError(
                f"want 1 <= min_tiles <= max_tiles, got {self.min_tiles}, {self.max_tiles}",
                field="min_tiles",
            )

    @classmethod
    def own_fields(cls) -> list[str]:
        """The fields r4d defines (not transformers' bookkeeping): what makes two students'
        configs the same."""
        base = {f.name for f in fields(PreTrainedConfig)}
        return [f.name for f in fields(cls) if f.name not in base]

    def __eq__(self, other) -> bool:
        names = self.own_fields()
        return isinstance(other, StudentConfig) and all(
            getattr(self, n) == getattr(other, n) for n in names
        )

    __hash__ = None

    def get_text_config(self, decoder=None, encoder=None) -> Qwen2Config:
        """The LLM's config (what `generate` sizes its cache and vocabulary by)."""
        return Qwen2Config(**self.llm)

    @property
    def tpe(self) -> bool:
        return "tpe" in self.time_cues

    @property
    def image_size(self) -> int:
        return int(self.vision["image_size"])

    @property
    def patch_side(self) -> int:
        return self.image_size // int(self.vision["patch_size"])

    @property
    def token_grid(self) -> tuple[int, int]:
        """(rows, cols) of E_p's output tokens per image (blocks of downsample^2 patches, the
        last ones padded)."""
        side = -(-self.patch_side // self.downsample)
        return side, side

    @property
    def tokens_per_image(self) -> int:
        rows, cols = self.token_grid
        return rows * cols

    def save(self, folder: str | Path) -> None:
        """config.json: r4d's fields, `model_type` and transformers' own (what AutoConfig reads)."""
        from r4d.io.atomic import write_text

        write_text(Path(folder) / "config.json", self.to_json_string(use_diff=True))

    @classmethod
    def load(cls, folder: str | Path) -> StudentConfig:
        """The config.json of a student folder, every field checked (InputError naming the
        file and the field); a schema-1 file is read as schema 2 (see the module docstring)."""
        path = Path(folder) / "config.json"
        try:
            data = json.loads(path.read_text())
        except OSError as err:
            raise InputError(f"cannot read ({err.strerror})", where=path) from None
        except json.JSONDecodeError as err:
            raise InputError(f"not valid JSON ({err})", where=path) from None
        if not isinstance(data, dict):
            raise InputError(f"expected a JSON object, got {type(data).__name__}", where=path)
        if data.get("schema") in OLD_SCHEMAS:
            data["schema"] = SCHEMA
        if data.get("schema") != SCHEMA:
            raise InputError(
                f"schema {data.get('schema')!r}, expected {SCHEMA!r}", where=path, field="schema"
            )
        model_type = data.pop("model_type", MODEL_TYPE)
        if model_type != MODEL_TYPE:
            raise InputError(
                f"not an r4d student (model_type {model_type!r})",
                where=path,
                field="model_type",
            )
        known = {f.name for f in fields(cls)} | {"torch_dtype", "_name_or_path"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError("unknown field", where=path, field=unknown[0])
        for name in ("vision", "llm"):
            if not isinstance(data.get(name), dict):
                raise InputError(
                    f"expected an object, got {data.get(name)!r}", where=path, field=name
                )
        for name in ("image_mean", "image_std"):
            if name in data:
                value = data[name]
                if not (isinstance(value, list) and len(value) == 3):
                    raise InputError(f"expected 3 numbers, got {value!r}", where=path, field=name)
        try:
            return cls(**data)
        except InputError as err:
            raise InputError(err.reason, where=path, field=err.field) from None
        except (TypeError, ValueError) as err:
            raise InputError(f"not a student config ({err})", where=path) from None


def tiny_config(vocab_size: int, **overrides) -> StudentConfig:
    """About 7M parameters, trainable on a CPU: 72x72 images in 8x8 patches (a 9x9 grid, so 9
    tokens a frame after E_p), a 4-layer E_v of width 96 and a 6-layer LLM of width 256."""
    vision = {
        "hidden_size": 96,
        "intermediate_size": 384,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "image_size": 72,
        "patch_size": 8,
    }
    llm = {
        "vocab_size": vocab_size,
        "hidden_size": 256,
        "intermediate_size": 768,
        "num_hidden_layers": 6,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": False,
        "rope_theta": 10000.0,
    }
    return StudentConfig(vision=vision, llm=llm, **overrides)


def nvila_lite_8b_config(vocab_size: int = 151936, **overrides) -> StudentConfig:
    """NVILA-Lite-8B's dimensions: SigLIP so400m/14 at 448 px (E_v, width 1152) and Qwen2-7B."""
    vision = {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "image_size": 448,
        "patch_size": 14,
        "layer_norm_eps": 1e-6,
    }
    llm = {
        "vocab_size": vocab_size,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
    }
    return StudentConfig(vision=vision, llm=llm, **overrides)


PRESETS = {"tiny": tiny_config, "nvila-lite-8b": nvila_lite_8b_config}
