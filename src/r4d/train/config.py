"""A training run's configuration: one JSON (or YAML) file for `r4d train --config`.

Sections: `student` (a preset to build, or a folder to start from; time cues; region tokens),
`data` (sources and weights, `r4d.train.data`), `teacher` (the cache to read F_4D and P_m from,
the teacher folder whose frozen heads decode the student's latents, or "oracle"), `recipe`
(`r4d.p4d.recipes`: name, variant and field overrides), `trainable` (Tab. 7's policies), `lora`
(PEFT LoRA on the LLM), `optim`, `precision`, `feature_cache` (E_v's features cached, when it
is frozen) and logging / checkpoint cadence. Unknown fields are refused, naming the field.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from r4d.errors import InputError

TRAINABLE = ("tune-v", "tune-p", "tune-llm", "tune-p+llm", "tune-all", "lora", "tune-p+llm-lora")


@dataclass
class StudentSpec:
    preset: str | None = "tiny"  # build from scratch (tokenizer trained on the data's text)
    path: str | None = None  # or start from a saved student / NVILA-Lite folder
    time_cues: list[str] = field(default_factory=lambda: ["tpe"])
    region_tokens: bool = False
    vocab_size: int = 4096


@dataclass
class TeacherSpec:
    cache: str | None = None  # a `r4d teacher cache` folder (F_4D and P_m per clip)
    heads: str | None = None  # a teacher folder: its frozen D_m decode the student's latents
    config: str = "tiny"  # the teacher preset when `heads` is not given (shapes of F_4D)


@dataclass
class RecipeSpec:
    name: str = "paper"
    variant: str = "p4d"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoraSpec:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )


@dataclass
class OptimSpec:
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.03
    steps: int = 300
    batch_size: int = 4  # per process
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    seed: int = 0


@dataclass
class TrainConfig:
    out: str
    data: list[dict[str, Any]]
    student: StudentSpec = field(default_factory=StudentSpec)
    teacher: TeacherSpec = field(default_factory=TeacherSpec)
    recipe: RecipeSpec = field(default_factory=RecipeSpec)
    trainable: str = "tune-all"
    lora: LoraSpec = field(default_factory=LoraSpec)
    optim: OptimSpec = field(default_factory=OptimSpec)
    frames: int = 16
    precision: str = "auto"  # "auto": bf16 on a GPU, fp32 on a CPU; or "no" / "bf16" / "fp16"
    log_every: int = 10
    png_every: int = 100
    checkpoint_every: int = 100
    keep_checkpoints: int = 2  # the latest ones kept (a learning curve keeps one per point)
    workers: int = 2  # DataLoader processes building examples (0: the training process)
    # E_v's features cached once (`r4d.model.features`) when the policy freezes E_v and the
    # student has no fusion layer: a folder, or "auto" (OUT/features); None runs E_v on pixels.
    feature_cache: str | None = None

    def __post_init__(self):
        if self.trainable not in TRAINABLE:
            raise InputError(
                f"unknown policy {self.trainable!r}; known: {TRAINABLE}", field="trainable"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str | Path | None = None) -> TrainConfig:
        sections = {
            "student": StudentSpec,
            "teacher": TeacherSpec,
            "recipe": RecipeSpec,
            "lora": LoraSpec,
            "optim": OptimSpec,
        }
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError("unknown field", where=where, field=unknown[0])
        for required in ("out", "data"):
            if required not in data:
                raise InputError("missing", where=where, field=required)
        kwargs = dict(data)
        for name, spec in sections.items():
            if name in kwargs:
                extra = sorted(set(kwargs[name]) - {f.name for f in fields(spec)})
                if extra:
                    raise InputError("unknown field", where=where, field=f"{name}.{extra[0]}")
                kwargs[name] = spec(**kwargs[name])
        try:
            return cls(**kwargs)
        except InputError as err:
            raise InputError(err.reason, where=where, field=err.field) from None

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise InputError(f"cannot read ({err.strerror})", where=path) from None
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise InputError(f"not valid JSON ({err})", where=path) from None
        if not isinstance(data, dict):
            raise InputError("expected a mapping", where=path)
        return cls.from_dict(data, path)
