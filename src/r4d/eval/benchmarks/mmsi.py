"""MMSI-Bench (OpenRobotLab/MMSI-Bench): a parquet of multi-image spatial questions.

Rows: id, images (a list of image bytes), question_type, question (its options written in the
text), answer (a letter). Official protocol (its VLMEvalKit dataset): "{question}\\nAnswer with
the option's letter from the given choices directly. Enclose the option's letter within ``.";
extraction: the text inside ``...``, else inside `...`, then `\\b[A-D]\\b(?!\\s[a-zA-Z])`
(nothing: wrong); correct iff the answer equals the first character, ignoring case.
"""

from __future__ import annotations

import re
from pathlib import Path

from r4d.errors import InputError
from r4d.eval.benchmarks.common import image, need, read_rows
from r4d.eval.core import Benchmark, EvalItem, Request, ScoringOptions
from r4d.io.r4d_bench import refuse_duplicate_ids

POST_PROMPT = (
    "Answer with the option's letter from the given choices directly. Enclose the "
    "option's letter within ``."
)


def mmsi_extract(text: str) -> str | None:
    text = text or ""
    for pattern in (r"``([^`]*)``", r"`([^`]*)`"):
        match = re.search(pattern, text)
        if match:
            text = match.group(1)
            break
    match = re.search(r"\b[A-D]\b(?!\s[a-zA-Z])", text)
    return match.group(0) if match else None


class MMSIBench(Benchmark):
    name = "mmsi"

    def default_options(self) -> ScoringOptions:
        return ScoringOptions(frames=0, fallback="none")

    def load(self, root) -> list[EvalItem]:
        root = Path(root)
        path = next(iter(sorted(root.glob("*.parquet"))), root / "MMSI_Bench.parquet")
        out = []
        for i, row in enumerate(read_rows(path)):
            need(row, path, i, "id", "images", "question", "answer")
            if str(row["answer"]).upper() not in "ABCD" or len(str(row["answer"])) != 1:
                raise InputError(
                    "expected a letter A-D", where=f"{path} row {row['id']}", field="answer"
                )
            out.append(
                EvalItem(
                    str(row["id"]),
                    self.name,
                    str(row.get("question_type", "all")),
                    row["question"],
                    ["A", "B", "C", "D"],
                    "ABCD".index(str(row["answer"]).upper()),
                    images=row["images"],
                    extra={"oracle_format": "`{letter}`"},
                )
            )
        refuse_duplicate_ids((item.id for item in out), path)
        return out

    def request(self, item: EvalItem, options: ScoringOptions, order=None) -> Request:
        images = [image(b, f"item {item.id}", f"images[{i}]") for i, b in enumerate(item.images)]
        return Request(item, f"{item.question}\n{POST_PROMPT}", images, options=item.options)

    def parse(self, text: str, request: Request, options: ScoringOptions):
        pred = mmsi_extract(text)
        return pred.upper()[0] if pred else None
