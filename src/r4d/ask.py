"""One question about one video, put to a student: what `r4d ask` prints and `make demo` records.

Regions are boxes in video pixels (x0, y0, x1, y1), made into masks of the sampled frames'
size; with options the student ranks them by option scoring (`r4d.model.answer`), without
(or when asked) it also generates its answer greedily.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from r4d.errors import InputError
from r4d.io.r4d_bench import REGION_TOKEN
from r4d.io.video import probe, sample_uniform
from r4d.model.answer import generate, letter_of, option_text, score_options
from r4d.model.processor import StudentProcessor
from r4d.train.run import load_student

Box = tuple[float, float, float, float]


@dataclass
class Answer:
    """`choice`: the index of the best-scored option (None without options), `option` its
    "(B) text", `scores` every option's length-normalised log-likelihood; `text`: the generated
    answer (None unless asked or without options) and `names` the option it names."""

    question: str
    options: list[str]
    choice: int | None = None
    option: str | None = None
    scores: list[float] | None = None
    text: str | None = None
    names: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def parse_region(text: str) -> tuple[str, Box]:
    """ "obj_N=x0,y0,x1,y1" (pixels) -> ("<obj_N>", box)."""
    name, _, box = text.partition("=")
    try:
        x0, y0, x1, y1 = (float(v) for v in box.split(","))
    except ValueError:
        raise InputError(f"want obj_N=x0,y0,x1,y1 (pixels), got {text!r}", field="region") from None
    token = f"<{name}>"
    if not REGION_TOKEN.fullmatch(token) or x1 <= x0 or y1 <= y0:
        raise InputError(f"want obj_N=x0,y0,x1,y1 with x0<x1, y0<y1: {text!r}", field="region")
    return token, (x0, y0, x1, y1)


def box_masks(boxes: dict[str, Box], height: int, width: int) -> dict[str, np.ndarray]:
    """Each box as a (height, width) mask: the pixels it covers, partly covered ones included."""
    masks = {}
    for token, (x0, y0, x1, y1) in boxes.items():
        if not REGION_TOKEN.fullmatch(token):
            raise InputError(f"region names are <obj_N>, got {token!r}", field="region")
        mask = np.zeros((height, width), bool)
        mask[max(int(y0), 0) : int(np.ceil(y1)), max(int(x0), 0) : int(np.ceil(x1))] = True
        if not mask.any():
            raise InputError(f"{token}'s box {x0, y0, x1, y1} is outside the video", field="region")
        masks[token] = mask
    return masks


def ask(
    question: str,
    model: str | Path,
    video: str | Path,
    som: str | Path | None = None,
    regions: dict[str, Box] | None = None,
    options: list[str] | None = None,
    frames: int = 16,
    generate_text: bool = False,
) -> Answer:
    """Answer `question` about `video` with the student folder `model` (r4d or NVILA-Lite).
    `regions` maps `<obj_N>` to a box in video pixels; `som` is a Set-of-Marks image shown
    before the video."""
    options = list(options or [])
    student, tokenizer = load_student(model)
    processor = StudentProcessor(tokenizer, student.config)
    clip, times, _ = sample_uniform(video, frames)
    info = probe(video)
    masks = box_masks(regions or {}, *clip.shape[1:3])
    picture = np.asarray(Image.open(som).convert("RGB")) if som else None
    sample = processor.build(
        question, clip, times, options or None, picture, masks or None, info.duration, info.fps
    )
    answer = Answer(question, options)
    if options:
        scores = score_options(student, processor, [sample], [options])[0]
        answer.choice = int(scores.argmax())
        answer.option = option_text(answer.choice, options[answer.choice])
        answer.scores = [float(s) for s in scores]
    if generate_text or not options:
        answer.text = generate(student, processor, [sample])[0]
        answer.names = letter_of(answer.text, len(options)) if options else None
    return answer
