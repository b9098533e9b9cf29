"""The run layer: what a training run folder holds and how its model is built and loaded.

A run folder (`r4d train`) holds `manifest.json` (`run_identity`), `train_config.json` (the
resolved `TrainConfig`, as the run was started), `tokenizer/` (trained on the data's text when
the student is built from a preset), `checkpoints/step-N/` (`r4d.train.loop`), `log.jsonl`,
`tb/`, and at the end `student/` (the exported student).

- `run_identity(config)`: what a run's weights depend on, for its manifest: the config but its
  `BOOKKEEPING` fields and paths, the sha256 of every data source's file, the starting
  student's files, the teacher cache's index and the heads' folder. `check_run` refuses a
  folder made by another (naming the fields, both values), also a folder from before manifests
  whose train_config.json differs.

- `load_student(path)`: a student folder of either kind, an r4d one (`R4DStudent`, a
  transformers model folder) or an NVILA-Lite checkpoint (its tokenizer untouched); the one
  place that tells them apart.
- `build_model(config, sources, out)`: the P4D model a config asks for: the student (built or
  loaded; a 4D-Concat / 4D-PE recipe adds its fusion layer), D_4DP, and the teacher's frozen
  heads D_m (E_4D is never loaded: F_4D comes from the cache).
- `apply_trainable(model, policy, lora)`: Tab. 7's trainable-module policies.
- `load_run(run)`: a run's P4D model at a checkpoint, as it was trained.
"""

from __future__ import annotations

import json
from pathlib import Path

from peft import LoraConfig, get_peft_model
from transformers import AutoTokenizer

from r4d.errors import InputError
from r4d.io.manifest import Identity, check, differences, file_identity, folder_identity, refusal
from r4d.io.weights import load_strict, read_weights
from r4d.model import build_student
from r4d.model.modeling import R4DStudent
from r4d.model.nvila import load_nvila
from r4d.model.processor import StudentProcessor
from r4d.model.tokenizer import train_tokenizer
from r4d.p4d.model import P4DModel
from r4d.p4d.recipes import recipe as make_recipe
from r4d.teacher.config import PRESETS as TEACHER_PRESETS
from r4d.teacher.model import TeacherHeads
from r4d.train.config import TrainConfig
from r4d.train.data import load_source, source_file, text_corpus
from r4d.train.loop import latest_checkpoint

RUN_CONFIG = "train_config.json"
# What `--overwrite` deletes from a run folder without a manifest (with one: everything).
RUN_FILES = (
    RUN_CONFIG,
    "tokenizer",
    "checkpoints",
    "log.jsonl",
    "tb",
    "png",
    "student",
    "features",
    "curve",
    "curve.json",
    "curve.png",
)
# Fields that change only where and how often a run reports, not its weights (a resumed run
# ends with the weights of an uninterrupted one whatever its checkpoint cadence): recorded in
# the manifest, never compared. `learning_curve` sets checkpoint_every / keep_checkpoints.
BOOKKEEPING = ("out", "log_every", "png_every", "checkpoint_every", "keep_checkpoints", "workers")


def config_identity(config: TrainConfig) -> dict:
    """The config's part of `run_identity`: every field but BOOKKEEPING and the paths of
    inputs (named by content instead), and whether E_v's features are cached (float16)."""
    part = config.to_dict()
    for name in BOOKKEEPING:
        del part[name]
    part["data"] = [{k: v for k, v in s.items() if k not in ("path", "root")} for s in part["data"]]
    del part["student"]["path"], part["teacher"]["cache"], part["teacher"]["heads"]
    part["feature_cache"] = config.feature_cache is not None
    return part


def run_identity(config: TrainConfig) -> Identity:
    """What a run's weights depend on: `config_identity` and its inputs by content (compared),
    the bookkeeping fields and the inputs' paths (recorded)."""
    student, teacher = config.student, config.teacher
    inputs = {
        "data": [{"file": file_identity(source_file(s))} for s in config.data],
        "student": folder_identity(student.path) if student.path else None,
        "teacher_cache": folder_identity(teacher.cache, "index-r*.json") if teacher.cache else None,
        "teacher_heads": folder_identity(teacher.heads) if teacher.heads else None,
    }
    paths = {
        "data": [{k: s[k] for k in ("path", "root") if k in s} for s in config.data],
        "student": student.path,
        "teacher_cache": teacher.cache,
        "teacher_heads": teacher.heads,
        "feature_cache": config.feature_cache,
    }
    recorded = {name: getattr(config, name) for name in BOOKKEEPING}
    return Identity(
        {"kind": "train", **config_identity(config), "inputs": inputs},
        {**recorded, "paths": paths},
    )


