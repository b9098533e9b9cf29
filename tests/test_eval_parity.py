"""Protocol parity: realistic raw outputs and the verdict each benchmark's official scoring code
gives them, worked out by hand from the rule as the official file states it (each corpus
names its file and function). The official code is neither copied nor run here: these tables
are the rules, and r4d's extraction and scoring must reproduce every row.

A row is (output, what is read, verdict). "What is read" is the letter (or number) taken from
the text, None when nothing is; the verdict is 1 / 0, an MRA value, or DRAW where nothing was
read and the protocol's seeded random letter decides.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from r4d.eval.benchmarks import get_benchmark
from r4d.eval.benchmarks.r4d import mmmu_choice, r4d_extract
from r4d.eval.core import LETTERS, EvalItem, Request, mra, seeded_letter

N = None
DRAW = "draw"


def _item(bench, options=None, answer=None, value=None, question="q", extra=None):
    return EvalItem(
        "item-7",
        bench,
        "t",
        question,
        options,
        answer,
        answer_value=value,
        extra=extra or {},
    )


def _verdict(bench_name, item, text, **changes):
    """(extraction, score) of one output under the benchmark's default options + changes."""
    bench = get_benchmark(bench_name)
    options = replace(bench.default_options(), **changes)
    request = Request(item, "", [], options=item.options)
    extracted = bench.extract(text, request, options)
    return extracted, bench.score(item, request, extracted.value, options)


def _check(bench_name, item, row, **changes):
    text, read, verdict = row
    extracted, score = _verdict(bench_name, item, text, **changes)
    if verdict == DRAW:
        assert not extracted.read and extracted.fallback == "random", (text, extracted)
        drawn = LETTERS[seeded_letter(item.id, len(item.options), 0)]
        assert extracted.value == drawn and score == float(drawn == item.letter), text
        return
    if read is None:
        assert not extracted.read, (text, extracted)
    else:
        assert extracted.read and extracted.value == read, (text, extracted)
    assert score == pytest.approx(verdict), (text, extracted, score)


# --- R4D-Bench, R4D-Sim, TimeBench: the lmms-eval task (its utils.py `process_results`): drop
# "The best answer is", "The correct answer is", "The answer is", "The best option is", "The
# correct option is", "Best answer:", "Best option:", "Answer:" (case-sensitive), then the first
# "(X)", then the first standalone X, X among the item's letters; nothing: a random letter.
# Item: five options, the answer is B.
R4D_OPTIONS = ["1.5 m", "3.0 m", "4.5 m", "6.0 m", "7.5 m"]
R4D_LMMS = [
    ("B", "B", 1),
    ("(B)", "B", 1),
    ("B.", "B", 1),
    ("The answer is (B).", "B", 1),
    ("The answer is B", "B", 1),
    ("(D)", "D", 0),
    ("Answer: D", "D", 0),
    ("answer: b", N, DRAW),  # the prefixes and letters are case-sensitive
    ("b", N, DRAW),
    ("3.0 m", N, DRAW),  # option text is not read
    ("E", "E", 0),
    ("(B) 3.0 m", "B", 1),
    ("B) 3.0 m", "B", 1),
    ("A or B", "A", 0),  # several letters: the first
    ("(C) or (B)", "C", 0),
    ("I think it's B because the car moves 3 m.", "B", 1),
    ("A car moves first; the answer is B.", "A", 0),  # chain of thought: its first letter
    ("The car starts slowly and speeds up, covering about 3 m.\nAnswer: B", "B", 1),
    ("", N, DRAW),
    ("None of the above", N, DRAW),
    ("The best answer is C", "C", 0),
    ("Best option: (B)", "B", 1),
    ("The correct option is E.", "E", 0),
    ("Option B", "B", 1),
    ("(F)", N, DRAW),  # not one of the five letters
    ("D. 6.0 m", "D", 0),
    ("``B``", "B", 1),
    ("3 meters", N, DRAW),
]

