"""What every benchmark shares: items, model requests, scoring options and the base protocol.

A benchmark (lmms-eval's idea of a task) is a small class: how to load and validate its
official files (`load`), its official prompt and visuals (`request`), how an answer is pulled
out of a model's text (`extract`) and scored (`score`), and how scores aggregate (`aggregate`).
Every scoring quirk is a named field of `ScoringOptions` and is written into each run's
summary, so a number always says how it was obtained.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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


@dataclass
class ScoringOptions:
    """The named quirks of official scoring; defaults are set by each benchmark."""

    fallback: str = "random"  # unparseable answer: "random" letter, "A", or "none" (wrong)
    last_character: bool = False  # STI-Bench: compare the extraction's last character only
    repeats: int = 1  # OmniSpatial: ask each item this many times, average
    circular: bool = False  # SAT: ask under every option rotation ...
    circular_rule: str = "all"  # ... right only if all are ("all"), or their mean ("mean")
    mra_thresholds: tuple[float, ...] = tuple(round(0.50 + 0.05 * i, 2) for i in range(10))
    per_type_average: bool = False  # overall = unweighted mean of per-category scores
    prompt: str = "official"  # or "4d-rgpt": the 4D-RGPT release's variant where one exists
    frames: int = 16
    seed: int = 0


def seeded_letter(item_id: str, n: int, seed: int) -> int:
    """A random option index that is the same on every run (random fallback)."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % n


def mra(pred: float | None, truth: float, thresholds) -> float:
    """Mean relative accuracy: mean over theta of [|pred - truth| / truth <= 1 - theta];
    an unparseable prediction scores 0."""
    if pred is None or not np.isfinite(pred) or truth == 0:
        return 0.0
    error = abs(pred - truth) / abs(truth)
    return float(np.mean([error <= 1 - t + 1e-12 for t in thresholds]))


def options_block(options: list[str], style: str = "({letter}) {text}") -> str:
    return "\n".join(style.format(letter=LETTERS[i], text=o) for i, o in enumerate(options))


class Benchmark:
    """Base protocol; subclasses set the class attributes and override what differs."""

    name = "benchmark"
    default_frames = 16
    metric = "accuracy"  # summary key prefix, e.g. r4d_accuracy

    def default_options(self) -> ScoringOptions:
        return ScoringOptions(frames=self.default_frames)

    def load(self, root: str | Path) -> list[EvalItem]:
        raise NotImplementedError

    def request(self, item: EvalItem, options: ScoringOptions, order=None) -> Request:
        raise NotImplementedError

    def extract(self, text: str, request: Request, options: ScoringOptions):
        raise NotImplementedError

    def score(self, item: EvalItem, request: Request, extracted, options: ScoringOptions) -> float:
        """1/0 for a letter against the item's answer (shown order), MRA for numbers."""
        if item.answer_value is not None:
            return mra(extracted, item.answer_value, options.mra_thresholds)
        if extracted is None:
            return 0.0
        shown = request.order.index(item.answer_index) if request.order else item.answer_index
        if options.last_character:
            return float(str(extracted)[-1:] == LETTERS[shown])
        return float(extracted == LETTERS[shown])

    def table_columns(self) -> list[tuple[str, list[str]]]:
        """(column, categories it averages) in the paper's order; default: one per category."""
        return []