def check_run(out: str | Path, config: TrainConfig, identity: Identity) -> bool:
    """True when `out` holds this run (resume), False when it holds none; an InputError naming
    the differing fields when it holds another (its manifest, or for a folder from before
    manifests its train_config.json). Writes nothing."""
    if check(out, identity):
        return True
    if (Path(out) / RUN_CONFIG).is_file():
        old = config_identity(read_run_config(out))
        diffs = differences(old, config_identity(config))
        if diffs:
            raise refusal(out, diffs, f"in {RUN_CONFIG}")
    return False


def is_nvila_folder(path: str | Path) -> bool:
    """An NVILA-Lite checkpoint (llm/, vision_tower/, mm_projector/) rather than an r4d one."""
    return (Path(path) / "llm").is_dir()


def load_student(path: str | Path, time_cues=None, region_tokens: bool | None = None):
    """(R4DStudent, tokenizer) from an r4d student folder or an NVILA-Lite checkpoint. Given,
    `time_cues` / `region_tokens` replace the folder's (a fine-tune may add TPE)."""
    path = Path(path)
    if not path.is_dir():
        raise InputError("no such student folder", where=path)
    if is_nvila_folder(path):
        return load_nvila(path, time_cues or (), bool(region_tokens))
    student = R4DStudent.from_pretrained(path)
    tokenizer = (
        AutoTokenizer.from_pretrained(str(path)) if (path / "tokenizer.json").is_file() else None
    )
    if time_cues is not None:
        student.config.time_cues = list(time_cues)
    if region_tokens is not None:
        student.config.region_tokens = region_tokens
    return student, tokenizer


def build_model(config: TrainConfig, sources, out: Path):
    """(P4DModel, processor, tokenizer): the student (built or loaded), D_4DP, frozen D_m."""
    spec = config.student
    recipe = make_recipe(config.recipe.name, config.recipe.variant, **config.recipe.overrides)
    heads = TeacherHeads.from_pretrained(config.teacher.heads) if config.teacher.heads else None
    teacher_config = heads.config if heads else TEACHER_PRESETS[config.teacher.config]()
    if spec.path:
        student, tokenizer = load_student(spec.path, spec.time_cues, spec.region_tokens)
        if recipe.fusion != "none":
            student.add_fusion(recipe.fusion, teacher_config.width)
    else:
        tokenizer_dir = out / "tokenizer"
        if tokenizer_dir.is_dir():
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        else:
            tokenizer = train_tokenizer(text_corpus(sources), spec.vocab_size)
        fusion = {}
        if recipe.fusion != "none":
            fusion = {"fusion": recipe.fusion, "fusion_width": teacher_config.width}
        student = build_student(
            spec.preset, tokenizer, spec.time_cues, spec.region_tokens, **fusion
        )
    model = P4DModel(student, recipe, teacher_config, heads, config.frames)
    return model, StudentProcessor(tokenizer, student.config), tokenizer


def apply_trainable(model: P4DModel, policy: str, lora) -> None:
    """Tab. 7's policies: which of E_v, E_p and the LLM learn (D_4DP, and the 4D-Concat / 4D-PE
    baselines' fusion layer, always do)."""
    student = model.student
    student.requires_grad_(False)
    if policy in ("lora", "tune-p+llm-lora"):
        student.llm = get_peft_model(
            student.llm,
            LoraConfig(
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=list(lora.target_modules),
            ),
        )
    parts = {
        "tune-v": [student.vision],
        "tune-p": [student.projector],
        "tune-llm": [student.llm],
        "tune-p+llm": [student.projector, student.llm],
        "tune-all": [student],
        "lora": [],
        "tune-p+llm-lora": [student.projector],
    }[policy]
    for part in parts:
        part.requires_grad_(True)
    if model.decoder is not None:
        model.decoder.requires_grad_(True)
    if student.fusion is not None:
        student.fusion.requires_grad_(True)


def read_run_config(run: str | Path) -> TrainConfig:
    path = Path(run) / RUN_CONFIG
    if not path.is_file():
        raise InputError(f"no {RUN_CONFIG}: not a training run folder", where=run)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON ({err})", where=path) from None
    return TrainConfig.from_dict(data, path)


def load_run(run: str | Path, checkpoint: str | Path | None = None):
    """(P4DModel, tokenizer, TrainConfig) of a training run at a checkpoint (default: the
    latest), D_4DP and the teacher's heads included."""
    run = Path(run)
    config = read_run_config(run)
    checkpoint = Path(checkpoint) if checkpoint else latest_checkpoint(run)
    if checkpoint is None or not (checkpoint / "model.safetensors").is_file():
        raise InputError("no checkpoint with model.safetensors", where=checkpoint or run)
    sources = [load_source(s) for s in config.data] if not (run / "tokenizer").is_dir() else []
    model, _, tokenizer = build_model(config, sources, run)
    apply_trainable(model, config.trainable, config.lora)
    load_strict(model, read_weights(checkpoint / "model.safetensors"), checkpoint)
    return model, tokenizer, config