# --- R4D-Bench's older evaluation (data/r4d_bench/datamodule.py + data/metrics/multiple_choice
# .py, prompt "4d-rgpt"): VILA's parse_choice (llava/eval/mmmu_utils/eval_utils.py). Strip
# , . ! ? ; : ' from both ends (one after another), pad with a space each side; candidates:
# "(X)"; else " X "; else (over 5 words) options whose text occurs, ignoring case; several:
# the one occurring last; none: a random letter. Then the letter's last character is compared.
# Item: the options below, the answer is B ("right").
MOTION_OPTIONS = ["left", "right", "up", "down", "not moving"]
R4D_OLDER = [
    ("B", "B", 1),
    ("(B)", "B", 1),
    ("B.", "B", 1),
    ("The answer is (B).", "B", 1),
    ("(D)", "D", 0),
    ("Answer: B", "B", 1),
    ("B.\n", N, DRAW),  # the newline keeps the "." from being stripped: no " B "
    ("b", N, DRAW),
    ("answer: d", N, DRAW),
    ("(A) left or (B) right? (B)", "B", 1),
    ("(B) is wrong, the answer is (D)", "D", 0),  # the last bracketed letter
    ("A or B", "B", 1),  # the last spaced letter (the lmms-eval task reads A)
    ("B or A", "A", 0),
    ("The object moves to the right of the frame over time.", "B", 1),  # option text
    ("It moves left at first, then right.", "B", 1),  # the option named last
    ("It moves right at first, then left.", "A", 0),
    ("right", N, DRAW),  # option text counts only in answers over 5 words
    ("The car is moving to the right. So the answer is C", "C", 0),  # letters come first
    ("Let me think. The car turns right, so the answer is (B)", "B", 1),
    ("", N, DRAW),
    ("(F)", N, DRAW),
    ("E", "E", 0),
    ("B) right", N, DRAW),  # neither "(B)" nor " B "
    ("Option B.", "B", 1),
    ("B, because it moves right", N, DRAW),  # 5 words: not over 5
    ("B, because it moves to the right", "B", 1),
    ("It is not moving at all, nothing changes.", "E", 0),
    ("3 meters", N, DRAW),
]


@pytest.mark.parametrize("name", ["r4d", "r4dsim", "timebench"])
@pytest.mark.parametrize("row", R4D_LMMS, ids=lambda r: repr(r[0]))
def test_r4d_lmms_eval_task(name, row):
    _check(name, _item(name, R4D_OPTIONS, 1), row)


@pytest.mark.parametrize("name", ["r4d", "r4dsim", "timebench"])
@pytest.mark.parametrize("row", R4D_OLDER, ids=lambda r: repr(r[0]))
def test_r4d_older_evaluation(name, row):
    _check(name, _item(name, MOTION_OPTIONS, 1), row, prompt="4d-rgpt")


def test_r4d_corpora_are_big_enough_and_the_pure_functions_agree():
    assert len(R4D_LMMS) >= 25 and len(R4D_OLDER) >= 25
    for text, read, _ in R4D_LMMS:
        assert r4d_extract(text, 5) == read
    for text, read, _ in R4D_OLDER:
        assert mmmu_choice(text, MOTION_OPTIONS) == read
    assert r4d_extract("E", 4) is None and r4d_extract("(E) or D", 4) == "D"
    assert mmmu_choice("E", MOTION_OPTIONS[:4]) is None


def test_the_random_fallback_is_seeded_and_recorded():
    item = _item("r4d", R4D_OPTIONS, 1)
    first, _ = _verdict("r4d", item, "no idea")
    again, _ = _verdict("r4d", item, "no idea")
    assert first == again and first.fallback == "random" and not first.read
    other, _ = _verdict("r4d", item, "no idea", seed=1)
    assert other.value == LETTERS[seeded_letter(item.id, 5, 1)]
    none, score = _verdict("r4d", item, "no idea", fallback="none")
    assert none.value is None and none.fallback is None and score == 0


# --- STI-Bench (its openai_test.py): the first of (X); Ans = X; Answer [:=] X; Option X; X is|was
# correct; X. or X) at a line's end (ignoring case) gives the letter, else the stripped output;
# right iff its last character is the answer. Item: letters A-E, the answer is B.
STI = [
    ("B", "B", 1),
    ("(B)", "B", 1),
    ("B.", "B", 1),
    ("B)", "B", 1),
    ("The answer is B", "The answer is B", 1),  # no pattern: the last character, B
    ("The answer is B.", "B", 1),
    ("Answer: D", "D", 0),
    ("answer: b", "B", 1),
    ("b", N, 0),  # the last character b is no option letter
    ("Ans='B'", "B", 1),
    ("Option B", "B", 1),
    ("B is correct", "B", 1),
    ("I think B is right", N, 0),  # last character "t"
    ("(D) or (B)", "D", 0),
    ("The car moves 3.0 m, option B", "B", 1),
    ("", N, 0),
    ("3.0 m", N, 0),
    ("It is B.\nBecause the car is fast.", "B", 1),  # a line ending in "B."
    ("E", "E", 0),
    ("A. 1.5 m", N, 0),
    ("Reasoning first, so Answer=B", "B", 1),
    ("Both A and C are possible", N, 0),
    ("``B``", N, 0),
    ("C was correct", "C", 0),
    ("(b)", "B", 1),
    ("The best answer is (B) 3.0 m", "B", 1),
]


