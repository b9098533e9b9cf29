"""STI-Bench (MINT-SJTU/STI-Bench): `qa.parquet` + videos, scored by the last character.

Rows: Video, ID, time_start, time_end, Question, Candidates (a dict, or its JSON string; its
keys are the option letters), Answer (a letter), Task, Source, optional scene. Official protocol
(its openai_test.py, as VLMEvalKit): every k-th frame, at most 30; the prompt "Answer the
question below based on the frames provided, which are sampled at about {fps:.2f} FPS.\\n
Question: From {ts} seconds to {te} seconds. {Question}\\n{A v}\\n...\\nPlease output only the
option you choose!"; extraction: the first of ANSWER_PATTERNS (in order, case-insensitive,
multi-line) that matches gives the letter, else the stripped output; correct iff the last
character of that equals the answer. Variant "opensource" (its opensource_test.py): "From {ts}
s to {te} s. {Question}\\n({A}) v\\n...\\nPlease output only the option letter!". Results per
task and per scene (the scene column, else from the file name: camera -> outdoor, scene* ->
indoor, six digits -> desktop).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from r4d.errors import InputError
from r4d.eval.benchmarks.common import need, options_text, read_rows, strided_frames
from r4d.eval.core import Benchmark, EvalItem, Request, ScoringOptions
from r4d.io.r4d_bench import refuse_duplicate_ids

ANSWER_PATTERNS = [
    r"\(([A-E])\)",
    r"Ans\s*=\s*['\"]?([A-E])['\"]?",
    r"Answer\s*[:=]\s*([A-E])",
    r"Option\s+([A-E])",
    r"\b([A-E])\s*(?:is|was)\s*correct",
    r"\b([A-E])[\.\)]\s*$",
]


def sti_extract(text: str) -> str:
    for pattern in ANSWER_PATTERNS:
        match = re.search(pattern, text, re.IGNORECASE | re.MULTILINE)
        if match:
            return match.group(1).upper()
    return text.strip()


def scene_of(video: str) -> str:
    stem = Path(video).stem
    if "camera" in video:
        return "outdoor"
    if stem.startswith("scene"):
        return "indoor"
    if stem.isdigit() and len(stem) == 6:
        return "desktop"
    return "unknown"


class STIBench(Benchmark):
    name = "stibench"
    default_frames = 30

    def default_options(self) -> ScoringOptions:
        return ScoringOptions(frames=30, last_character=True, fallback="none")

    def load(self, root) -> list[EvalItem]:
        root = Path(root)
        path = root / "qa.parquet"
        out = []
        for i, row in enumerate(read_rows(path)):
            need(
                row,
                path,
                i,
                "Video",
                "ID",
                "time_start",
                "time_end",
                "Question",
                "Candidates",
                "Answer",
                "Task",
            )
            candidates = row["Candidates"]
            if isinstance(candidates, str):
                try:
                    candidates = json.loads(candidates)
                except json.JSONDecodeError:
                    candidates = {}
            where = f"{path} row {row['ID']}"
            if not isinstance(candidates, dict) or not candidates:
                raise InputError("no options", where=where, field="Candidates")
            letters = list(candidates)
            texts = options_text(list(candidates.values()), where, "Candidates", minimum=1)
            if row["Answer"] not in letters:
                raise InputError(f"{row['Answer']!r} is not an option", where=where, field="Answer")
            for name in ("time_start", "time_end"):
                value = row[name]
                if isinstance(value, float) and not math.isfinite(value):
                    raise InputError(
                        f"expected a finite time, got {value}", where=where, field=name
                    )
            video = next(
                (
                    p
                    for p in (
                        root / "video" / row["Video"],
                        root / "videos" / row["Video"],
                        root / row["Video"],
                    )
                    if p.is_file()
                ),
                None,
            )
            if video is None:
                raise InputError(
                    f"no video {row['Video']} under {root}", where=where, field="Video"
                )
            scene = row.get("scene") or row.get("Scene") or scene_of(str(row["Video"]))
            out.append(
                EvalItem(
                    str(row["ID"]),
                    self.name,
                    row["Task"],
                    row["Question"],
                    texts,
                    letters.index(row["Answer"]),
                    video=video,
                    split=scene,
                    extra={
                        "range": (row["time_start"], row["time_end"]),
                        "letters": letters,
                        "oracle_format": "{letter}",
                    },
                )
            )
        refuse_duplicate_ids((item.id for item in out), path, field="ID")
        return out

    def request(self, item: EvalItem, options: ScoringOptions, order=None) -> Request:
        frames, times, duration, sampled_fps = strided_frames(item.video, options.frames)
        ts, te = item.extra["range"]
        letters = item.extra["letters"]
        shown = [item.options[i] for i in order] if order else item.options
        if options.prompt == "opensource":
            cands = "\n".join(f"({k}) {v}" for k, v in zip(letters, shown, strict=True))
            prompt = (
                f"From {ts} s to {te} s. {item.question}\n{cands}\n"
                "Please output only the option letter!"
            )
        else:
            cands = "\n".join(f"{k} {v}" for k, v in zip(letters, shown, strict=True))
            question = f"From {ts} seconds to {te} seconds. {item.question}\n{cands}"
            prompt = (
                "Answer the question below based on the frames provided, which are sampled "
                f"at about {sampled_fps:.2f} FPS.\nQuestion: {question}\n"
                "Please output only the option you choose!"
            )
        return Request(item, prompt, [], frames, times, duration, sampled_fps, shown, None, order)

    def parse(self, text: str, request: Request, options: ScoringOptions):
        return sti_extract(text)

    def was_read(self, value, request: Request) -> bool:
        """Read when the character the last-character rule compares is an option letter."""
        return bool(value) and value[-1] in request.item.extra["letters"]
