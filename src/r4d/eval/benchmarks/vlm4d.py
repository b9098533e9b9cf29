"""VLM4D real (ShijieZhou-UCLA/VLM4D): `real_mc.json` + videos, ego and exo.

Rows: id, video (a URL ending in videos_real/<source>/<name>.mp4, found under the data root),
question_type, question, choices {A..D}, answer (the option's text). Prompt: the repo's
direct-answer template ("\\nQuestion: ...\\nA: ...\\n...\\n\\nDo not generate any intermediate
reasoning process. Answer directly with the option letter from the given choices.\\n"), 10
frames. The official scorer is an LLM judge (o4-mini); offline, r4d scores with rules (the
recorded `prompt` option stays "official" but `fallback` says what happens to unparsed
answers): "(X)", then a standalone X among A-D, then an answer that is exactly one option's
text. Split: id number <= 922 is exo (DAVIS, YouTube-VOS), above is ego (Ego4D).
"""

from __future__ import annotations

import re
from pathlib import Path

from r4d.errors import InputError
from r4d.eval.benchmarks.common import need, read_rows, uniform_frames
from r4d.eval.benchmarks.r4d import fallback
from r4d.eval.core import LETTERS, Benchmark, EvalItem, Request, ScoringOptions

PROMPT = (
    "\nQuestion: {question}\n{options}\n\nDo not generate any intermediate reasoning "
    "process. Answer directly with the option letter from the given choices.\n"
)


def vlm4d_extract(text: str, options: list[str]) -> str | None:
    valid = LETTERS[: len(options)]
    for pattern in (rf"\(([{valid}])\)", rf"\b([{valid}])\b"):
        match = re.search(pattern, text or "")
        if match:
            return match.group(1)
    said = (text or "").strip().strip(".").lower()
    hits = [i for i, o in enumerate(options) if o.strip().lower() == said]
    return LETTERS[hits[0]] if len(hits) == 1 else None


class VLM4D(Benchmark):
    name = "vlm4d"
    default_frames = 10

    def default_options(self) -> ScoringOptions:
        return ScoringOptions(frames=10, fallback="none")

    def load(self, root) -> list[EvalItem]:
        root = Path(root)
        path = next(
            (p for p in (root / "real_mc.json", root / "data" / "real_mc.json") if p.is_file()),
            root / "real_mc.json",
        )
        out = []
        for i, row in enumerate(read_rows(path)):
            need(row, path, i, "id", "video", "question", "choices", "answer")
            where = f"{path} row {row['id']}"
            choices = row["choices"]
            texts = [str(choices[k]) for k in sorted(choices)]
            if str(row["answer"]) not in texts:
                raise InputError(
                    "the answer is not one of the choices", where=where, field="answer"
                )
            tail = str(row["video"]).split("videos_real/")[-1]
            video = root / "videos_real" / tail
            if not video.is_file():
                raise InputError(f"no video {video}", where=where, field="video")
            number = int(str(row["id"]).split("_")[-1])
            out.append(
                EvalItem(
                    str(row["id"]),
                    self.name,
                    str(row.get("question_type", "mc")),
                    row["question"],
                    texts,
                    texts.index(str(row["answer"])),
                    video=video,
                    split="exo" if number <= 922 else "ego",
                    extra={"oracle_format": "{letter}"},
                )
            )
        return out

    def request(self, item: EvalItem, options: ScoringOptions, order=None) -> Request:
        frames, times, duration, fps = uniform_frames(item.video, options.frames)
        shown = [item.options[i] for i in order] if order else item.options
        listing = "\n".join(f"{LETTERS[i]}: {o}" for i, o in enumerate(shown))
        prompt = PROMPT.format(question=item.question, options=listing)
        return Request(item, prompt, [], frames, times, duration, fps, shown, None, order)

    def extract(self, text: str, request: Request, options: ScoringOptions):
        letter = vlm4d_extract(text, request.options)
        return fallback(letter, request.item.id, len(request.options), options)
