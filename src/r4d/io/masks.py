"""Binary masks as COCO run-length encoding (pycocotools), the form they take in JSON files.

An RLE is `{"size": [H, W], "counts": ...}`: runs of 0s and 1s alternately, starting with 0s,
down the columns (Fortran order). `counts` is either COCO's compressed string (str or ASCII
bytes) or the plain list of run lengths. `check_rle` validates both forms before anything
reaches pycocotools, whose decoder trusts its input: an empty or short `counts` string decodes
to uninitialised memory, not an error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pycocotools import mask as coco_mask

from r4d.errors import InputError

MAX_MASK_SIDE = 16384  # pixels, each of H and W (8K video is 7680 x 4320)


def encode_mask(mask: np.ndarray) -> dict:
    """(H, W) bool -> {"size": [H, W], "counts": str} (COCO RLE, counts as ASCII)."""
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def run_lengths(counts: str) -> list[int]:
    """The run lengths in COCO's compressed counts string (pycocotools' rleFrString, checked).

    Each run is a little-endian base-32 number, 5 bits per character offset by 48 ("0"), bit 6
    marking that another character follows and, on the last, bit 5 its sign; from the fourth
    run on the number is the difference from the run two before. Raises ValueError naming what
    is wrong: a character outside "0".."o", a number cut off at the end, a negative run.
    """
    runs: list[int] = []
    value, shift, more = 0, 0, False
    for position, char in enumerate(counts):
        code = ord(char) - 48
        if not 0 <= code < 64:
            raise ValueError(f"character {char!r} at {position} is not in '0'..'o'")
        value |= (code & 0x1F) << shift
        shift += 5
        more = bool(code & 0x20)
        if more:
            continue
        if code & 0x10:
            value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise ValueError(f"run {len(runs)} is negative ({value})")
        runs.append(value)
        value, shift = 0, 0
    if more:
        raise ValueError("the last run is cut off")
    return runs


def check_rle(rle, where: str | Path | None = None, field: str | None = "mask") -> dict:
    """A COCO RLE validated -> the compressed form pycocotools reads ({"size", "counts": bytes}).

    Refused, naming `where` and `field` (the message names the part at fault, "size",
    "counts" or "counts[i]"): anything but an object with `size` = two positive integers (each
    at most MAX_MASK_SIDE) and `counts` = a compressed string or a list of non-negative
    integers, whose runs add up to exactly H * W.
    """

    def fail(message: str, part: str) -> InputError:
        return InputError(f"not a valid COCO RLE: {part}: {message}", where=where, field=field)

    if not isinstance(rle, dict):
        raise InputError(
            f"expected a COCO RLE {{size: [H, W], counts}}, got {type(rle).__name__}",
            where=where,
            field=field,
        )
    size, counts = rle.get("size"), rle.get("counts")
    if (
        not isinstance(size, list | tuple)
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in size)
        or not all(0 < s <= MAX_MASK_SIDE for s in size)
    ):
        raise fail(f"expected [H, W], two integers in 1..{MAX_MASK_SIDE}, got {size!r}", "size")
    height, width = (int(s) for s in size)
    if isinstance(counts, bytes):
        try:
            counts = counts.decode("ascii")
        except UnicodeDecodeError:
            raise fail("a compressed string that is not ASCII", "counts") from None
    if isinstance(counts, str):
        try:
            runs = run_lengths(counts)
        except ValueError as err:
            raise fail(f"a malformed compressed string: {err}", "counts") from None
    elif isinstance(counts, list | tuple):
        runs = list(counts)
        for i, run in enumerate(runs):
            if isinstance(run, bool) or not isinstance(run, int) or run < 0:
                raise fail(f"expected a non-negative integer, got {run!r}", f"counts[{i}]")
    else:
        raise fail(
            f"expected a compressed string or a list of run lengths, got {counts!r}", "counts"
        )
    if sum(runs) != height * width:
        raise fail(
            f"the runs cover {sum(runs)} pixels, the size [{height}, {width}] has {height * width}",
            "counts",
        )
    if isinstance(counts, str):
        return {"size": [height, width], "counts": counts.encode("ascii")}
    return coco_mask.frPyObjects({"size": [height, width], "counts": runs}, height, width)


def decode_mask(
    rle: dict, where: str | Path | None = None, field: str | None = "mask"
) -> np.ndarray:
    """COCO RLE (counts compressed, as str or bytes, or a list of runs) -> (H, W) bool; a
    malformed one is refused (`check_rle`) naming `where` and `field`."""
    return coco_mask.decode(check_rle(rle, where, field)).astype(bool)


def mask_box(rle: dict, where: str | Path | None = None, field: str | None = "mask") -> list[float]:
    """Bounding box [x, y, width, height] in pixels (COCO convention) of an RLE mask."""
    return [float(v) for v in coco_mask.toBbox(check_rle(rle, where, field))]
