"""The student's feature cache: E_v's outputs per clip and per SoM image, for a frozen E_v.

When a training policy freezes E_v (Tab. 7's Tune-P+LLM and the others but Tune-V / Tune-All)
and the student has no fusion layer, E_v's `feature_layer` hidden state (what E_p reads: before
TPE, before any fusion) is the same every time a visual is shown, so it is computed once here
and the student reads it (`R4DStudent.projector_inputs(..., features=...)`) instead of running
E_v on pixels. A `Visual` is a cache entry's source, keyed by its path relative to the data root:
- a video's `frames` uniformly sampled frames (`r4d.io.video.sample_uniform`), key
  "<video>@<frames>";
- a still image shown as the one frame of its "video" (time 0), key "<image>@1";
- a SoM image, key "<image>" (its tiles, `StudentProcessor.som_pixels`; the entry records
  how many).
The store (`r4d.io.shards`: checksummed float16 safetensors shards and one index per rank,
resumable) holds per entry `features` (n_images, P, C), P = E_v's patches, C its width. Its
header records E_v's identity (`vision_identity`: sha256 of the vision config and of E_v's
parameters, and the feature layer) and how pixels were made (image size, mean, std, burnt-in
time marks; the resize filter and the SoM image's tiling, absent from caches made before r4d
had them, which were all bilinear single tiles); per clip, its frame indices, timestamps,
duration and fps (what the prompt and TPE need, so a cached example needs no video decode). A
cache of another E_v, or of a clip sampled at other frames than this run's, is refused naming
the clip.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from r4d.errors import InputError
from r4d.io.atomic import exclusive_lock, remove_temporaries
from r4d.io.shards import ShardReader, ShardWriter, sha256_parameters
from r4d.io.video import probe, sample_uniform, uniform_indices
from r4d.model.modeling import R4DStudent
from r4d.model.processor import StudentProcessor

SCHEMA = "r4d.model.features/1"
FIELD = "features"


@dataclass(frozen=True)
class Visual:
    """The source of one cache entry: a video's `frames` sampled frames, a still image shown
    as a frame (`still`), or a SoM image (`frames` 0)."""

    key: str  # see the module's docstring
    path: Path  # the file
    frames: int = 0
    still: bool = False

    @property
    def images(self) -> int:
        return max(self.frames, 1)

    @property
    def is_video(self) -> bool:
        return self.frames > 0 and not self.still


def video_visual(root: str | Path, video: str, frames: int) -> Visual:
    return Visual(f"{video}@{frames}", Path(root) / video, frames)


def still_visual(root: str | Path, image: str) -> Visual:
    return Visual(f"{image}@1", Path(root) / image, 1, still=True)


def som_visual(root: str | Path, image: str) -> Visual:
    return Visual(image, Path(root) / image)


@dataclass(frozen=True)
class CachedClip:
    """What a cached video clip's prompt and TPE need (as `r4d.model.data.SampledVideo`)."""

    indices: list[int]
    times: list[float]
    duration: float
    fps: float


def vision_identity(student: R4DStudent) -> dict[str, str | int]:
    """What makes E_v's features: its config and parameters (sha256), and the layer read."""
    config = json.dumps(student.config.vision, sort_keys=True).encode()
    return {
        "config": hashlib.sha256(config).hexdigest(),
        "encoder": sha256_parameters(student.vision),
        "feature_layer": student.config.feature_layer,
    }


def cache_header(student: R4DStudent) -> dict:
    """A cache's header: E_v's identity, how pixels are made, and every entry's (P, C)."""
    config = student.config
    return {
        "vision": vision_identity(student),
        "image_size": config.image_size,
        "pixels": {
            "mean": list(config.image_mean),
            "std": list(config.image_std),
            "marks": "marks" in config.time_cues,
        },
        "shape": [config.patch_side**2, int(student.vision.config.hidden_size)],
        "resize": {
            "resample": config.resample,
            "som": config.image_aspect_ratio,
            "tiles": [config.min_tiles, config.max_tiles],
        },
    }


class FeatureCache:
    """Reads E_v's features of visuals from a cache without loading it whole.

    `header`: what this run's student expects (`cache_header`); a cache made otherwise is
    refused at the first entry read, naming it."""

    def __init__(self, root: str | Path, header: dict | None = None):
        self.root = Path(root)
        self.store = ShardReader(self.root, SCHEMA)
        self.expected = header

    def __len__(self) -> int:
        return len(self.store)

    def __contains__(self, key: str) -> bool:
        return key in self.store

    def _check(self, key: str) -> None:
        if key not in self.store:
            raise InputError(f"{key!r} is not in the feature cache", where=self.root)
        if self.expected is None:
            return
        for name, value in self.store.header.items():
            if self.expected.get(name) != value:
                raise InputError(
                    f"{key!r}: the cached features were made with {name} {value}, this "
                    f"student has {self.expected.get(name)}; rebuild the cache",
                    where=self.root,
                    field=name,
                )

    def get(self, visual: Visual) -> torch.Tensor:
        """(n_images, P, C) float16 features of one visual, shape checked."""
        self._check(visual.key)
        images = self.store.entries[visual.key].get("tiles", visual.images)
        shape = [images, *self.store.header["shape"]]
        return self.store.get(visual.key, {FIELD: shape})[FIELD]

    def clip(self, visual: Visual) -> CachedClip:
        """The frames a cached video's features are of, with their times."""
        self._check(visual.key)
        meta = self.store.entries[visual.key]
        return CachedClip(meta["frames"], meta["times"], meta["duration"], meta["fps"])

    def features(self, visuals: list[Visual]) -> torch.Tensor:
        """The features of a sample's visuals, in order: (sum of their images, P, C)."""
        return torch.cat([self.get(v) for v in visuals])


