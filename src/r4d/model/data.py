"""Benchmark items (R4D-Bench format) as student samples: frames, SoM image, regions, answer.

Frames are the `num_frames` uniformly sampled frames of the item's video with their timestamps
(`r4d.io.video.sample_uniform`, the same sampling the world's signals use; the sample records
their indices, so a teacher cache's signals can be checked to be of the same frames); the last
`CLIPS_KEPT` decoded clips are kept per process, so a video many questions share is read once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from r4d.io.masks import decode_mask
from r4d.io.r4d_bench import BenchItem
from r4d.io.video import probe, sample_uniform
from r4d.model.answer import option_text
from r4d.model.processor import Sample, StudentProcessor

CLIPS_KEPT = 256


@dataclass(frozen=True)
class SampledVideo:
    frames: np.ndarray  # (n, H, W, 3) uint8
    times: np.ndarray  # (n,) seconds
    indices: np.ndarray  # (n,) frame indices in the video
    duration: float  # seconds
    fps: float


@lru_cache(maxsize=CLIPS_KEPT)
def sampled_video(path: str, num_frames: int) -> SampledVideo:
    """`num_frames` uniformly sampled frames of a video, with what the prompt and TPE need."""
    frames, times, indices = sample_uniform(path, num_frames)
    info = probe(path)
    return SampledVideo(frames, times, indices, info.duration, info.fps)


def item_sample(
    item: BenchItem,
    root: str | Path,
    processor: StudentProcessor,
    num_frames: int = 16,
    with_answer: bool = False,
) -> Sample:
    """The processor's inputs for one item; with_answer adds "(B) <answer>" as the target."""
    root = Path(root)
    video = sampled_video(str(root / item.video), num_frames)
    som = None
    if item.som_image:
        som = np.asarray(Image.open(root / item.som_image).convert("RGB"))
    regions = {
        r["token"]: decode_mask(r["mask"]) for r in item.extra.get("regions", []) if r.get("mask")
    }
    answer = option_text(item.answer_index, item.answer) if with_answer else None
    sample = processor.build(
        item.question,
        video.frames,
        video.times,
        item.options,
        som,
        regions or None,
        video.duration,
        video.fps,
        answer,
    )
    sample.frame_indices = [int(i) for i in video.indices]
    return sample
