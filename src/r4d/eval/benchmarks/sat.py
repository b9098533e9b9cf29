"""SAT real (arijitray1993/SAT): 150 real-image questions, circular evaluation.

Rows (the `test` parquet): image_bytes (1-2 images), question, answers (the two options),
question_type, correct_answer (the option's text). Prompt (the repo's): "{question} Answer the
question using a single word or phrase. Choose between the following options: "x" or "y"."
(ego-movement questions say first that the first image begins the video and the second ends
it). Extraction: the one option whose text the answer contains (ignoring case; if both do, the
longer wins), else a letter "(A)" / "A" naming one. Circular: each question is asked under both
option orders; the dataset card's rule (default) counts it only if both are right; the repo's
code averages the two ("mean").
"""

from __future__ import annotations

import re
from pathlib import Path

from r4d.errors import InputError
from r4d.eval.benchmarks.common import image, need, read_rows
from r4d.eval.core import LETTERS, Benchmark, EvalItem, Request, ScoringOptions

EGO = "The first image is from the beginning of the video and the second image is from the end. "


def sat_extract(text: str, options: list[str]) -> str | None:
    said = (text or "").lower()
    hits = [i for i, o in enumerate(options) if o.lower() in said]
    if len(hits) > 1:
        hits = [max(hits, key=lambda i: len(options[i]))]
    if hits:
        return LETTERS[hits[0]]
    valid = LETTERS[: len(options)]
    match = re.search(rf"\(([{valid}])\)", text or "") or re.search(rf"\b([{valid}])\b", text or "")
    return match.group(1) if match else None


class SATReal(Benchmark):
    name = "sat"

    def default_options(self) -> ScoringOptions:
        return ScoringOptions(frames=0, fallback="none", circular=True)

    def load(self, root) -> list[EvalItem]:
        root = Path(root)
        path = next(iter(sorted(root.glob("*.parquet"))), root / "test.parquet")
        out = []
        for i, row in enumerate(read_rows(path)):
            need(row, path, i, "image_bytes", "question", "answers", "correct_answer")
            answers = [str(a) for a in row["answers"]]
            if str(row["correct_answer"]) not in answers:
                raise InputError(
                    "the correct answer is not among the answers",
                    where=f"{path} row {row.get('id', i)}",
                    field="correct_answer",
                )
            out.append(
                EvalItem(
                    str(row.get("id", f"sat_{i:04d}")),
                    self.name,
                    str(row.get("question_type", "all")),
                    row["question"],
                    answers,
                    answers.index(str(row["correct_answer"])),
                    images=row["image_bytes"],
                    extra={"oracle_format": "{text}"},
                )
            )
        return out

    def request(self, item: EvalItem, options: ScoringOptions, order=None) -> Request:
        shown = [item.options[i] for i in order] if order else item.options
        question = (EGO if item.category == "ego_movement" else "") + item.question
        choices = " or ".join(f'"{o}"' for o in shown)
        prompt = (
            f"{question} Answer the question using a single word or phrase. Choose "
            f"between the following options: {choices}."
        )
        return Request(item, prompt, [image(b) for b in item.images], options=shown, order=order)

    def extract(self, text: str, request: Request, options: ScoringOptions):
        return sat_extract(text, request.options)
