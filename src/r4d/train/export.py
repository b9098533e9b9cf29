"""Export: the trained student alone, loadable by `R4DStudent.from_pretrained`.

D_4DP and the teacher's heads D_m are training-only and are dropped, and LoRA adapters are
merged into the LLM, so the exported model has exactly the base student's parameters and runs
at exactly its cost (the paper's zero inference overhead).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from safetensors.torch import load_file

from r4d.errors import InputError
from r4d.p4d.model import P4DModel


def export_model(model: P4DModel, tokenizer, out: str | Path) -> None:
    student = copy.deepcopy(model.student)
    if hasattr(student.llm, "merge_and_unload"):  # PEFT LoRA
        student.llm = student.llm.merge_and_unload()
    student.requires_grad_(False)
    student.save_pretrained(out, tokenizer)


def load_run(run: str | Path, checkpoint: str | Path | None = None):
    """(P4DModel, tokenizer, TrainConfig) of a training run at a checkpoint (default: the
    latest), D_4DP and the teacher's heads included."""
    from transformers import AutoTokenizer

    from r4d.train.config import TrainConfig
    from r4d.train.data import load_source
    from r4d.train.trainer import RUN_CONFIG, _latest, apply_trainable, build_model

    run = Path(run)
    if not (run / RUN_CONFIG).is_file():
        raise InputError(f"no {RUN_CONFIG}: not a training run folder", where=run)
    config = TrainConfig.from_dict(json.loads((run / RUN_CONFIG).read_text()), run / RUN_CONFIG)
    checkpoint = Path(checkpoint) if checkpoint else _latest(run)
    if checkpoint is None or not (checkpoint / "model.safetensors").is_file():
        raise InputError("no checkpoint with model.safetensors", where=checkpoint or run)
    sources = [load_source(s) for s in config.data] if not (run / "tokenizer").is_dir() else []
    model, _, tokenizer = build_model(config, sources, run)
    apply_trainable(model, config.trainable, config.lora)
    missing, unexpected = model.load_state_dict(
        load_file(str(checkpoint / "model.safetensors")), strict=False
    )
    if missing or unexpected:
        raise InputError(
            f"checkpoint does not fit the run's model: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}",
            where=checkpoint,
        )
    return model, tokenizer or AutoTokenizer.from_pretrained(str(run / "tokenizer")), config


def export_checkpoint(run: str | Path, out: str | Path, checkpoint: str | Path | None = None):
    """Rebuild a run's model, load a checkpoint (default: the latest) and export its student."""
    model, tokenizer, _ = load_run(run, checkpoint)
    export_model(model, tokenizer, out)
