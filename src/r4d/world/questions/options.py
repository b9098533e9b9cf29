"""Multiple-choice options whose true answer cannot be found from the options alone.

Numeric options form a geometric ladder truth * r^(i - j), i = 0..n-1, with a random step r
(neighbours at least MIN_RATIO apart after rounding) and the truth at rank j. Without more
knowledge j is uniform, so the true value's rank gives nothing away. Given the distribution of
true values of that kind of question (`TruthDensity`), j is drawn with weight
prod_{i != j} f(value_i): distractors then look like true values of that kind (they stay inside
the range the world produces and follow its density), so neither their rank nor their
magnitude marks them.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

MIN_RATIO = 1.25  # neighbouring numeric options differ by at least 25%
STEP_RANGE = (1.3, 1.7)


class TruthDensity:
    """A histogram density of positive true values in log space (zero outside their range)."""

    def __init__(self, values, bins: int = 24):
        logs = np.log(np.asarray(values, dtype=np.float64))
        self.lo, self.hi = float(np.exp(logs.min())), float(np.exp(logs.max()))
        edges = np.linspace(logs.min(), logs.max() + 1e-9, bins + 1)
        counts, _ = np.histogram(logs, edges)
        self.edges, self.density = edges, (counts + 0.5) / (counts + 0.5).sum()

    def __call__(self, values) -> np.ndarray:
        logs = np.log(np.asarray(values, dtype=np.float64))
        inside = (logs >= self.edges[0] - 1e-9) & (logs <= self.edges[-1] + 1e-9)
        index = np.clip(np.searchsorted(self.edges, logs) - 1, 0, len(self.density) - 1)
        return np.where(inside, self.density[index], 0.0)


def format_value(value: float, unit: str, decimals: int = 2) -> str:
    text = f"{value:.{decimals}f}"
    return f"{text} {unit}" if unit else text


def _round(value: float, side: int, decimals: int, grid: float | None, inward: bool) -> float:
    """Round a ladder value; `inward` rounds distractors towards the truth (side < 0 below it,
    > 0 above it), so they never leave the exact ladder's span; `grid` first snaps to its
    multiples (e.g. 1 / fps for durations)."""
    scale = 10**decimals
    if grid is not None:
        steps = value / grid
        steps = math.floor(steps) if side > 0 else math.ceil(steps) if side < 0 else round(steps)
        value = steps * grid
    if not inward or side == 0:
        return round(value, decimals)
    cents = math.floor(value * scale + 1e-9) if side > 0 else math.ceil(value * scale - 1e-9)
    return cents / scale


def _rank(truth: float, step: float, n: int, rng, density: TruthDensity | None) -> int:
    if density is None:
        return int(rng.integers(n))
    weights = np.array(
        [np.prod(density([truth * step ** (i - j) for i in range(n) if i != j])) for j in range(n)]
    )
    if weights.sum() <= 0:
        return int(rng.integers(n))
    return int(rng.choice(n, p=weights / weights.sum()))


def ladder(
    truth: float,
    rng: np.random.Generator,
    n: int = 5,
    ratio=STEP_RANGE,
    decimals=2,
    density: TruthDensity | None = None,
    grid: float | None = None,
    inward: bool = False,
):
    """(values, j): n rounded values with values[j] the rounded truth, or None if rounding
    cannot keep them MIN_RATIO apart. `ratio` is a fixed step or a (low, high) range."""
    for _ in range(20):
        if isinstance(ratio, tuple):
            low, high = ratio
            if density is not None:  # a step whose ladder can fit in the range of truths
                high = max(low, min(high, (density.hi / density.lo) ** (1 / (n - 1))))
            step = rng.uniform(low, high)
        else:
            step = ratio
        j = _rank(truth, step, n, rng, density)
        values = [_round(truth * step ** (i - j), i - j, decimals, grid, inward) for i in range(n)]
        if values[0] > 0 and all(b / a >= MIN_RATIO for a, b in itertools.pairwise(values)):
            return values, j
    return None


def numeric_options(truth: float, unit: str, rng, decimals: int = 2, **ladder_args):
    """(option texts, index of the truth) or None; `ladder_args` go to `ladder`."""
    found = ladder(truth, rng, decimals=decimals, **ladder_args)
    if found is None:
        return None
    values, j = found
    return [format_value(v, unit, decimals) for v in values], j


def place_answer(options: list, answer: int, position: int, rng) -> tuple[list, int]:
    """Put option `answer` at `position` and the others, shuffled, around it."""
    others = [o for i, o in enumerate(options) if i != answer]
    order = rng.permutation(len(others))
    shuffled = [others[i] for i in order]
    return [*shuffled[:position], options[answer], *shuffled[position:]], position


class PositionBalancer:
    """Hands out answer positions so that each count of options sees every position equally
    often (least-used first, ties broken by the seeded generator)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.counts: dict[int, np.ndarray] = {}

    def next(self, n_options: int) -> int:
        counts = self.counts.setdefault(n_options, np.zeros(n_options, dtype=np.int64))
        least = np.flatnonzero(counts == counts.min())
        position = int(self.rng.choice(least))
        counts[position] += 1
        return position
