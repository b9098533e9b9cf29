"""A training run's configuration: one JSON (or YAML) file for `r4d train --config`.

Sections: `student` (a preset to build, or a folder to start from; time cues; region tokens),
`data` (sources and weights, `r4d.train.data`), `teacher` (the cache to read F_4D and P_m from,
the teacher folder whose frozen heads decode the student's latents, or "oracle"), `recipe`
(`r4d.p4d.recipes`: name, variant and field overrides), `trainable` (Tab. 7's policies), `lora`
(PEFT LoRA on the LLM), `optim`, `precision`, `feature_cache` (E_v's features cached, when it
is frozen) and logging / checkpoint cadence. `check_config` refuses an unknown field, a value of
another type, a non-finite number, a count or rate out of range and a name r4d does not know
(policy, precision, preset, time cue, recipe, variant, data kind), naming the dotted field.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from r4d.errors import InputError
from r4d.model.config import PRESETS as STUDENT_PRESETS
from r4d.model.config import TIME_CUES
from r4d.p4d.recipes import P4DRecipe, recipe
from r4d.teacher.config import PRESETS as TEACHER_PRESETS

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
        check_config(self)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str | Path | None = None) -> TrainConfig:
        """A config from its JSON form; every field is checked (`check_config`) and an
        InputError names the file (`where`), the field and what was expected."""
        if not isinstance(data, dict):
            raise InputError(f"expected a mapping, got {type(data).__name__}", where=where)
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise InputError(f"unknown field; known: {_names(cls)}", where=where, field=unknown[0])
        for required in ("out", "data"):
            if required not in data:
                raise InputError("missing (a required field)", where=where, field=required)
        kwargs = dict(data)
        for name, spec in SECTIONS.items():
            if name not in kwargs:
                continue
            if not isinstance(kwargs[name], dict):
                raise InputError(
                    f"expected a mapping of {_names(spec)}, got {kwargs[name]!r}",
                    where=where,
                    field=name,
                )
            extra = sorted(set(kwargs[name]) - {f.name for f in fields(spec)})
            if extra:
                raise InputError(
                    f"unknown field; known: {_names(spec)}", where=where, field=f"{name}.{extra[0]}"
                )
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
        except UnicodeDecodeError:
            raise InputError("not a text file (expected JSON or YAML)", where=path) from None
        if path.suffix in (".yaml", ".yml"):
            import yaml

            class Loader(yaml.SafeLoader):
                """YAML 1.2's floats too: PyYAML (YAML 1.1) reads `5e-4` as a string."""

            Loader.add_implicit_resolver(
                "tag:yaml.org,2002:float",
                re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
                list("-+0123456789."),
            )
            try:
                data = yaml.load(text, Loader=Loader)
            except yaml.YAMLError as err:
                reason = " ".join(str(err).split())
                raise InputError(f"not valid YAML ({reason})", where=path) from None
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise InputError(f"not valid JSON ({err})", where=path) from None
        return cls.from_dict(data, path)


SECTIONS = {
    "student": StudentSpec,
    "teacher": TeacherSpec,
    "recipe": RecipeSpec,
    "lora": LoraSpec,
    "optim": OptimSpec,
}
PRECISIONS = ("auto", "no", "bf16", "fp16")
# A data source's fields and the one each kind needs (`r4d.train.data`).
# `kinds` (llava): only the rows whose `kind` is listed (e.g. a curriculum phase of
# `r4d.world.questions.generic`'s question kinds).
SOURCE_FIELDS = {
    "kind": str,
    "root": str,
    "path": str,
    "split": str,
    "weight": float,
    "kinds": list[str],
}
SOURCE_KINDS = {"r4dsim": "root", "llava": "path"}
# Bounds of the numbers (every one must also be finite): the least value allowed, ...
MINIMUM = {
    "optim.steps": 1,
    "optim.batch_size": 1,
    "optim.grad_accum": 1,
    "optim.weight_decay": 0,
    "lora.r": 1,
    "student.vocab_size": 1,
    "frames": 1,
    "log_every": 1,
    "png_every": 0,
    "checkpoint_every": 1,
    "keep_checkpoints": 1,
    "workers": 0,
}
POSITIVE = ("optim.lr", "optim.max_grad_norm", "lora.alpha")  # ... those above 0 ...
FRACTIONS = ("optim.warmup_ratio", "lora.dropout")  # ... and those in [0, 1).


def _names(spec) -> str:
    return ", ".join(f.name for f in fields(spec))


