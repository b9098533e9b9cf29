"""R4D-Bench (released `test.json`), R4D-Sim (r4d's own) and TimeBench, one protocol family.

R4D-Bench's protocol (its NVIDIA lmms-eval task): 16 uniformly sampled frames; visuals = [SoM
image, video]; the prompt = SoM preamble, question, "Options:" with "(A) ..." lines, "Answer
with only the letter of the correct option." (`r4d.io.r4d_bench.format_prompt`); extraction in
`r4d_extract`; no match: a random letter (seeded by the item's id, so runs repeat). Static =
VG, DM, SR. Table: Avg | Sta | Dyn | VG DM SR | R C T | FP SA DP.

The "4d-rgpt" prompt variant is the release's older evaluation (`data/r4d_bench/datamodule.py`
with `data/metrics/multiple_choice.py`): "These images are uniformly sampled from a video of
{s} seconds." and a newline before the question; the answer is read with VILA's MMMU-style
`parse_choice` (`mmmu_choice` here; no candidate: a random letter), and the last character of
that letter is compared with the answer's.

TimeBench (paper A3) asks "How much time has passed in the video?" with the true duration and
distractors 0.25x-4x, for R4D-Sim's TimeBench items or any folder of videos.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from r4d.errors import InputError
from r4d.eval.core import LETTERS, Benchmark, EvalItem, Request, ScoringOptions
from r4d.io.masks import decode_mask
from r4d.io.r4d_bench import (
    DYNAMIC_TASKS,
    STATIC_TASKS,
    TASKS,
    TIMEBENCH,
    format_prompt,
    load_split,
)
from r4d.io.video import probe, sample_uniform

ABBREVIATIONS = {
    "3D Video Grounding": "VG",
    "Dimensional Measurement": "DM",
    "Spatial Relation": "SR",
    "Rotational": "R",
    "Counting": "C",
    "Translational": "T",
    "False Positives": "FP",
    "Speed & Acceleration": "SA",
    "Displacement & Path Length": "DP",
}
PREFIXES = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The best option is",
    "The correct option is",
    "Best answer:",
    "Best option:",
    "Answer:",
)
# parse_choice strips these from both ends of the response, one after another, in this order.
EDGE_MARKS = (",", ".", "!", "?", ";", ":", "'")


def r4d_extract(text: str, n_options: int) -> str | None:
    """R4D-Bench's extraction (its lmms-eval task), without the fallback: drop the answer
    prefixes (exact, case-sensitive), then the first "(X)", then the first standalone X, with
    X among the first n_options letters; None when nothing matches."""
    cleaned = text or ""
    for prefix in PREFIXES:
        cleaned = cleaned.replace(prefix, "")
    valid = LETTERS[:n_options]
    for pattern in (rf"\(([{valid}])\)", rf"\b([{valid}])\b"):
        match = re.search(pattern, cleaned)
        if match:
            return match.group(1)
    return None


def _last(candidates: list[str], text: str, needle) -> str:
    """The candidate whose needle occurs last in text (the first such on a tie)."""
    return max(candidates, key=lambda c: text.rfind(needle(c)))


def mmmu_choice(text: str, options: list[str]) -> str | None:
    """The letter VILA's MMMU-style `parse_choice` (llava/eval/mmmu_utils/eval_utils.py) reads,
    without its random draw (None instead).

    The response loses the EDGE_MARKS at both ends (each stripped in turn) and is padded with
    one space each side. Candidates, case-sensitive, among the option letters: "(X)"; if none,
    " X " (spaces only, so "B." inside a sentence or "B\n" is not one); if none and the
    response has more than 5 whitespace-separated words, every option whose text occurs in it
    (ignoring case). Several candidates: the one whose match occurs last.
    """
    response = text or ""
    for mark in EDGE_MARKS:
        response = response.strip(mark)
    padded = f" {response} "
    letters = LETTERS[: len(options)]
    bracketed = [c for c in letters if f"({c})" in padded]
    if bracketed:
        return _last(bracketed, padded, lambda c: f"({c})")
    spaced = [c for c in letters if f" {c} " in padded]
    if spaced:
        return _last(spaced, padded, lambda c: f" {c} ")
    if len(padded.split()) > 5:
        lowered = padded.lower()
        by_letter = dict(zip(letters, (o.lower() for o in options), strict=True))
        named = [c for c in letters if by_letter[c] in lowered]
        if named:
            return _last(named, lowered, by_letter.__getitem__)
    return None


class R4DBench(Benchmark):
    name = "r4d"
    split_file = "test"
    tasks = TASKS

    def load(self, root) -> list[EvalItem]:
        root = Path(root)
        out = []
        for item in load_split(root, self.split_file, check_files=True):
            if item.task not in self.tasks:
                continue
            split = "static" if item.task in STATIC_TASKS else "dynamic"
            images = [root / item.som_image] if item.som_image else []
            out.append(
                EvalItem(
                    item.id,
                    self.name,
                    item.task,
                    item.question,
                    item.options,
                    item.answer_index,
                    video=root / item.video,
                    images=images,
                    split=split,
                    extra={"regions": item.extra.get("regions"), "scene": item.extra.get("scene")},
                )
            )
        return out

    def request(self, item: EvalItem, options: ScoringOptions, order=None) -> Request:
        shown = [item.options[i] for i in order] if order else item.options
        frames, times, _ = sample_uniform(item.video, options.frames)
        info = probe(item.video)
        images = [np.asarray(Image.open(p).convert("RGB")) for p in item.images]
        question = item.question
        if options.prompt == "4d-rgpt":
            question = (
                f"These images are uniformly sampled from a video of {info.duration:g} "
                f"seconds.\n{question}"
            )
        prompt = format_prompt(question, shown, som=bool(images))
        regions = None
        if item.extra.get("regions"):
            regions = {
                r["token"]: decode_mask(r["mask"], f"item {item.id}", f"region {r['token']}.mask")
                for r in item.extra["regions"]
                if r.get("mask")
            }
        return Request(
            item, prompt, images, frames, times, info.duration, info.fps, shown, regions, order
        )

    def default_options(self) -> ScoringOptions:
        return ScoringOptions(frames=16)

    def parse(self, text: str, request: Request, options: ScoringOptions):
        if options.prompt == "4d-rgpt":  # the older evaluation: parse_choice first
            return mmmu_choice(text, request.options)
        return r4d_extract(text, len(request.options))

    def score(self, item, request, extracted, options):
        if options.prompt == "4d-rgpt":  # ... then the last character of that letter
            options = replace(options, last_character=True)
        return super().score(item, request, extracted, options)

    def table_columns(self):
        singles = [(abbr, [task]) for task, abbr in ABBREVIATIONS.items()]
        return [("Sta", list(STATIC_TASKS)), ("Dyn", list(DYNAMIC_TASKS)), *singles]


class R4DSim(R4DBench):
    """R4D-Sim's test split (the nine tasks), read and scored as R4D-Bench."""

    name = "r4dsim"


class TimeBench(R4DBench):
    """TimeBench items of an R4D-Sim folder, or generated for every video under a folder."""

    name = "timebench"
    tasks = (TIMEBENCH,)

    def load(self, root) -> list[EvalItem]:
        root = Path(root)
        if (root / "test.json").is_file():
            items = super().load(root)
            for item in items:
                item.split = None
            return items
        from r4d.world.questions.timebench import timebench

        videos = sorted(p for p in root.rglob("*.mp4"))
        if not videos:
            raise InputError("no test.json and no .mp4 files to ask about", where=root)
        out = []
        for i, path in enumerate(videos):
            info = probe(path)
            q = timebench(info.duration, info.fps, np.random.default_rng([0, i]))
            out.append(
                EvalItem(
                    f"timebench_{i:05d}",
                    self.name,
                    TIMEBENCH,
                    q.text,
                    q.options,
                    q.answer,
                    video=path,
                )
            )
        return out

    def table_columns(self):
        return [(TIMEBENCH, [TIMEBENCH])]
