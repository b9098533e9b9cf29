"""Helpers the benchmark modules share: tables, images, frames, row errors."""

from __future__ import annotations

import io
import json
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
    return rows


def need(row: dict, path: Path, index: int, *names: str) -> None:
    """Raise naming the file, the row (its id) and the first missing field."""
    row_id = row.get("id", row.get("ID", f"#{index}"))
    for name in names:
        if name not in row or row[name] is None:
            raise InputError("missing", where=f"{path} row {row_id}", field=name)


def image(data) -> np.ndarray:
    """RGB uint8 from a path, raw bytes, or a {"bytes": ...} record."""
    if isinstance(data, dict):
        data = data.get("bytes")
    source = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    return np.asarray(Image.open(source).convert("RGB"))


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
