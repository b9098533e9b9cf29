"""Teacher clips from the world: the video the student sees, and exact maps at the teacher's size.

A clip is a scene's uniformly sampled frames (its `signals.safetensors` timestamps): the input
is those frames decoded from `video.mp4` (lossy, as any video) and resized to the teacher's
S x S; the targets, P_m's exact counterparts, are rendered from the scene description at the
teacher's own resolution, so no resampling blurs them: depth (1, T, S, S) z-depth in metres
(0 = sky), flow (2, T, S, S) backward flow in S-pixel units (frame 0 has none), motion
(1, T, S, S) in {0, 1}, camray (6, T, h, w) at the centres of the patch grid's cells.
The oracle teacher serves these maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from r4d.errors import InputError
from r4d.io.video import read_frames
from r4d.teacher.config import TeacherConfig
from r4d.world.bench import split_of
from r4d.world.files import load_signals
from r4d.world.render import render
from r4d.world.scene import Scene


@dataclass
class Clip:
    name: str  # the scene folder's name
    video: torch.Tensor  # (T, 3, S, S) in [0, 1]
    maps: dict[str, torch.Tensor]  # exact targets (see the module docstring)
    frame_indices: list[int]  # the video frames sampled (the scene's `frame_indices`)


def exact_maps(scene: Scene, times: np.ndarray, config: TeacherConfig) -> dict[str, torch.Tensor]:
    """The world's exact maps at the teacher's output resolution (the oracle's P_m)."""
    size = config.image_size
    _, h, w = config.grid
    dense = render(scene, times, size, size, signals=("depth", "flow", "motion"))
    rays = render(scene, times, h, w, signals=("camray",))["camray"]
    return {
        "depth": torch.from_numpy(dense["depth"])[None],
        "flow": torch.from_numpy(dense["flow"]).permute(3, 0, 1, 2).contiguous(),
        "motion": torch.from_numpy(dense["motion"]).float()[None],
        "camray": torch.from_numpy(rays).permute(3, 0, 1, 2).contiguous(),
    }


def clip_video(frames: np.ndarray, size: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, size, size) float in [0, 1] (area-averaged)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    return F.interpolate(x, size=(size, size), mode="area")


def load_clip(folder: Path, config: TeacherConfig, with_maps: bool = True) -> Clip:
    scene = Scene.load(folder / "scene.json")
    signals = load_signals(folder / "signals.safetensors")
    times, indices = signals["times"], signals["frame_indices"]
    if len(times) != config.frames:
        raise InputError(
            f"{len(times)} sampled frames, the teacher takes {config.frames}",
            where=folder / "signals.safetensors",
        )
    video = clip_video(read_frames(folder / "video.mp4", indices), config.image_size)
    maps = exact_maps(scene, times, config) if with_maps else {}
    return Clip(folder.name, video, maps, [int(i) for i in indices])


def scene_folders(world: str | Path, split: str | None = None) -> list[Path]:
    """Scene folders of a world, optionally only those whose seed falls in `split`
    (`r4d.world.bench.split_of`: the same scenes R4D-Sim puts there)."""
    folders = sorted(p for p in Path(world).glob("scene_*") if (p / "scene.json").is_file())
    if split is None:
        return folders
    return [f for f in folders if split_of(int(f.name.removeprefix("scene_"))) == split]
