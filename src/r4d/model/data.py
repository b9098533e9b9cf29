"""Benchmark items (R4D-Bench format) as student samples: frames, SoM image, regions, answer.

Frames are the `num_frames` uniformly sampled frames of the item's video with their timestamps
(`r4d.io.video.sample_uniform`, the same sampling the world's signals use); decoded videos are
cached per path, so a video many questions share is read once.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from r4d.io.masks import decode_mask
from r4d.io.r4d_bench import BenchItem
from r4d.io.video import probe, sample_uniform
from r4d.model.answer import option_text
from r4d.model.processor import Sample, StudentProcessor


@lru_cache(maxsize=4096)
def _video(path: str, num_frames: int):
    frames, times, _ = sample_uniform(path, num_frames)
    info = probe(path)
    return frames, times, info.duration, info.fps


def item_sample(
    item: BenchItem,
    root: str | Path,
    processor: StudentProcessor,
    num_frames: int = 16,
    with_answer: bool = False,
) -> Sample:
    """The processor's inputs for one item; with_answer adds "(B) <answer>" as the target."""
    root = Path(root)
    frames, times, duration, fps = _video(str(root / item.video), num_frames)
    som = None
    if item.som_image:
        som = np.asarray(Image.open(root / item.som_image).convert("RGB"))
    regions = {
        r["token"]: decode_mask(r["mask"]) for r in item.extra.get("regions", []) if r.get("mask")
    }
    answer = option_text(item.answer_index, item.answer) if with_answer else None
    return processor.build(
        item.question, frames, times, item.options, som, regions or None, duration, fps, answer
    )
