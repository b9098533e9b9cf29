"""lmms-eval task functions for R4D-Bench and R4D-Sim, using r4d's own protocol code.

Point `R4D_BENCH_ROOT` (R4D-Bench) or `R4D_SIM_ROOT` (R4D-Sim) at the benchmark folder; the
yaml files load its test.json with the `json` dataset builder. The prompt, visuals ([SoM
image, video]) and extraction are r4d.eval.benchmarks.r4d's, so scores match `r4d eval`.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from r4d.eval.benchmarks.r4d import r4d_extract
from r4d.eval.core import LETTERS, seeded_letter
from r4d.io.r4d_bench import format_prompt


def _root(doc: dict) -> Path:
    variable = "R4D_SIM_ROOT" if doc.get("benchmark") == "r4dsim" else "R4D_BENCH_ROOT"
    return Path(os.environ.get(variable, "."))


def r4d_doc_to_visual(doc: dict) -> list:
    root = _root(doc)
    visuals = []
    if doc.get("som_image"):
        visuals.append(Image.open(root / doc["som_image"]).convert("RGB"))
    visuals.append(str(root / doc["video"]))
    return visuals


def r4d_doc_to_text(doc: dict, lmms_eval_specific_kwargs=None) -> str:
    return format_prompt(
        doc["question"], [str(o) for o in doc["options"]], bool(doc.get("som_image"))
    )


def r4d_process_results(doc: dict, results: list[str]) -> dict:
    options = [str(o) for o in doc["options"]]
    letter = r4d_extract(results[0], len(options))
    if letter is None:  # the protocol's random fallback, seeded by the item's id
        letter = LETTERS[seeded_letter(str(doc["id"]), len(options), 0)]
    target = LETTERS[options.index(str(doc["answer"]))]
    return {"r4d_accuracy": {"id": doc["id"], "task": doc["task"], "correct": letter == target}}


def r4d_aggregate_accuracy(results: list[dict]) -> float:
    return 100.0 * sum(r["correct"] for r in results) / max(len(results), 1)