@pytest.mark.parametrize("row", STI, ids=lambda r: repr(r[0]))
def test_stibench(row):
    item = _item("stibench", list("vwxyz"), 1, extra={"letters": list("ABCDE")})
    _check("stibench", item, row)


# --- VLM4D (the 4D-RGPT release's lmms-eval `vlm4d` task): 1. a leading bare letter (the output
# is the letter, maybe with one of . ) :, up to its end or a line break); 2. answer\s*(?:is)?\s*
# [:\-]?\s*([A-D])\b, ignoring case; 3. the first standalone letter; nothing: wrong. Item: the
# options below, the answer is B ("right").
VLM4D_OPTIONS = ["left", "right", "towards the camera", "away from the camera"]
VLM4D = [
    ("B", "B", 1),
    ("B.", "B", 1),
    ("(B)", "B", 1),
    ("The answer is B.", "B", 1),
    ("Answer: d", "D", 0),
    ("answer: b", "B", 1),
    ("A jump is visible, then the car moves. The answer is: B", "B", 1),  # r4d read A before
    ("A car drives right. Answer - B", "B", 1),
    ("A car drives to the right.", "A", 0),
    ("right", N, 0),  # option text is not read (extra "option-text")
    ("", N, 0),
    ("A first glance says left, but the correct one is (B)", "A", 0),  # extra "paren-letter"
    ("C\nThe car goes towards the camera.", "C", 0),
    ("B\nThe answer is C", "B", 1),  # rule 1 before rule 2
    ("The answer is a bit unclear; I'd say B", "A", 0),  # "answer is a" matches rule 2
    ("Both A and B are plausible", "A", 0),
    ("D) away from the camera", "D", 0),
    ("B) right", "B", 1),
    ("Answer:B", "B", 1),
    ("The car turns. answer is c", "C", 0),
    ("I think the answer is B because it turns right", "B", 1),
    ("E", N, 0),
    ("3 meters", N, 0),
    ("Option B", "B", 1),
    ("The answer is (B)", "B", 1),  # rule 2 needs the letter itself: rule 3 finds it
    ("Towards the camera", N, 0),
    ("B. right", "B", 1),
    ("answer: A, not B", "A", 0),
]
VLM4D_EXTRAS = [
    (("paren-letter",), ("A first glance says left, but the correct one is (B)", "B", 1)),
    (("paren-letter",), ("A car moves (C) towards us", "C", 0)),
    (("option-text",), ("right", "B", 1)),
    (("option-text",), ("Right.", "B", 1)),
    (("option-text",), ("towards the camera", "C", 0)),
    (("option-text",), ("left or right", N, 0)),
    (("option-text", "paren-letter"), ("The answer is: D", "D", 0)),  # rules 1-3 still first
]


@pytest.mark.parametrize("row", VLM4D, ids=lambda r: repr(r[0]))
def test_vlm4d(row):
    _check("vlm4d", _item("vlm4d", VLM4D_OPTIONS, 1), row)


@pytest.mark.parametrize(("extras", "row"), VLM4D_EXTRAS, ids=lambda r: repr(r))
def test_vlm4d_named_extras(extras, row):
    _check("vlm4d", _item("vlm4d", VLM4D_OPTIONS, 1), row, extras=extras)


