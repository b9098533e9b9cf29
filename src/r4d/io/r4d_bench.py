"""The R4D-Bench file format: the released `test.json` and r4d's own splits, read by one loader.

A benchmark root holds `videos/<benchmark>/*.mp4`, `clipped/<benchmark>/*.mp4`,
`images/<benchmark>/<id>.png` (Set-of-Marks images) and one JSON list per split. Each item has
the released fields `id, benchmark, task, video, source, som_image, question, question_raw,
options, answer` (the answer is the option's text). The released file mixes types: some ids
are integers, and options and answers may be integers (Counting's 0) or null; `parse_item`
reads them as the official loader does. r4d adds optional fields (`regions` with COCO-RLE masks
and boxes, `fps`, `duration`, `frame_timestamps`, `scene`, `split`, ...), kept in
`BenchItem.extra`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r4d.errors import InputError
from r4d.io.atomic import write_text
from r4d.io.masks import check_rle

# The released R4D-Bench task strings, static then dynamic; TimeBench (paper A3) besides.
STATIC_TASKS = ("3D Video Grounding", "Dimensional Measurement", "Spatial Relation")
DYNAMIC_TASKS = (
    "Translational",
    "Rotational",
    "Counting",
    "False Positives",
    "Speed & Acceleration",
    "Displacement & Path Length",
)
TASKS = STATIC_TASKS + DYNAMIC_TASKS
TIMEBENCH = "TimeBench"

RELEASED_FIELDS = (
    "id",
    "benchmark",
    "task",
    "video",
    "source",
    "som_image",
    "question",
    "question_raw",
    "options",
    "answer",
)
REGION_TOKEN = re.compile(r"<obj_(\d+)>")
KNOWN_TASKS = (*TASKS, TIMEBENCH)
LETTERS = "ABCDEFGHIJ"

SOM_PREAMBLE = (
    "The first image is a set-of-mark annotation of a key frame from the video, with bounding "
    "boxes labeled <obj_1>, <obj_2>, etc. References to <obj_N> in the question correspond to "
    "those labeled regions."
)
ANSWER_INSTRUCTION = "Answer with only the letter of the correct option."


@dataclass
class BenchItem:
    id: str
    benchmark: str
    task: str
    video: str
    source: str
    som_image: str | None
    question: str
    question_raw: str
    options: list[str]
    answer: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def answer_index(self) -> int:
        return self.options.index(self.answer)

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer_index]

    @property
    def region_tokens(self) -> list[str]:
        """`<obj_N>` tokens in the order they first appear in the question."""
        return list(dict.fromkeys(m.group(0) for m in REGION_TOKEN.finditer(self.question)))

    def to_dict(self) -> dict[str, Any]:
        row = {name: getattr(self, name) for name in RELEASED_FIELDS}
        row.update(self.extra)
        return row


def format_prompt(question: str, options: list[str], som: bool) -> str:
    """The R4D-Bench evaluation prompt (its lmms-eval task): the SoM preamble (when a SoM image
    comes first), the question, "Options:" with "(A) ..." lines, and the answer instruction,
    joined by blank lines."""
    parts = [SOM_PREAMBLE] if som else []
    lines = "\n".join(f"({LETTERS[i]}) {option}" for i, option in enumerate(options))
    parts += [question, f"Options:\n{lines}", ANSWER_INSTRUCTION]
    return "\n\n".join(parts)


def _fail(path, row_id, name, message) -> InputError:
    return InputError(message, where=f"{path} row {row_id}", field=name)


def refuse_duplicate_ids(ids: Iterable[Any], path: str | Path, field: str = "id") -> None:
    """Refuse a file in which two rows have the same id (compared as text), naming the id and
    both rows (0-based positions in the file): "duplicate id '17': it appears at rows 3 and 9"."""
    first: dict[str, int] = {}
    for row, row_id in enumerate(ids):
        key = str(row_id)
        if key in first:
            raise InputError(
                f"duplicate id {key!r}: it appears at rows {first[key]} and {row}",
                where=path,
                field=field,
            )
        first[key] = row


def _not_finite(value: Any) -> bool:
    """A float NaN or infinity (JSON's NaN / Infinity, which Python's json reads)."""
    return isinstance(value, float) and not math.isfinite(value)


def _answer_index(options: list, answer) -> int | None:
    """The official loader's `options.index(answer)`: the first option equal to the answer
    (so 0 matches 0 and null matches null); failing that, the first whose text is the answer's
    text (r4d's own files write both as text); None when neither."""
    if answer in options:
        return options.index(answer)
    texts = [str(o) for o in options]
    return texts.index(str(answer)) if str(answer) in texts else None


def parse_item(row: Any, path: str | Path, index: int) -> BenchItem:
    """Validate one row of a benchmark file; errors name the file, the row's id and the field.

    The released file's types are read as its official loader reads them: an integer id is
    compared as text (`str(id)`); options and the answer may be text, numbers or null, shown
    as `str(option)` ("0", "None"), and the answer's letter is that of `options.index(answer)`.
    """
    if not isinstance(row, dict):
        raise InputError("expected an object", where=f"{path} row {index}")
    row_id = row.get("id", f"#{index}")
    for name in RELEASED_FIELDS:
        if name not in row:
            raise _fail(path, row_id, name, "missing")
    row_id = row["id"]
    if isinstance(row_id, int) and not isinstance(row_id, bool):
        row = {**row, "id": str(row_id)}
    for name in ("id", "benchmark", "task", "video", "source", "question", "question_raw"):
        if not isinstance(row[name], str) or not row[name]:
            raise _fail(path, row_id, name, f"expected a non-empty string, got {row[name]!r}")
    if row["som_image"] is not None and not isinstance(row["som_image"], str):
        raise _fail(path, row_id, "som_image", "expected a path or null")
    if row["task"] not in KNOWN_TASKS:
        raise _fail(path, row_id, "task", f"unknown task {row['task']!r}")
    options = row["options"]
    if not isinstance(options, list) or not 2 <= len(options) <= len(LETTERS):
        raise _fail(path, row_id, "options", f"expected a list of 2-{len(LETTERS)} options")
    for i, option in enumerate(options):
        if option is not None and (
            isinstance(option, bool) or not isinstance(option, str | int | float)
        ):
            raise _fail(
                path, row_id, f"options[{i}]", f"expected text, a number or null: {option!r}"
            )
        if _not_finite(option):
            raise _fail(path, row_id, f"options[{i}]", f"expected a finite number, got {option}")
    texts = [str(o) for o in options]
    if len(set(texts)) != len(texts):
        raise _fail(path, row_id, "options", "two options are the same")
    answer = row["answer"]
    if answer is not None and (
        isinstance(answer, bool) or not isinstance(answer, str | int | float)
    ):
        raise _fail(path, row_id, "answer", f"expected text, a number or null: {answer!r}")
    if _not_finite(answer):
        raise _fail(path, row_id, "answer", f"expected a finite number, got {answer}")
    found = _answer_index(options, answer)
    if found is None:
        raise _fail(path, row_id, "answer", f"{answer!r} is not among the options")
    extra = {k: v for k, v in row.items() if k not in RELEASED_FIELDS}
    item = BenchItem(
        **{k: row[k] for k in RELEASED_FIELDS if k not in ("options", "answer")},
        options=texts,
        answer=texts[found],
        extra=extra,
    )
    _check_regions(item, path)
    return item


def _check_regions(item: BenchItem, path) -> None:
    tokens = item.region_tokens
    regions = item.extra.get("regions")
    if regions is None:
        if tokens and item.som_image is None:
            raise _fail(
                path,
                item.id,
                "question",
                f"region token {tokens[0]} has no region (no regions and no som_image)",
            )
        return
    if not isinstance(regions, list):
        raise _fail(path, item.id, "regions", "expected a list")
    known = {}
    for i, region in enumerate(regions):
        name = f"regions[{i}]"
        if not isinstance(region, dict) or not isinstance(region.get("token"), str):
            raise _fail(path, item.id, name, "expected an object with a token")
        mask = region.get("mask")
        if mask is not None:
            check_rle(mask, where=f"{path} row {item.id}", field=f"{name}.mask")
        box = region.get("box")
        if box is not None and (
            not isinstance(box, list)
            or len(box) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box)
            or not all(math.isfinite(v) for v in box)
            or box[2] < 0
            or box[3] < 0
        ):
            raise _fail(
                path,
                item.id,
                f"{name}.box",
                f"expected [x, y, width, height], finite, width and height >= 0, got {box!r}",
            )
        known[region["token"]] = region
    for token in tokens:
        if token not in known:
            raise _fail(path, item.id, "regions", f"region token {token} has no region")


