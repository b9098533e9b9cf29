"""Benchmark items (R4D-Bench format) as student samples: frames, SoM image, regions, answer.

Frames are the `num_frames` uniformly sampled frames of the item's video with their timestamps
(`r4d.io.video.sample_uniform`, the same sampling the world's signals use; the sample records
their indices, so a teacher cache's signals can be checked to be of the same frames); the last
`CLIPS_KEPT` decoded clips are kept per process, so a video many questions share is read once.
With a feature cache (`r4d.model.features`), an item's visuals are E_v's cached features and
its video is not decoded.
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
from r4d.model.features import FeatureCache, Visual, som_visual, video_visual
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


def item_visuals(item: BenchItem, root: str | Path, num_frames: int = 16) -> list[Visual]:
    """An item's visuals in prompt order (its SoM image, then its video's frames), as feature
    cache entries."""
    som = [som_visual(root, item.som_image)] if item.som_image else []
    return [*som, video_visual(root, item.video, num_frames)]


def item_sample(
    item: BenchItem,
    root: str | Path,
    processor: StudentProcessor,
    num_frames: int = 16,
    with_answer: bool = False,
    features: FeatureCache | None = None,
) -> Sample:
    """The processor's inputs for one item; with_answer adds "(B) <answer>" as the target.
    With `features`, E_v's features of its visuals come from that cache (nothing decoded)."""
    root = Path(root)
    regions = {
        r["token"]: decode_mask(r["mask"]) for r in item.extra.get("regions", []) if r.get("mask")
    }
    answer = option_text(item.answer_index, item.answer) if with_answer else None
    if features is not None:
        visuals = item_visuals(item, root, num_frames)
        clip = features.clip(visuals[-1])
        sample = processor.build_from_features(
            item.question,
            features.features(visuals),
            clip.times,
            item.options,
            bool(item.som_image),
            regions or None,
            clip.duration,
            clip.fps,
            answer,
        )
        sample.frame_indices = list(clip.indices)
        return sample
    video = sampled_video(str(root / item.video), num_frames)
    som = None
    if item.som_image:
        som = np.asarray(Image.open(root / item.som_image).convert("RGB"))
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