def _rgb(path: Path) -> np.ndarray:
    try:
        return np.asarray(Image.open(path).convert("RGB"))
    except OSError as err:
        raise InputError(f"cannot read the image ({err})", where=path) from None


class _VisualPixels(Dataset):
    """A visual's pixels as the processor makes them, with its entry's metadata."""

    def __init__(self, visuals: list[Visual], processor: StudentProcessor):
        self.visuals, self.processor = visuals, processor

    def __len__(self) -> int:
        return len(self.visuals)

    def __getitem__(self, i: int) -> tuple[Visual, torch.Tensor, dict]:
        visual, processor = self.visuals[i], self.processor
        if visual.is_video:
            frames, times, indices = sample_uniform(visual.path, visual.frames)
            info = probe(visual.path)
            meta = {
                "frames": [int(k) for k in indices],
                "times": [float(t) for t in times],
                "duration": info.duration,
                "fps": info.fps,
            }
            return visual, processor.frame_pixels(frames, times), meta
        image = _rgb(visual.path)
        if visual.still:
            return visual, processor.frame_pixels(image[None], [0.0]), {}
        tiles = processor.som_pixels(image)
        return visual, tiles, {"tiles": len(tiles)}


def _one(items: list):
    return items[0]


def unique_visuals(visuals) -> list[Visual]:
    """Each key once, in key order; two files under one key (two data roots) are refused."""
    out: dict[str, Visual] = {}
    for v in visuals:
        if v.key in out and out[v.key] != v:
            raise InputError(
                f"{v.key!r} names two files, {out[v.key].path} and {v.path}: give the data "
                "sources distinct relative paths",
                field="data",
            )
        out[v.key] = v
    return [out[k] for k in sorted(out)]


def check_frames(visual: Visual, meta: dict) -> None:
    """Refuse a cached clip whose features are of other frames than this run samples."""
    mine = [int(i) for i in uniform_indices(probe(visual.path).num_frames, visual.frames)]
    if meta.get("frames") != mine:
        raise InputError(
            f"clip {visual.key!r}: the run samples frames {mine} but the cached features are "
            f"of frames {meta.get('frames')}",
            where=visual.path,
            field="frames",
        )


@torch.no_grad()
def build_features(
    student: R4DStudent,
    processor: StudentProcessor,
    visuals,
    out: str | Path,
    rank: int = 0,
    world_size: int = 1,
    batch_images: int = 64,
    workers: int = 0,
    shard_entries: int = 64,
    progress: bool = True,
) -> dict:
    """Cache E_v's features of this rank's share (rank::world_size, by key) of `visuals`, on
    the device E_v is on; entries already cached are checked (E_v, frames) and kept.

    Visuals are read and turned into pixels in `workers` DataLoader processes; E_v runs in
    eval mode, without autocast, on up to `batch_images` images at a time. Returns the cache's
    header (`cache_header`), for `FeatureCache` to check once every rank is done. One writer
    per rank holds the folder's `.lock-r<rank>`; a killed build's temporaries are removed."""
    with exclusive_lock(out, f"feature cache build of rank {rank}", f".lock-r{rank}"):
        for names in (f"shard-r{rank}-*", f"index-r{rank}.json"):
            remove_temporaries(out, names)
        mine = unique_visuals(visuals)[rank::world_size]
        header = cache_header(student)
        writer = ShardWriter(out, SCHEMA, header, rank, shard_entries, world_size)
        done = writer.done()
        for visual in mine:
            if visual.key in done and visual.is_video:
                check_frames(visual, done[visual.key])
        todo = [v for v in mine if v.key not in done]
        loader = DataLoader(
            _VisualPixels(todo, processor),
            batch_size=1,
            collate_fn=_one,
            num_workers=workers if todo else 0,
            generator=torch.Generator().manual_seed(0),  # leaves the global generator untouched
        )
        vision, device = student.vision, next(student.vision.parameters()).device
        was_training = vision.training
        vision.eval()
        waiting: list[tuple[Visual, torch.Tensor, dict]] = []

        def run() -> None:
            pixels = torch.cat([p for _, p, _ in waiting]).to(device, torch.float32)
            with torch.autocast(device.type, enabled=False):
                features = torch.cat(
                    [
                        student.vision_features(pixels[a : a + batch_images].to(vision.dtype))
                        for a in range(0, len(pixels), batch_images)
                    ]
                )
            if not torch.isfinite(features.half()).all():
                raise InputError(
                    f"E_v's features of {waiting[0][0].key!r} .. {waiting[-1][0].key!r} overflow "
                    "float16: this E_v cannot be cached",
                    where=out,
                )
            start = 0
            for visual, p, meta in waiting:
                writer.add(visual.key, {FIELD: features[start : start + len(p)]}, meta)
                start += len(p)
            waiting.clear()

        try:
            bar = tqdm(loader, desc=f"E_v features r{rank}", disable=not progress)
            for item in bar:
                waiting.append(item)
                if sum(len(p) for _, p, _ in waiting) >= batch_images:
                    run()
            if waiting:
                run()
            writer.flush()
        finally:
            vision.train(was_training)
        return header
