"""SAT real (arijitray1993/SAT): 150 real-image questions, circular evaluation.

Rows (the `test` parquet): image_bytes (1-2 images), question, answers (the two options),
question_type, correct_answer (the option's text). Prompt (the repo's): "{question} Answer the
question using a single word or phrase. Choose between the following options: "x" or "y"."
(ego-movement questions say first that the first image begins the video and the second ends
it). No letters are shown and none are read.

Scoring follows the repo's `models/eval_funcs.py` `QAAccuracy.update` (`sat_answer`): the
output up to any "###", stripped and lower-cased, after a few rewrites of answer phrasings,
must equal the answer text (lower-cased, stripped, parentheses dropped). Circular: each
question is asked under both option orders (`RealSATDynamic`) and the two scores are averaged
(circular_rule "mean"); "all" (right under both orders) is the dataset card's stricter rule.
The extra "lenient" (off by default) instead accepts the one option whose text the output
contains as whole words.
"""

from __future__ import annotations

import re
from pathlib import Path

from r4d.errors import InputError
from r4d.eval.benchmarks.common import image, need, options_text, read_rows
from r4d.eval.core import LETTERS, Benchmark, EvalItem, Request, ScoringOptions
from r4d.io.r4d_bench import refuse_duplicate_ids

EGO = "The first image is from the beginning of the video and the second image is from the end. "
EXTRAS = {
    "lenient": "the one option whose text occurs in the output as whole words (ignoring case) "
    "is the answer, instead of the whole output having to equal it",
}
CLOSER = (" is closer", " are closer", " is situated closer", " are situated closer")


def _after(text: str, marker: str) -> str | None:
    """The first space-separated word after the first `marker` (as text.split(marker)[1]
    reads it), None when the marker does not occur."""
    parts = text.split(marker)
    return parts[1].split(" ")[0].strip() if len(parts) > 1 else None


def _turn(raw: str, marker: str) -> str:
    """The conversation turn after the first `marker` ("" when there is none)."""
    parts = raw.split(marker)
    return parts[1].split("###")[0].strip().lower() if len(parts) > 1 else ""


def sat_answer(text: str, question: str, yes_no: bool = False) -> str:
    """The output as QAAccuracy.update reads it, before comparing with the answer text.

    1. The part before the first "###", stripped and lower-cased; when that is empty, the
       turn after "###Assistant:" (or "###Human:"); for a yes/no answer whose reading is not
       yes or no, the turn after "###Assistant:", or else that first part again.
    2. "ight" -> "right"; "ight stand" -> "night stand".
    3. For "which object is closer" questions: the last word before " is closer" (or
       " are closer", " is situated closer", " are situated closer"); for "is the camera
       moving" questions: the word after "moving " (clockwise -> left, counter-clockwise ->
       right); for "considering the relative positions" questions with "is located to":
       "right" if it says right, else "left".
    4. Cut at "(highlighted by" (also when "(marked by" is present: the official code cuts at
       "(highlighted by" there too); the part after the first "1." and up to a second; the
       word after "is located "; the word after "answer: ".

    Where the official code would stop with an IndexError (e.g. "moving" or "answer:" not
    followed by a space), the reading is left as it was and then matches no option.
    """
    raw = (text or "").strip()
    first = raw.split("###")[0].strip().lower()
    said = first
    if not said and "###Assistant" in raw:
        said = _turn(raw, "###Assistant:")
    elif not said and "###Human" in raw:
        said = _turn(raw, "###Human:")
    if yes_no and said not in ("yes", "no"):
        said = _turn(raw, "###Assistant:") if "###Assistant:" in raw else first
    if said == "ight":
        said = "right"
    said = said.replace("ight stand", "night stand")  # "night stand" becomes "nnight stand"
    asked, whole = question.lower(), said  # each question rule reads the whole reading
    if "which object is closer" in asked:
        marker = next((m for m in CLOSER if m.strip() in whole), None)
        if marker:
            said = whole.split(marker)[0].split(" ")[-1].strip()
    if "is the camera moving" in asked and "moving" in whole:
        word = _after(whole, "moving ")
        if word is not None:
            said = {"clockwise": "left", "counter-clockwise": "right"}.get(word, word)
    if "considering the relative positions" in asked and "is located to" in whole:
        said = "right" if "right" in whole else "left"
    if "(highlighted by" in said or "(marked by" in said:
        said = said.split("(highlighted by")[0].strip()
    if "1." in said:
        said = said.split("1.")[1].strip()
    for marker, key in (("is located", "is located "), ("answer:", "answer: ")):
        if marker in said:
            word = _after(said, key)
            said = said if word is None else word
    return said


def sat_truth(option: str) -> str:
    """An option's text as the official code compares it: lower-cased, stripped, no parens."""
    return option.lower().strip().replace("(", "").replace(")", "")


def sat_extract(text: str, options: list[str], question: str = "", yes_no: bool = False):
    """The letter of the option the output equals under the official reading, else None."""
    said = sat_answer(text, question, yes_no)
    hits = [i for i, o in enumerate(options) if sat_truth(o) == said]
    return LETTERS[hits[0]] if hits else None


def sat_lenient(text: str, options: list[str]) -> str | None:
    """The extra "lenient": the one option whose text occurs as whole words, else None."""
    said = (text or "").lower()
    hits = [
        i
        for i, o in enumerate(options)
        if re.search(rf"(?<!\w){re.escape(o.lower().strip())}(?!\w)", said)
    ]
    return LETTERS[hits[0]] if len(hits) == 1 else None


class SATReal(Benchmark):
    name = "sat"
    EXTRAS = EXTRAS

    def default_options(self) -> ScoringOptions:
        return ScoringOptions(frames=0, fallback="none", circular=True, circular_rule="mean")

    def load(self, root) -> list[EvalItem]:
        root = Path(root)
        path = next(iter(sorted(root.glob("*.parquet"))), root / "test.parquet")
        out = []
        for i, row in enumerate(read_rows(path)):
            need(row, path, i, "image_bytes", "question", "answers", "correct_answer")
            row_id = str(row["id"]) if row.get("id") is not None else f"sat_{i:04d}"
            where = f"{path} row {row_id}"
            answers = options_text(row["answers"], where, "answers")
            if str(row["correct_answer"]) not in answers:
                raise InputError(
                    f"the correct answer {row['correct_answer']!r} is not among the answers",
                    where=where,
                    field="correct_answer",
                )
            out.append(
                EvalItem(
                    row_id,
                    self.name,
                    str(row.get("question_type", "all")),
                    row["question"],
                    answers,
                    answers.index(str(row["correct_answer"])),
                    images=row["image_bytes"],
                    extra={"oracle_format": "{text}"},
                )
            )
        refuse_duplicate_ids((item.id for item in out), path)
        return out

    def request(self, item: EvalItem, options: ScoringOptions, order=None) -> Request:
        shown = [item.options[i] for i in order] if order else item.options
        question = (EGO if item.category == "ego_movement" else "") + item.question
        choices = " or ".join(f'"{o}"' for o in shown)
        prompt = (
            f"{question} Answer the question using a single word or phrase. Choose "
            f"between the following options: {choices}."
        )
        return Request(
            item,
            prompt,
            [image(b, f"item {item.id}", f"images[{i}]") for i, b in enumerate(item.images)],
            options=shown,
            order=order,
        )

    def parse(self, text: str, request: Request, options: ScoringOptions):
        if "lenient" in options.extras:
            return sat_lenient(text, request.options)
        item = request.item
        yes_no = item.options[item.answer_index] in ("yes", "no")
        return sat_extract(text, request.options, item.question, yes_no)