def expected_type(value: Any, hint: Any) -> str | None:
    """None when `value` is of the annotated type `hint` (numbers finite, no bool for a
    number), else what was expected, in words."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        wrong = expected_type(value, inner[0])
        return None if wrong is None else f"{wrong} or null"
    if hint is Any:
        return None
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if hint is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return None if number and math.isfinite(value) else "a finite number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if origin in (list, tuple):
        item = args[0] if args else Any
        if not isinstance(value, list | tuple):
            return f"a list of {_plural(item)}"
        if any(expected_type(v, item) for v in value):
            return f"a list of {_plural(item)}"
        return None
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            return "a mapping"
        item = args[1] if len(args) == 2 else Any
        bad = [v for v in value.values() if expected_type(v, item)]
        return f"a mapping of {_plural(item)}" if bad else None
    return None


def _plural(hint: Any) -> str:
    return {int: "integers", float: "finite numbers", str: "strings", bool: "booleans"}.get(
        hint, "mappings" if get_origin(hint) is dict else "values"
    )


def check_fields(obj: Any, prefix: str = "") -> None:
    """Every field of the dataclass `obj` (and of those it holds) of its annotated type, and
    within MINIMUM / POSITIVE / FRACTIONS; an InputError names the dotted field."""
    hints = get_type_hints(type(obj))
    for f in fields(obj):
        name, value = prefix + f.name, getattr(obj, f.name)
        if is_dataclass(value):
            check_fields(value, f"{name}.")
            continue
        wrong = expected_type(value, hints[f.name])
        if wrong is None and name in MINIMUM and value < MINIMUM[name]:
            wrong = f"a value >= {MINIMUM[name]}"
        if wrong is None and name in POSITIVE and value <= 0:
            wrong = "a value > 0"
        if wrong is None and name in FRACTIONS and not 0 <= value < 1:
            wrong = "a value in [0, 1)"
        if wrong is not None:
            raise InputError(f"expected {wrong}, got {value!r}", field=name)


def _check_sources(data: list) -> None:
    for i, source in enumerate(data):
        where = f"data[{i}]"
        if not isinstance(source, dict):
            raise InputError(f"expected a mapping, got {source!r}", field=where)
        unknown = sorted(set(source) - set(SOURCE_FIELDS))
        if unknown:
            raise InputError(
                f"unknown field; known: {', '.join(SOURCE_FIELDS)}", field=f"{where}.{unknown[0]}"
            )
        kind = source.get("kind")
        if kind not in SOURCE_KINDS:
            raise InputError(
                f"unknown data kind {kind!r}; known: {', '.join(SOURCE_KINDS)}",
                field=f"{where}.kind",
            )
        if SOURCE_KINDS[kind] not in source:
            raise InputError(
                f"missing (a {kind} source reads its {SOURCE_KINDS[kind]})",
                field=f"{where}.{SOURCE_KINDS[kind]}",
            )
        for key, value in source.items():
            wrong = expected_type(value, SOURCE_FIELDS[key])
            if wrong is None and key == "weight" and value <= 0:
                wrong = "a value > 0"
            if wrong is None and key == "kinds" and (kind != "llava" or not value):
                wrong = "a non-empty list, on a llava source"
            if wrong is not None:
                raise InputError(f"expected {wrong}, got {value!r}", field=f"{where}.{key}")


def _check_recipe(spec: RecipeSpec) -> None:
    """The recipe must exist and its overrides be fields of it, of their types (`recipe`
    checks the names; a value of the wrong type would fail only inside training)."""
    hints = get_type_hints(P4DRecipe)
    for key, value in spec.overrides.items():
        wrong = expected_type(value, hints[key]) if key in hints and key != "name" else None
        if wrong is not None:
            raise InputError(f"expected {wrong}, got {value!r}", field=f"recipe.overrides.{key}")
    try:
        recipe(spec.name, spec.variant, **spec.overrides)
    except InputError as err:
        known = {"recipe": "recipe.name", "variant": "recipe.variant"}
        field_name = known.get(err.field, f"recipe.overrides.{err.field}")
        raise InputError(err.reason, field=field_name) from None


def check_config(config: TrainConfig) -> None:
    """Every field of `config` of its type and range, and every name (policy, precision,
    presets, time cues, recipe, variant, data kinds) one r4d knows; an InputError names the
    dotted field and what was expected."""
    check_fields(config)
    choices = [  # (field, value, the names known, what they name)
        ("trainable", config.trainable, TRAINABLE, "policy"),
        ("precision", config.precision, PRECISIONS, "precision"),
        ("teacher.config", config.teacher.config, tuple(TEACHER_PRESETS), "teacher preset"),
    ]
    if config.student.path is None:
        choices.append(("student.preset", config.student.preset, tuple(STUDENT_PRESETS), "preset"))
    for name, value, known, noun in choices:
        if value not in known:
            raise InputError(f"unknown {noun} {value!r}; known: {', '.join(known)}", field=name)
    unknown = [c for c in config.student.time_cues if c not in TIME_CUES]
    if unknown:
        raise InputError(
            f"unknown time cue {unknown[0]!r}; known: {', '.join(TIME_CUES)}",
            field="student.time_cues",
        )
    if not config.data:
        raise InputError("expected at least one data source, got none", field="data")
    _check_sources(config.data)
    _check_recipe(config.recipe)
