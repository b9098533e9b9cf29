"""VSTI-Bench (VLM-3R): spatial-temporal questions on videos; letters and numbers (MRA).

Items (a JSON list or parquet): id, video_path, question_type, question, options (multiple
choice only), ground_truth, mc_answer. Official protocol (its lmms-eval task): 32 frames;
"These are frames of a video." + question + "Please answer the question using a single word or
phrase." (numeric types) or + "Options:" + options + "Answer with the option's letter from the
given choices directly." (multiple choice), joined by newlines. Parsing (`vsibench_process_results`
in its lmms-eval utils): the first space-separated word of the answer, trailing "." removed;
multiple choice is right iff it equals the letter (ignoring case); numbers score MRA
(`r4d.eval.core.mra`): thresholds np.linspace(0.5, 0.95, 10), right at theta iff
|pred - gt| / gt <= 1 - theta, no epsilon, no rounding, divided by the signed ground truth, so
a negative ground truth gives every parsed number full marks (the official behaviour, the
default); the extra "abs-ground-truth" divides by |gt| instead. Only a change of distance
(SIGNED) may have a negative ground truth: a distance or displacement below 0 is refused when
the file is read, as is a ground truth of 0 (the official code raises ZeroDivisionError there),
NaN or infinity, naming the row. Unparseable: 0. Overall: the unweighted mean of the
per-question-type scores.
"""

from __future__ import annotations

from pathlib import Path

from r4d.errors import InputError
from r4d.eval.benchmarks.common import (
    mra_truth,
    need,
    options_text,
    read_rows,
    uniform_frames,
)
from r4d.eval.core import LETTERS, Benchmark, EvalItem, Request, ScoringOptions
from r4d.io.r4d_bench import refuse_duplicate_ids

NUMERIC = ("camera_obj_abs_dist", "camera_displacement", "camera_obj_dist_change")
SIGNED = ("camera_obj_dist_change",)  # the numeric types whose ground truth may be negative
PRE = "These are frames of a video."
EXTRAS = {
    "abs-ground-truth": "MRA divides by |ground truth| (the official code divides by the "
    "signed ground truth, which gives full marks for any number when it is negative)",
}


def first_word(text: str) -> str:
    words = (text or "").split(" ")
    return words[0].rstrip(".").strip() if words else ""


class VSTIBench(Benchmark):
    name = "vstibench"
    default_frames = 32
    EXTRAS = EXTRAS

    def default_options(self) -> ScoringOptions:
        return ScoringOptions(frames=32, fallback="none", per_type_average=True)

    def load(self, root) -> list[EvalItem]:
        root = Path(root)
        path = next(
            (p for p in (root / "test.json", root / "test.parquet") if p.is_file()),
            root / "test.json",
        )
        out = []
        for i, row in enumerate(read_rows(path)):
            need(row, path, i, "id", "video_path", "question_type", "question", "ground_truth")
            where = f"{path} row {row['id']}"
            video = root / row["video_path"]
            if not video.is_file():
                raise InputError(f"no video {video}", where=where, field="video_path")
            kind = row["question_type"]
            item = EvalItem(str(row["id"]), self.name, kind, row["question"], video=video)
            if kind in NUMERIC:
                item.answer_value = mra_truth(
                    row["ground_truth"], where, "ground_truth", signed=kind in SIGNED
                )
            else:
                need(row, path, i, "options", "mc_answer")
                item.options = options_text(row["options"], where, "options")
                letter = str(row["mc_answer"]).upper()
                if len(letter) != 1 or letter not in "ABCDEFGH"[: len(item.options)]:
                    raise InputError("expected an option letter", where=where, field="mc_answer")
                item.answer_index = "ABCDEFGH".index(letter)
                item.extra["oracle_format"] = "{letter}"
            out.append(item)
        refuse_duplicate_ids((item.id for item in out), path)
        return out

    def request(self, item: EvalItem, options: ScoringOptions, order=None) -> Request:
        frames, times, duration, fps = uniform_frames(item.video, options.frames)
        if item.options is None:
            prompt = (
                f"{PRE}\n{item.question}\nPlease answer the question using a single word or phrase."
            )
        else:
            prompt = "\n".join(
                [
                    PRE,
                    item.question,
                    "Options:\n" + "\n".join(item.options),
                    "Answer with the option's letter from the given choices directly.",
                ]
            )
        return Request(item, prompt, [], frames, times, duration, fps, item.options)

    def parse(self, text: str, request: Request, options: ScoringOptions):
        word = first_word(text)
        if request.item.answer_value is None:
            return word.upper() or None
        try:
            return float(word)
        except ValueError:
            return None

    def was_read(self, value, request: Request) -> bool:
        if request.item.answer_value is not None:
            return value is not None
        return value in tuple(LETTERS[: len(request.options)])
