"""VLM4D real (ShijieZhou-UCLA/VLM4D): `real_mc.json` + videos, ego and exo.

Rows: id, video (a URL ending in videos_real/<source>/<name>.mp4, found under the data root),
question_type, question, choices {A..D}, answer (the option's text). Prompt: the repo's
direct-answer template ("\\nQuestion: ...\\nA: ...\\n...\\n\\nDo not generate any intermediate
reasoning process. Answer directly with the option letter from the given choices.\\n"), 10
frames. Split: id number <= 922 is exo (DAVIS, YouTube-VOS), above is ego (Ego4D).

Scoring follows the 4D-RGPT release's lmms-eval `vlm4d` task (`vlm4d_extract`): a leading
bare letter, else "answer (is) (:|-) X" (case-insensitive), else the first standalone letter;
nothing read: wrong. r4d's former extras stay available by name (`EXTRAS`), off by default.
VLM4D's own authors score with an LLM judge (o4-mini): `ScoringOptions.judge` =
"openai:<model>@<base url>" has such a model read each output instead (`OpenAIJudge`); the
judge is recorded in the summary's protocol block.
"""

from __future__ import annotations

import re
from pathlib import Path

from r4d.errors import InputError
from r4d.eval.benchmarks.common import need, options_text, read_rows, uniform_frames
from r4d.eval.core import LETTERS, Benchmark, EvalItem, Request, ScoringOptions
from r4d.io.r4d_bench import refuse_duplicate_ids

PROMPT = (
    "\nQuestion: {question}\n{options}\n\nDo not generate any intermediate reasoning "
    "process. Answer directly with the option letter from the given choices.\n"
)
EXTRAS = {
    "paren-letter": 'a letter in parentheses ("the correct one is (B)") before the first '
    "standalone letter",
    "option-text": "an output that is exactly one option's text (ignoring case and a final "
    '".") names that option when no letter was found',
}


def vlm4d_extract(text: str, n_options: int, extras=()) -> str | None:
    """The letter the vlm4d task reads (None: none), rules in order, letters among the first
    n_options:

    1. a leading bare letter: the output (stripped) starts with the letter, followed by at most
       one of ". ) :" and then its end or a line break ("B", "B.", "C)\\n...");
    2. the first `answer\\s*(?:is)?\\s*[:\\-]?\\s*([A-D])\\b`, ignoring case ("answer: b" -> B);
    3. the first standalone capital letter (`\\b[A-D]\\b`).

    `extras` may add "paren-letter" between 2 and 3 (see EXTRAS); "option-text" needs the
    options and is applied by VLM4D.parse.
    """
    said = (text or "").strip()
    valid = LETTERS[:n_options]
    bare = re.match(rf"([{valid}])[.):]?(?:$|\n)", said)
    if bare:
        return bare.group(1)
    stated = re.search(rf"answer\s*(?:is)?\s*[:\-]?\s*([{valid}])\b", said, re.IGNORECASE)
    if stated:
        return stated.group(1).upper()
    if "paren-letter" in extras:
        bracketed = re.search(rf"\(([{valid}])\)", said)
        if bracketed:
            return bracketed.group(1)
    standalone = re.search(rf"\b([{valid}])\b", said)
    return standalone.group(1) if standalone else None


def option_named(text: str, options: list[str]) -> str | None:
    """The letter of the one option the whole output spells (ignoring case and a final ".")."""
    said = (text or "").strip().rstrip(".").strip().lower()
    hits = [i for i, o in enumerate(options) if o.strip().lower() == said]
    return LETTERS[hits[0]] if len(hits) == 1 else None


class VLM4D(Benchmark):
    name = "vlm4d"
    default_frames = 10
    EXTRAS = EXTRAS
    judged = True

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
            if not isinstance(choices, dict):
                raise InputError(
                    f"expected an object of lettered choices, got {choices!r}",
                    where=where,
                    field="choices",
                )
            texts = options_text([choices[k] for k in sorted(choices)], where, "choices")
            if str(row["answer"]) not in texts:
                raise InputError(
                    "the answer is not one of the choices", where=where, field="answer"
                )
            tail = str(row["video"]).split("videos_real/")[-1]
            video = root / "videos_real" / tail
            if not video.is_file():
                raise InputError(f"no video {video}", where=where, field="video")
            number = str(row["id"]).split("_")[-1]
            if not number.isdigit():
                raise InputError(
                    f"expected an id ending in _<number>, got {row['id']!r}",
                    where=where,
                    field="id",
                )
            number = int(number)
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
        refuse_duplicate_ids((item.id for item in out), path)
        return out

    def request(self, item: EvalItem, options: ScoringOptions, order=None) -> Request:
        frames, times, duration, fps = uniform_frames(item.video, options.frames)
        shown = [item.options[i] for i in order] if order else item.options
        listing = "\n".join(f"{LETTERS[i]}: {o}" for i, o in enumerate(shown))
        prompt = PROMPT.format(question=item.question, options=listing)
        return Request(item, prompt, [], frames, times, duration, fps, shown, None, order)

    def parse(self, text: str, request: Request, options: ScoringOptions):
        letter = vlm4d_extract(text, len(request.options), options.extras)
        if letter is None and "option-text" in options.extras:
            letter = option_named(text, request.options)
        return letter
