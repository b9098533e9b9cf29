"""The student's configuration and presets (one JSON file beside the weights).

`vision` holds SiglipVisionConfig arguments (E_v), `llm` Qwen2Config arguments (LLM + D_head);
E_p's widths follow from them. Token ids tie the model to its tokenizer: `visual_token_id` marks
the slots that visual embeddings fill, `separator_token_id` follows every image (VILA's "\\n"),
`region_token_ids` are `<obj_1>`, `<obj_2>`, ...
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from r4d.errors import InputError

SCHEMA = "r4d.student/1"
TIME_CUES = ("tpe", "marks", "prompt")
FUSIONS = ("none", "concat", "pe")


@dataclass
class StudentConfig:
    vision: dict[str, Any]
    llm: dict[str, Any]
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
    visual_token_id: int = 0
    separator_token_id: int = 0
    region_token_ids: list[int] = field(default_factory=list)
    schema: str = SCHEMA

    def __post_init__(self):
        if self.fusion not in FUSIONS:
            raise InputError(
                f"unknown fusion {self.fusion!r}; expected one of {FUSIONS}", field="fusion"
            )
        unknown = sorted(set(self.time_cues) - set(TIME_CUES))
        if unknown:
            raise InputError(
                f"unknown time cue(s) {unknown}; expected any of {TIME_CUES}", field="time_cues"
            )

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, folder: str | Path) -> None:
        from r4d.io.atomic import write_text

        write_text(Path(folder) / "config.json", json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> StudentConfig:
        path = Path(folder) / "config.json"
        try:
            data = json.loads(path.read_text())
        except OSError as err:
            raise InputError(f"cannot read ({err.strerror})", where=path) from None
        except json.JSONDecodeError as err:
            raise InputError(f"not valid JSON ({err})", where=path) from None
        if data.get("schema") != SCHEMA:
            raise InputError(
                f"schema {data.get('schema')!r}, expected {SCHEMA!r}", where=path, field="schema"
            )
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError("unknown field", where=path, field=unknown[0])
        data["image_mean"], data["image_std"] = tuple(data["image_mean"]), tuple(data["image_std"])
        return cls(**data)


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
