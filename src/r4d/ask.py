"""One question about one video, put to a student: what `r4d ask` prints and `make demo` records.

Regions are boxes in video pixels (x0, y0, x1, y1), made into masks of the sampled frames'
size (or masks of that size); a box outside the frame, a mask of another size or a region the
question names but no box or mask gives is refused before the model loads. With
options the student ranks them by option scoring (`r4d.model.answer`), without
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
Region = Box | np.ndarray  # a box in video pixels, or a (H, W) boolean mask of the frames


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


def box_masks(
    regions: dict[str, Region], height: int, width: int, where: str | Path | None = None
) -> dict[str, np.ndarray]:
    """Each region as a (height, width) mask: a box (x0, y0, x1, y1 in pixels, inside the
    frame) covers the pixels it touches, partly covered ones included; a boolean mask is taken
    as it is and must be of the frame's size. `where` (the video) is named when one does not
    fit."""
    masks = {}
    for token, region in regions.items():
        if not REGION_TOKEN.fullmatch(token):
            raise InputError(f"region names are <obj_N>, got {token!r}", field="region")
        if isinstance(region, np.ndarray):
            if region.shape != (height, width):
                raise InputError(
                    f"{token}'s mask is {region.shape}, the video's frames are ({height}, {width})",
                    where=where,
                    field="region",
                )
            mask = region.astype(bool)
        else:
            mask = _box_mask(token, region, height, width, where)
        if not mask.any():
            raise InputError(f"{token}'s region covers no pixel", where=where, field="region")
        masks[token] = mask
    return masks


def _box_mask(token: str, box, height: int, width: int, where) -> np.ndarray:
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise InputError(
            f"{token}'s region: want a box (x0, y0, x1, y1) or a mask, got {box!r}", field="region"
        ) from None
    if not all(np.isfinite([x0, y0, x1, y1])) or x1 <= x0 or y1 <= y0:
        raise InputError(
            f"{token}'s box {x0, y0, x1, y1}: want finite x0 < x1 and y0 < y1", field="region"
        )
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise InputError(
            f"{token}'s box {x0, y0, x1, y1} is outside the video's {width}x{height} frame "
            f"(x in [0, {width}], y in [0, {height}])",
            where=where,
            field="region",
        )
    mask = np.zeros((height, width), bool)
    mask[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = True
    return mask


def check_named(question: str, regions: dict, som: str | Path | None) -> None:
    """Every <obj_N> the question names has a region, unless a Set-of-Marks image alone marks
    them (regions the question does not name are allowed: a benchmark item may list more)."""
    named = list(dict.fromkeys(m.group(0) for m in REGION_TOKEN.finditer(question)))
    missing = [t for t in named if t not in regions]
    if missing and (regions or som is None):
        given = ", ".join(regions) or "none"
        raise InputError(
            f"the question names {missing[0]} but {len(regions)} region(s) were given ({given})",
            field="region",
        )


def read_som(path: str | Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, Image.DecompressionBombError) as err:  # UnidentifiedImageError included
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise InputError(f"not a readable image ({reason})", where=path) from None


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
    `regions` maps `<obj_N>` to a box in video pixels or a (H, W) mask of the video's frames;
    `som` is a Set-of-Marks image shown before the video. The video, regions and image are
    checked before the model is loaded."""
    options = list(options or [])
    regions = regions or {}
    check_named(question, regions, som)
    info = probe(video)
    masks = box_masks(regions, info.height, info.width, video)
    picture = read_som(som) if som else None
    student, tokenizer = load_student(model)
    processor = StudentProcessor(tokenizer, student.config)
    clip, times, _ = sample_uniform(video, frames)
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
