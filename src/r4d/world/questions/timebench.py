"""TimeBench (paper A3): how much time a video covers, against 0.25x-4x distractors.

The five options are duration * 2^((i - j) / 2), i = 0..4, with the truth at a random rank j
(`options.ladder`): every option lies within 0.25x-4x of the truth and the truth is not always
the middle one.
"""

from __future__ import annotations

import math

from r4d.io.r4d_bench import TIMEBENCH
from r4d.world.questions.options import numeric_options
from r4d.world.questions.question import Question

TEMPLATES = (
    "How much time has passed in the video?",
    "How long does the video last?",
    "What is the duration of the video?",
)
MIN_CLIP_SECONDS = 2.0


def timebench_options(duration: float, fps: float, rng, density=None) -> tuple[list[str], int]:
    """Options on the video's frame grid (multiples of 1 / fps, as true durations are), rounded
    towards the truth so they stay within 0.25x-4x of it once written."""
    return numeric_options(
        duration, "s", rng, ratio=math.sqrt(2.0), density=density, grid=1.0 / fps, inward=True
    )


def timebench(duration: float, fps: float, rng, params: dict | None = None) -> Question:
    """A TimeBench question for a video of `duration` seconds (frames / fps)."""
    options, answer = timebench_options(duration, fps, rng)
    template = int(rng.integers(len(TEMPLATES)))
    return Question(
        TIMEBENCH,
        "duration",
        template,
        TEMPLATES[template],
        options,
        answer,
        [],
        float(duration),
        "s",
        {**(params or {}), "fps": fps},
        decimals=2,
    )


def clip_ranges(num_frames: int, fps: float, rng, count: int = 2) -> list[tuple[int, int]]:
    """`count` sub-clips [start, stop) of a video, each at least MIN_CLIP_SECONDS and 16 frames
    long and shorter than the whole, at random places."""
    shortest = max(math.ceil(MIN_CLIP_SECONDS * fps), 16)
    if num_frames - 1 <= shortest:
        return []
    ranges = []
    for _ in range(count):
        length = int(rng.integers(shortest, num_frames))
        start = int(rng.integers(0, num_frames - length + 1))
        ranges.append((start, start + length))
    return ranges