# --- MMSI-Bench (its VLMEvalKit dataset): the text inside ``...``, else inside `...`, then the
# first \b[A-D]\b(?!\s[a-zA-Z]); right iff its first character is the answer, ignoring case;
# nothing: wrong. Item: A-D, the answer is B.
MMSI = [
    ("B", "B", 1),
    ("``B``", "B", 1),
    ("`B`", "B", 1),
    ("(B)", "B", 1),
    ("B.", "B", 1),
    ("The answer is B.", "B", 1),
    ("B is correct", N, 0),  # a letter followed by a space and a word is not one
    ("A car moves right, so B", "B", 1),
    ("Answer: D", "D", 0),
    ("answer: d", N, 0),
    ("``C`` because B", "C", 0),
    ("`b`", N, 0),
    ("", N, 0),
    ("C or B", "B", 1),
    ("B or C", "C", 0),
    ("D) left", "D", 0),
    ("(A) left (B) right; I pick B", "A", 0),
    ("3 meters", N, 0),
    ("E", N, 0),
    ("```B```", "B", 1),
    ("The best choice is `A`.", "A", 0),
    ("I think C", "C", 0),
    ("Both A and B", "B", 1),
    ("B\nExplanation: the cup is on the left", N, 0),  # "\nE" counts as a space and a word
    ("Option B", "B", 1),
    ("``B`` and `C`", "B", 1),
]


@pytest.mark.parametrize("row", MMSI, ids=lambda r: repr(r[0]))
def test_mmsi(row):
    _check("mmsi", _item("mmsi", list("ABCD"), 1), row)


# --- OmniSpatial (its api_eval.py, "re" format): the last match of Answer\s*:\s*([A-D])\b, ignoring
# case, compared as written with the upper-case answer; nothing: "A". Item: the answer is B.
OMNI = [
    ("Answer: B", "B", 1),
    ("answer: b", "b", 0),  # read, but compared as written
    ("Answer: A", "A", 0),
    ("B", N, 0),  # no match: "A"
    ("Answer:B", "B", 1),
    ("Answer : B", "B", 1),
    ("Reasoning first. Answer: C\nAnswer: B", "B", 1),  # the last match
    ("Answer: B\nWait, Answer: D", "D", 0),
    ("The answer is B", N, 0),
    ("Final Answer: B.", "B", 1),
    ("Answer: Bright", N, 0),
    ("ANSWER: B", "B", 1),
    ("Answer: (B)", N, 0),
    ("", N, 0),
    ("Answer: E", N, 0),
    ("Answer: B or C", "B", 1),
    ("**Answer: B**", "B", 1),
    ("Answer: b", "b", 0),
    ("answer:B", "B", 1),
    ("Answer: 3 meters", N, 0),
    ("The car moves left.\n\nAnswer: D", "D", 0),
    ("Answer:\nB", "B", 1),
    ("Answer - B", N, 0),
    ("My Answer: B.", "B", 1),
    ("Answer: B\nAnswer: b", "b", 0),
]


@pytest.mark.parametrize("row", OMNI, ids=lambda r: repr(r[0]))
def test_omnispatial(row):
    text, read, verdict = row
    extracted, score = _verdict("omnispatial", _item("omnispatial", list("wxyz"), 1), text)
    assert extracted.read == (read is not None) and score == verdict, (text, extracted)
    assert extracted.value == (read if read is not None else "A")
    assert extracted.fallback == (None if read is not None else "A")


def test_omnispatial_fallback_credits_a():
    extracted, score = _verdict("omnispatial", _item("omnispatial", list("wxyz"), 0), "no idea")
    assert extracted.value == "A" and extracted.fallback == "A" and score == 1


