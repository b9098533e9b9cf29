"""R4D-Bench (released `test.json`), R4D-Sim (r4d's own) and TimeBench, one protocol family.

R4D-Bench's protocol (its NVIDIA lmms-eval task; the 4D-RGPT repository has no evaluation
code): 16 uniformly sampled frames; visuals = [SoM image, video]; the prompt = SoM preamble,
question, "Options:" with "(A) ..." lines, "Answer with only the letter of the correct option."
(`r4d.io.r4d_bench.format_prompt`); extraction in `r4d_extract`; no match: a random letter.
Static = VG, DM, SR. Table: Avg | Sta | Dyn | VG DM SR | R C T | FP SA DP. The "4d-rgpt" prompt
variant is the release's older data module: "These images are uniformly sampled from a video
of {s} seconds." before the question, scored by the last-character rule. TimeBench (paper A3)
asks "How much time has passed in the video?" with the true duration and distractors
0.25x-4x, for R4D-Sim's TimeBench items or any folder of videos.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from r4d.eval.core import LETTERS, Benchmark, EvalItem, Request, ScoringOptions, seeded_letter
from r4d.io.masks import decode_mask
from r4d.io.r4d_bench import format_prompt, load_split
from r4d.io.video import probe, sample_uniform
from r4d.world.questions.question import DYNAMIC_TASKS, STATIC_TASKS, TASKS, TIMEBENCH

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


def fallback(letter: str | None, item_id: str, n: int, options: ScoringOptions) -> str | None:
    if letter is not None or options.fallback == "none":
        return letter
    if options.fallback == "A":
        return "A"
    return LETTERS[seeded_letter(item_id, n, options.seed)]


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
                f"seconds. {question}"
            )
        prompt = format_prompt(question, shown, som=bool(images))
        regions = None
        if item.extra.get("regions"):
            regions = {
                r["token"]: decode_mask(r["mask"]) for r in item.extra["regions"] if r.get("mask")
            }
        return Request(
            item, prompt, images, frames, times, info.duration, info.fps, shown, regions, order
        )

    def default_options(self) -> ScoringOptions:
        return ScoringOptions(frames=16)

    def extract(self, text: str, request: Request, options: ScoringOptions):
        n = len(request.options)
        if options.prompt == "4d-rgpt":  # scored by the last character of the output
            return (text or "").strip() or None
        return fallback(r4d_extract(text, n), request.item.id, n, options)

    def score(self, item, request, extracted, options):
        if options.prompt == "4d-rgpt":
            options = ScoringOptions(**{**options.__dict__, "last_character": True})
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
            from r4d.errors import InputError

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
