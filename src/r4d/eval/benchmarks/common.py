"""Helpers the benchmark modules share: tables, images, frames, row errors."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from r4d.errors import InputError
from r4d.io.video import probe, read_frames, sample_uniform


def read_rows(path: Path) -> list[dict]:
    """A parquet table or a JSON list as a list of dicts."""
    if not path.is_file():
        raise InputError("missing", where=path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as err:  # pyarrow raises several types for unreadable files
            raise InputError(f"unreadable parquet ({err})", where=path) from None
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON ({err})", where=path) from None
    if not isinstance(rows, list):
        raise InputError("expected a list of items", where=path)
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InputError(
                f"expected an object, got {type(row).__name__}", where=f"{path} row #{index}"
            )
    return rows


def need(row: dict, path: Path, index: int, *names: str) -> None:
    """Raise naming the file, the row (its id) and the first missing field."""
    row_id = row.get("id", row.get("ID", f"#{index}"))
    for name in names:
        if name not in row or row[name] is None:
            raise InputError("missing", where=f"{path} row {row_id}", field=name)


def image(data, where: str | None = None, field: str | None = None) -> np.ndarray:
    """RGB uint8 from a path, raw bytes, or a {"bytes": ...} record; an unreadable one is
    refused naming `where` (the item) and `field`, or the path."""
    if isinstance(data, dict):
        data = data.get("bytes")
    embedded = isinstance(data, bytes | bytearray)
    source = io.BytesIO(data) if embedded else data
    try:
        return np.asarray(Image.open(source).convert("RGB"))
    except (OSError, Image.DecompressionBombError) as err:
        what = "embedded image" if embedded else "image"
        reason = str(err).split(" <_io.")[0] if embedded else str(err)
        raise InputError(
            f"unreadable {what} ({reason})",
            where=where or (None if embedded else data),
            field=field,
        ) from None


def uniform_frames(path: Path, n: int):
    frames, times, _ = sample_uniform(path, n)
    info = probe(path)
    return frames, times, info.duration, info.fps


def strided_frames(path: Path, max_frames: int):
    """Every k-th frame, k = max(1, frames // max_frames), at most max_frames (STI-Bench)."""
    info = probe(path)
    step = max(1, info.num_frames // max_frames)
    indices = np.arange(0, info.num_frames, step)[:max_frames]
    return read_frames(path, indices), indices / info.fps, info.duration, info.fps / step


def options_text(value, where: str, field: str, minimum: int = 2) -> list[str]:
    """A row's options (a list) as text; refused naming `where` and the field: not a list, fewer
    than `minimum`, or an option that is null or a NaN / infinite number."""
    if not isinstance(value, list | tuple) or len(value) < minimum:
        raise InputError(
            f"expected a list of at least {minimum} options, got {value!r}",
            where=where,
            field=field,
        )
    for i, option in enumerate(value):
        if option is None or (isinstance(option, float) and not math.isfinite(option)):
            raise InputError(
                f"expected an option, got {option!r}", where=where, field=f"{field}[{i}]"
            )
    return [str(o) for o in value]


def mra_truth(value, where: str, field: str, signed: bool = False) -> float:
    """A ground truth that MRA divides by (a number, or a number written as text): refused,
    naming `where` and the field, when it is 0, NaN or infinite, and when negative unless
    `signed` (a signed quantity such as a change of distance)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"expected a number, got {value!r}", where=where, field=field) from None
    wanted = "a finite non-zero number" if signed else "a finite number > 0"
    if (
        isinstance(value, bool)
        or not math.isfinite(number)
        or number == 0
        or (number < 0 and not signed)
    ):
        raise InputError(
            f"expected {wanted} (MRA divides by it), got {value!r}", where=where, field=field
        )
    return number