# --- SAT (models/eval_funcs.py, QAAccuracy.update): the output before any "###", stripped and
# lower-cased, after its rewrites ("answer: X" -> X, "1. X" -> X, "is located X" -> X, cut at
# "(highlighted by", "ight" -> "right", ...) must equal the answer text (lower-cased, stripped,
# no parentheses). No letters are shown or read. Item: "left" / "right", the answer is right.
SAT_Q = "Is the chair to the left or the right of the table?"
SAT = [
    ("right", "B", 1),
    ("Right", "B", 1),
    ("  right  ", "B", 1),
    ("right.", N, 0),
    ("left", "A", 0),
    ("The chair is to the right.", N, 0),
    ("B", N, 0),
    ("(B)", N, 0),
    ("Answer: right", "B", 1),
    ("answer:right", N, 0),  # the official code stops with IndexError here
    ("I do not know.", N, 0),
    ("Not really.", N, 0),
    ("right###Human: is it?", "B", 1),
    ("###Assistant: right", "B", 1),
    ("ight", "B", 1),
    ("1. right", "B", 1),
    ("The answer is right", N, 0),
    ("right (highlighted by the red box)", "B", 1),
    ("", N, 0),
    ("left or right", N, 0),
    ("RIGHT", "B", 1),
    ("right\n", "B", 1),
    ("to the right", N, 0),
    ("the chair is located right of the table", "B", 1),
    ("Answer: right.", N, 0),
    ("The chair is located to the right", N, 0),  # the word after "is located ": "to"
]
# (question, options, answer index, output, read, verdict): the question-dependent rewrites.
SAT_QUESTIONS = [
    ("Is the camera moving left or right?", ["left", "right"], 0, "moving left", "A", 1),
    ("Is the camera moving left or right?", ["left", "right"], 0, "It is moving left.", N, 0),
    ("Is the camera moving left or right?", ["left", "right"], 0, "moving clockwise", "A", 1),
    ("Is the camera moving left or right?", ["left", "right"], 1, "counter-clockwise", N, 0),
    ("Which object is closer to the camera?", ["chair", "lamp"], 0, "The chair is closer", "A", 1),
    ("Which object is closer to the camera?", ["chair", "lamp"], 1, "lamps are closer", N, 0),
    (
        "Considering the relative positions, where is the lamp?",
        ["left", "right"],
        1,
        "The lamp is located to the right of the bed",
        "B",
        1,
    ),
    ("Is there a lamp?", ["yes", "no"], 1, "No", "B", 1),
    ("Is there a lamp?", ["yes", "no"], 1, "No.", N, 0),
    ("Is there a lamp?", ["yes", "no"], 1, "Not really.", N, 0),
    ("Is there a lamp?", ["yes", "no"], 1, "I do not know.", N, 0),
    ("What is by the bed?", ["night stand", "sofa"], 0, "night stand", N, 0),  # -> nnight stand
    ("What is by the bed?", ["night stand", "sofa"], 0, "ight stand", "A", 1),
    ("What is by the bed?", ["(night) stand", "sofa"], 0, "ight stand", "A", 1),  # parens dropped
]
# The extra "lenient": the one option whose text occurs as whole words.
SAT_LENIENT = [
    (["left", "right"], 1, "The chair is to the right.", "B", 1),
    (["left", "right"], 1, "left or right", N, 0),
    (["yes", "no"], 1, "I do not know.", N, 0),  # "no" inside "not" / "know" is no answer
    (["yes", "no"], 1, "Not really.", N, 0),
    (["yes", "no"], 1, "No, there is none.", "B", 1),
]


@pytest.mark.parametrize("row", SAT, ids=lambda r: repr(r[0]))
def test_sat(row):
    _check("sat", _item("sat", ["left", "right"], 1, question=SAT_Q), row)


@pytest.mark.parametrize("case", SAT_QUESTIONS, ids=lambda c: repr(c[3]))
def test_sat_question_rules(case):
    question, options, answer, *row = case
    _check("sat", _item("sat", options, answer, question=question), tuple(row))


@pytest.mark.parametrize("case", SAT_LENIENT, ids=lambda c: repr(c[2]))
def test_sat_lenient_extra(case):
    options, answer, *row = case
    _check("sat", _item("sat", options, answer, question=SAT_Q), tuple(row), extras=("lenient",))


def test_sat_defaults_follow_its_code():
    options = get_benchmark("sat").default_options()
    assert options.circular and options.circular_rule == "mean" and options.extras == ()


