"""Export: the trained student alone, loadable by `R4DStudent.from_pretrained`.

D_4DP and the teacher's heads D_m are training-only and are dropped, and LoRA adapters are
merged into the LLM, so the exported model has exactly the base student's parameters and runs
at exactly its cost (the paper's zero inference overhead).
"""

from __future__ import annotations

import copy
from pathlib import Path

from r4d.p4d.model import P4DModel
from r4d.train.run import load_run

# What `from_pretrained` notes in a tokenizer about how it was loaded (a resumed run's comes
# from OUT/tokenizer, a fresh run's straight from training): not the tokenizer's to save.
LOADING_KWARGS = ("is_local", "local_files_only")


def export_model(model: P4DModel, tokenizer, out: str | Path) -> None:
    student = copy.deepcopy(model.student)
    if hasattr(student.llm, "merge_and_unload"):  # PEFT LoRA
        student.llm = student.llm.merge_and_unload()
    student.requires_grad_(False)
    for key in LOADING_KWARGS:
        tokenizer.init_kwargs.pop(key, None)
    student.save_pretrained(out, tokenizer)


def export_checkpoint(run: str | Path, out: str | Path, checkpoint: str | Path | None = None):
    """Rebuild a run's model, load a checkpoint (default: the latest) and export its student."""
    model, tokenizer, _ = load_run(run, checkpoint)
    export_model(model, tokenizer, out)