def load_items(path: str | Path, check_files: bool = False) -> list[BenchItem]:
    """Read and validate a benchmark JSON list (the released `test.json` or an r4d split).

    With check_files, the video and SoM image of every item must exist under the file's folder.
    """
    path = Path(path)
    try:
        rows = json.loads(path.read_text())
    except OSError as err:
        raise InputError(f"cannot read ({err.strerror})", where=path) from None
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON ({err})", where=path) from None
    if not isinstance(rows, list):
        raise InputError("expected a JSON list of items", where=path)
    items = [parse_item(row, path, index) for index, row in enumerate(rows)]
    refuse_duplicate_ids((item.id for item in items), path)
    if check_files:
        for item in items:
            for name in ("video", "som_image"):
                value = getattr(item, name)
                if value is not None and not (path.parent / value).is_file():
                    raise _fail(path, item.id, name, f"no such file {path.parent / value}")
    return items


def load_split(root: str | Path, split: str = "test", check_files: bool = False):
    """Items of `root/<split>.json`."""
    return load_items(Path(root) / f"{split}.json", check_files)


def write_items(path: str | Path, items: list[BenchItem]) -> None:
    """Write a benchmark JSON list atomically."""
    write_text(path, json.dumps([item.to_dict() for item in items], indent=1) + "\n")