# --- VSTI-Bench (its lmms-eval utils.py, vsibench_process_results / mean_relative_accuracy): the
# first space-separated word, trailing "." removed; multiple choice: equal to the letter,
# ignoring case; numbers: float() of it, then MRA = mean over theta in np.linspace(0.5, 0.95,
# 10) of [|pred - gt| / gt <= 1 - theta] (signed gt, no epsilon, no rounding); unparsed: 0.
VSTI_MC = [  # options "A. yes", "B. no"; the answer is B
    ("B", "B", 1),
    ("b", "B", 1),
    ("B.", "B", 1),
    ("B. no", "B", 1),
    ("(B)", N, 0),
    ("The answer is B", N, 0),
    ("A", "A", 0),
    ("", N, 0),
    ("B\nbecause it is", N, 0),  # split on " " only: the first word is "B\nbecause"
    (" B", N, 0),  # a leading space: the first word is ""
    ("no", N, 0),
]
VSTI_NA = [  # camera_displacement, ground truth 2.5 (m)
    ("2.5", 2.5, 1.0),
    ("3", 3.0, 0.6),  # error 0.2; 1 - 0.8 is 0.19999999999999996 in floats: 6 of 10 pass
    ("3 meters", 3.0, 0.6),
    ("2.5m", N, 0.0),
    ("2.5.", 2.5, 1.0),
    ("about 2.5", N, 0.0),
    ("2", 2.0, 0.6),
    ("3.75", 3.75, 0.1),  # error 0.5 <= 1 - 0.5: on the boundary, it passes (<=)
    ("1.25", 1.25, 0.1),
    ("3.5", 3.5, 0.3),  # error 0.4 <= 1 - 0.6 (0.4 exactly): 3 pass
    ("2.75", 2.75, 0.9),  # error 0.1 > 1 - 0.9 (0.09999999999999998)
    ("", N, 0.0),
    ("-2.5", -2.5, 0.0),
    ("5", 5.0, 0.0),
    ("1e0", 1.0, 0.0),  # error 0.6
]
VSTI_SIGNED = [  # camera_obj_dist_change, ground truth -2.0: the error is negative
    ("-2", -2.0, 1.0),
    ("5", 5.0, 1.0),  # any parsed number passes every threshold
    ("-1", -1.0, 1.0),
    ("hello", N, 0.0),
    ("nan", "nan", 0.0),  # NaN fails every comparison
]


@pytest.mark.parametrize("row", VSTI_MC, ids=lambda r: repr(r[0]))
def test_vstibench_multiple_choice(row):
    item = _item("vstibench", ["A. yes", "B. no"], 1)
    _check("vstibench", item, row)


def _numeric(row, truth, **changes):
    text, read, verdict = row
    extracted, score = _verdict("vstibench", _item("vstibench", value=truth), text, **changes)
    assert extracted.read == (read is not None), (text, extracted)
    if read == "nan":
        assert np.isnan(extracted.value)
    elif read is not None:
        assert extracted.value == read
    assert score == pytest.approx(verdict), (text, score)
    assert extracted.fallback is None


@pytest.mark.parametrize("row", VSTI_NA, ids=lambda r: repr(r[0]))
def test_vstibench_numbers(row):
    _numeric(row, 2.5)


@pytest.mark.parametrize("row", VSTI_SIGNED, ids=lambda r: repr(r[0]))
def test_vstibench_negative_ground_truth(row):
    _numeric(row, -2.0)


def test_vstibench_abs_ground_truth_extra_and_zero():
    _numeric(("5", 5.0, 0.0), -2.0, extras=("abs-ground-truth",))
    _numeric(("-1", -1.0, 0.1), -2.0, extras=("abs-ground-truth",))  # |error| 0.5
    _numeric(("-2", -2.0, 1.0), -2.0, extras=("abs-ground-truth",))
    for extras in ((), ("abs-ground-truth",)):  # the official code divides by zero here
        _numeric(("0", 0.0, 0.0), 0.0, extras=extras)
        _numeric(("1", 1.0, 0.0), 0.0, extras=extras)


def test_every_benchmark_has_a_big_enough_corpus():
    sizes = {
        "r4d (both evaluations), r4dsim, timebench": min(len(R4D_LMMS), len(R4D_OLDER)),
        "stibench": len(STI),
        "vlm4d": len(VLM4D),
        "mmsi": len(MMSI),
        "omnispatial": len(OMNI),
        "sat": len(SAT) + len(SAT_QUESTIONS),
        "vstibench": len(VSTI_MC) + len(VSTI_NA) + len(VSTI_SIGNED),
    }
    assert all(n >= 25 for n in sizes.values()), sizes


def test_mra_is_the_published_definition():
    thresholds = np.linspace(0.5, 0.95, 10)
    assert mra(10.0, 10.0) == 1.0 and mra(None, 10.0) == 0.0 and mra(float("nan"), 10.0) == 0.0
    assert mra(11.0, 10.0) == pytest.approx(0.9) and mra(9.0, 10.0) == pytest.approx(0.9)
    assert mra(12.5, 10.0) == pytest.approx(0.6)  # error 0.25 = 1 - 0.75: on the boundary
    assert mra(15.0, 10.0) == pytest.approx(0.1) and mra(16.0, 10.0) == 0.0
    for pred in (3.0, 7.3, 10.4, 13.9):
        want = float(np.mean(abs(pred - 10) / 10 <= 1 - thresholds))
        assert mra(pred, 10.0) == pytest.approx(want)
