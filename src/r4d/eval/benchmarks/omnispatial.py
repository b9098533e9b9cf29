"""OmniSpatial (qizekun/OmniSpatial): `data.json` + images, five runs an item.

Rows: id ("<image>_<k>"), question, options (a list), answer (an index), task_type,
sub_task_type; the image is dataset/{task_type}/{id before "_"}.png. Official protocol (its
api_eval.py, "re" format): question, "A. option" lines, then "End your answer with a separate
line formatted exactly as:\\n\\nAnswer: X\\nwhere X ∈ {A, B, C, D}."; extraction: the last match of
`Answer\\s*:\\s*([A-D])\\b` (case-insensitive), compared as written with the upper-case answer
(so "answer: b" is wrong); no match: "A". Every item is asked 5 times and all runs are pooled.
"""

from __future__ import annotations

import re
from pathlib import Path

from r4d.errors import InputError
from r4d.eval.benchmarks.common import image, need, options_text, read_rows
from r4d.eval.core import LETTERS, Benchmark, EvalItem, Request, ScoringOptions
from r4d.io.r4d_bench import refuse_duplicate_ids

FORMAT = (
    "\nEnd your answer with a separate line formatted exactly as:\n\nAnswer: X\nwhere X ∈ "
    "{A, B, C, D}.\n"
)
_ANSWER = re.compile(r"Answer\s*:\s*([A-D])\b", re.IGNORECASE)


def omnispatial_extract(text: str) -> str | None:
    found = _ANSWER.findall(text or "")
    return found[-1] if found else None


class OmniSpatial(Benchmark):
    name = "omnispatial"

    def default_options(self) -> ScoringOptions:
        return ScoringOptions(frames=0, fallback="A", repeats=5)

    def load(self, root) -> list[EvalItem]:
        root = Path(root)
        path = root / "data.json"
        out = []
        for i, row in enumerate(read_rows(path)):
            need(row, path, i, "id", "question", "options", "answer", "task_type")
            where = f"{path} row {row['id']}"
            options = options_text(row["options"], where, "options")
            answer = row["answer"]
            if isinstance(answer, bool) or not isinstance(answer, int):
                raise InputError(
                    f"expected an option index, got {answer!r}", where=where, field="answer"
                )
            if not 0 <= answer < len(options):
                raise InputError(
                    f"answer index {answer} out of range for {len(options)} options",
                    where=where,
                    field="answer",
                )
            picture = root / "dataset" / row["task_type"] / f"{str(row['id']).split('_')[0]}.png"
            if not picture.is_file():
                raise InputError(f"no image {picture}", where=where, field="id")
            out.append(
                EvalItem(
                    str(row["id"]),
                    self.name,
                    row["task_type"],
                    row["question"],
                    options,
                    answer,
                    images=[picture],
                    split=row.get("sub_task_type"),
                    extra={"oracle_format": "Answer: {letter}"},
                )
            )
        refuse_duplicate_ids((item.id for item in out), path)
        return out

    def request(self, item: EvalItem, options: ScoringOptions, order=None) -> Request:
        shown = [item.options[i] for i in order] if order else item.options
        listing = "".join(f"{LETTERS[i]}. {o}\n" for i, o in enumerate(shown))
        prompt = f"{item.question}\n{listing}{FORMAT}"
        return Request(
            item,
            prompt,
            [image(item.images[0], f"item {item.id}", "image")],
            options=shown,
            order=order,
        )

    def parse(self, text: str, request: Request, options: ScoringOptions):
        return omnispatial_extract(text)  # no match: the base class's fallback, "A"
