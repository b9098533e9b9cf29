"""Protocol parity: what each benchmark's official rules extract from 32 raw model outputs.

The expected columns were worked out by hand from each benchmark's official rules (module
docstrings in r4d.eval.benchmarks); the code must agree with every one of them."""

from __future__ import annotations

import pytest

from r4d.eval.benchmarks.mmsi import mmsi_extract
from r4d.eval.benchmarks.omnispatial import omnispatial_extract
from r4d.eval.benchmarks.r4d import r4d_extract
from r4d.eval.benchmarks.sat import sat_extract
from r4d.eval.benchmarks.sti import sti_extract
from r4d.eval.benchmarks.vlm4d import vlm4d_extract
from r4d.eval.benchmarks.vsti import first_word
from r4d.eval.core import mra

# (raw output, R4D (5 options), STI, VLM4D (left/right/towards/away), MMSI, OmniSpatial,
#  SAT (left/right), VSTI first word)
N = None
CORPUS = [
    ("B", "B", "B", "B", "B", N, "B", "B"),
    ("(B)", "B", "B", "B", "B", N, "B", "(B)"),
    ("The answer is C.", "C", "C", "C", "C", N, N, "The"),
    ("The best answer is (D)", "D", "D", "D", "D", N, N, "The"),
    ("Answer: D", "D", "D", "D", "D", "D", N, "Answer:"),
    ("answer: d", N, "D", N, N, "d", N, "answer:"),
    ("b", N, "b", N, N, N, N, "b"),
    ("B.", "B", "B", "B", "B", N, "B", "B"),
    ("(b)", N, "B", N, N, N, N, "(b)"),
    (
        "I think it's A because the box moves left.",
        "A",
        "I think it's A because the box moves left.",
        "A",
        N,
        N,
        "A",
        "I",
    ),
    (
        "Reasoning: it moves right, so the answer is B.\nAnswer: B",
        "B",
        "B",
        "B",
        "B",
        "B",
        "B",
        "Reasoning:",
    ),
    ("Both A and C look plausible, but C.", "A", "C", "A", "C", N, "A", "Both"),
    ("", N, "", N, N, N, N, ""),
    ("None of the above", N, "None of the above", N, N, N, N, "None"),
    ("right", N, "right", "B", N, N, "B", "right"),
    ("Option E", "E", "E", N, N, N, N, "Option"),
    ("E", "E", "E", N, N, N, N, "E"),
    ("``B``", "B", "``B``", "B", "B", N, "B", "``B``"),
    ("`C`", "C", "`C`", "C", "C", N, N, "`C`"),
    ("The correct option is (A).", "A", "A", "A", "A", N, "A", "The"),
    ("A) left", "A", "A) left", "A", "A", N, "A", "A)"),
    ("Ans='C'", "C", "C", "C", "C", N, N, "Ans='C'"),
    ("C is correct", "C", "C", "C", N, N, N, "C"),
    ("I choose option b", N, "B", N, N, N, N, "I"),
    ("The best option is D.", "D", "D", "D", "D", N, N, "The"),
    ("Best answer: A", "A", "A", "A", "A", "A", "A", "Best"),
    ("answer: (C)", "C", "C", "C", "C", N, N, "answer:"),
    ("2.5", N, "2.5", N, N, N, N, "2.5"),
    ("3 meters", N, "3 meters", N, N, N, N, "3"),
    ("(A) left", "A", "A", "A", "A", N, "A", "(A)"),
    ("left", N, "left", "A", N, N, "A", "left"),
    ("It's B. Answer: C", "B", "C", "B", "B", "C", "B", "It's"),
]
VLM4D_OPTIONS = ["left", "right", "towards", "away"]
SAT_OPTIONS = ["left", "right"]


def _first_char(pred):
    return pred.upper()[0] if pred else None


COLUMNS = {
    "r4d": lambda text: r4d_extract(text, 5),
    "stibench": sti_extract,
    "vlm4d": lambda text: vlm4d_extract(text, VLM4D_OPTIONS),
    "mmsi": lambda text: _first_char(mmsi_extract(text)),
    "omnispatial": omnispatial_extract,
    "sat": lambda text: sat_extract(text, SAT_OPTIONS),
    "vstibench": first_word,
}


@pytest.mark.parametrize("column", list(COLUMNS))
def test_extraction_matches_the_official_rules(column):
    index = list(COLUMNS).index(column) + 1
    assert len(CORPUS) >= 30
    for row in CORPUS:
        assert COLUMNS[column](row[0]) == row[index], (column, row[0])


def test_r4d_letters_are_limited_to_the_option_count():
    assert r4d_extract("E", 4) is None and r4d_extract("(E) or D", 4) == "D"


def test_sti_last_character_rule():
    from r4d.eval.benchmarks.sti import STIBench
    from r4d.eval.core import EvalItem, Request

    bench, options = STIBench(), STIBench().default_options()
    item = EvalItem("1", "stibench", "t", "q", ["x", "y"], 1)
    request = Request(item, "", [], options=["x", "y"])
    assert bench.score(item, request, sti_extract("Answer: B"), options) == 1
    assert bench.score(item, request, sti_extract("B is right"), options) == 0  # last char 't'
    assert bench.score(item, request, sti_extract("(b)"), options) == 1


def test_mra_is_the_published_definition():
    thresholds = [0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95]
    assert mra(10.0, 10.0, thresholds) == 1.0
    assert mra(None, 10.0, thresholds) == 0.0
    assert mra(float("nan"), 10.0, thresholds) == 0.0
    # relative error 0.1 passes theta <= 0.9 (error <= 1 - theta): 9 of 10
    assert mra(11.0, 10.0, thresholds) == pytest.approx(0.9)
    assert mra(9.0, 10.0, thresholds) == pytest.approx(0.9)
    # error 0.25: passes 0.50 .. 0.75 (6 thresholds); exactly on the boundary counts (<=)
    assert mra(12.5, 10.0, thresholds) == pytest.approx(0.6)
    assert mra(15.0, 10.0, thresholds) == pytest.approx(0.1)  # error 0.5 passes 0.50 only
    assert mra(16.0, 10.0, thresholds) == 0.0
    for pred in (3.0, 7.3, 10.4, 13.9):
        want = sum(abs(pred - 10) / 10 <= 1 - t for t in thresholds) / 10
        assert mra(pred, 10.0, thresholds) == pytest.approx(want)
