"""What every benchmark shares: items, model requests, scoring options and the base protocol.

A benchmark (lmms-eval's idea of a task) is a small class: how to load and validate its
official files (`load`), its official prompt and visuals (`request`), how an answer is read
out of a model's text (`parse`, the official rule with nothing drawn), what the protocol does
when nothing could be read (`extract`: the official fallback, recorded as such) and how it is
scored (`score`). Every scoring quirk is a named field of `ScoringOptions`, and every place
where r4d may deviate from a benchmark's official code is a named entry of the benchmark's
`EXTRAS`, off unless listed in `ScoringOptions.extras`; both are written into each run's
summary, so a number always says how it was obtained.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from r4d.errors import InputError

LETTERS = string.ascii_uppercase


@dataclass
class EvalItem:
    id: str
    benchmark: str
    category: str  # the task / question type results are broken down by
    question: str
    options: list[str] | None = None  # multiple choice, in order A, B, ...
    answer_index: int | None = None  # multiple choice
    answer_value: float | None = None  # numeric (MRA) questions
    video: Path | None = None
    images: list[Any] = field(default_factory=list)  # paths or bytes, shown before the video
    split: str | None = None  # e.g. indoor / outdoor, ego / exo, static / dynamic
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def letter(self) -> str | None:
        return None if self.answer_index is None else LETTERS[self.answer_index]


@dataclass
class Request:
    """What a model adapter receives: the official prompt and the visuals, in order."""

    item: EvalItem
    prompt: str
    images: list[np.ndarray]  # (H, W, 3) uint8 each, shown first (SoM image, dataset images)
    frames: np.ndarray | None = None  # (F, H, W, 3) uint8
    timestamps: np.ndarray | None = None  # seconds
    duration: float | None = None
    fps: float | None = None
    options: list[str] | None = None  # the options as shown (for option scoring)
    regions: dict[str, np.ndarray] | None = None  # <obj_N> -> first-frame mask
    order: list[int] | None = None  # shown option j is the item's option order[j]


# VSI-Bench / VSTI-Bench: np.linspace(0.5, 0.95, 10), the exact floats its code compares with.
MRA_THRESHOLDS = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))


@dataclass
class ScoringOptions:
    """The named quirks of official scoring; defaults are set by each benchmark."""

    fallback: str = "random"  # unparseable answer: "random" letter, "A", or "none" (wrong)
    last_character: bool = False  # STI-Bench: compare the extraction's last character only
    repeats: int = 1  # OmniSpatial: ask each item this many times, average
    circular: bool = False  # SAT: ask under every option rotation ...
    circular_rule: str = "all"  # ... right only if all are ("all"), or their mean ("mean")
    mra_thresholds: tuple[float, ...] = MRA_THRESHOLDS
    per_type_average: bool = False  # overall = unweighted mean of per-category scores
    prompt: str = "official"  # or "4d-rgpt": the 4D-RGPT release's variant where one exists
    frames: int = 16
    seed: int = 0
    extras: tuple[str, ...] = ()  # named deviations from the official code (Benchmark.EXTRAS)
    judge: str | None = None  # judged mode: "openai:<model>@<base url>" (Benchmark.judged)


@dataclass
class Extraction:
    """What was taken from one output: the value scored, whether it was read from the text,
    and the fallback that drew it when it was not ("random", "A"; None: nothing drawn)."""

    value: Any
    read: bool
    fallback: str | None = None


def per_category_subset(items: list[EvalItem], per_category: int) -> set[str]:
    """The ids of the first `per_category` items of every category (a fixed, shared subset)."""
    chosen: dict[str, list[str]] = {}
    for item in items:
        ids = chosen.setdefault(item.category, [])
        if len(ids) < per_category:
            ids.append(item.id)
    return {i for ids in chosen.values() for i in ids}


def seeded_letter(item_id: str, n: int, seed: int) -> int:
    """A random option index that is the same on every run (random fallback)."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % n


def mra(
    pred: float | None, truth: float, thresholds=MRA_THRESHOLDS, denominator: str = "signed"
) -> float:
    """Mean relative accuracy (VSI-Bench's `mean_relative_accuracy`): the share of thresholds
    theta with |pred - truth| / truth <= 1 - theta, no epsilon, no rounding.

    denominator "signed" (the official code) divides by the signed truth, so for a negative
    truth the error is negative and every parsed number scores 1; "abs" (r4d's option
    `abs-ground-truth`) divides by |truth|. A truth of 0 scores 0 under both (the official code
    stops with ZeroDivisionError there). An unparsed prediction (None) scores 0; NaN fails
    every threshold.
    """
    if pred is None or truth == 0:
        return 0.0
    scale = truth if denominator == "signed" else abs(truth)
    error = abs(pred - truth) / scale
    return float(np.mean(error <= 1 - np.asarray(thresholds, dtype=float)))


def options_block(options: list[str], style: str = "({letter}) {text}") -> str:
    return "\n".join(style.format(letter=LETTERS[i], text=o) for i, o in enumerate(options))


class Benchmark:
    """Base protocol; subclasses set the class attributes and override what differs."""

    name = "benchmark"
    default_frames = 16
    metric = "accuracy"  # summary key prefix, e.g. r4d_accuracy
    # Named deviations from the official code this benchmark offers: name -> what it does.
    EXTRAS: ClassVar[dict[str, str]] = {}
    judged = False  # whether a judge model may read the answers (ScoringOptions.judge)

    def default_options(self) -> ScoringOptions:
        return ScoringOptions(frames=self.default_frames)

    def check_options(self, options: ScoringOptions) -> None:
        """Refuse extras this benchmark does not offer and a judge where it has no judged mode."""
        for name in options.extras:
            if name not in self.EXTRAS:
                known = ", ".join(sorted(self.EXTRAS)) or "none"
                raise InputError(
                    f"{self.name} has no scoring option {name!r} (known: {known})",
                    field="scoring",
                )
        if options.judge and not self.judged:
            raise InputError(f"{self.name} has no judged mode", field="judge")

    def load(self, root: str | Path) -> list[EvalItem]:
        raise NotImplementedError

    def request(self, item: EvalItem, options: ScoringOptions, order=None) -> Request:
        raise NotImplementedError

    def parse(self, text: str, request: Request, options: ScoringOptions):
        """The official rule: the letter (or number) the text gives, None when it gives none."""
        raise NotImplementedError

    def was_read(self, value, request: Request) -> bool:
        """Whether a parsed value is an answer read from the text (for the parse rate)."""
        return value is not None

    def extract(self, text: str, request: Request, options: ScoringOptions, judge=None):
        """`parse` (or the judge's reading), then the protocol's fallback when nothing was
        read: a seeded random letter ("random") or "A"; "none" leaves it unanswered."""
        text = text or ""
        value = judge.choose(request, text) if judge else self.parse(text, request, options)
        if self.was_read(value, request):
            return Extraction(value, True)
        if not request.options or request.item.answer_value is not None:
            return Extraction(value, False)
        if options.fallback == "A":
            return Extraction("A", False, "A")
        if options.fallback == "random":
            key = request.item.id if request.order is None else f"{request.item.id}|{request.order}"
            drawn = LETTERS[seeded_letter(key, len(request.options), options.seed)]
            return Extraction(drawn, False, "random")
        return Extraction(value, False)

    def score(self, item: EvalItem, request: Request, extracted, options: ScoringOptions) -> float:
        """1/0 for a letter against the item's answer (shown order), MRA for numbers."""
        if item.answer_value is not None:
            denominator = "abs" if "abs-ground-truth" in options.extras else "signed"
            return mra(extracted, item.answer_value, options.mra_thresholds, denominator)
        if extracted is None:
            return 0.0
        shown = request.order.index(item.answer_index) if request.order else item.answer_index
        if options.last_character:
            return float(str(extracted)[-1:] == LETTERS[shown])
        return float(extracted == LETTERS[shown])

    def table_columns(self) -> list[tuple[str, list[str]]]:
        """(column, categories it averages) in the paper's order; default: one per category."""
        return []
