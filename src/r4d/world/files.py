"""Scenes on disk: one folder per scene, written atomically, and many of them in parallel.

A scene folder `scene_<seed>/` holds
- `scene.json`: the scene description (`r4d.world.scene`),
- `video.mp4`: every frame at the native fps, H.264 (lossy; for models and people),
- `signals.safetensors`: the exact signals of N uniformly sampled frames (`r4d.world.render`
  conventions) with their frame indices, timestamps and camera intrinsics and poses,
- optionally `contact_sheet.png`.
The folder appears only when complete (it is renamed into place), so a folder that exists is
a finished scene: a rerun of a build skips it, and a killed build leaves only temporaries that
the next run deletes.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from r4d.errors import InputError
from r4d.io.atomic import atomic_dir, exclusive_lock, remove_temporaries, write_text
from r4d.io.video import uniform_indices, write_video
from r4d.world.kinematics import camera_pose, intrinsics
from r4d.world.render import ALL_SIGNALS, render
from r4d.world.sample import DEFAULT_SAMPLED_FRAMES, sample_scene
from r4d.world.scene import Scene
from r4d.world.sheet import contact_sheet

SIGNALS_SCHEMA = "r4d.world.signals/1"
VIDEO_CHUNK = 64  # frames rendered per batch while encoding


@dataclass(frozen=True)
class RenderSettings:
    """Image size (pixels) and how many frames get exact signals."""

    height: int = 128
    width: int = 128
    num_sampled: int = DEFAULT_SAMPLED_FRAMES
    contact_sheet: bool = False


def scene_dir_name(seed: int) -> str:
    return f"scene_{seed:06d}"


def render_video_frames(scene: Scene, settings: RenderSettings, progress: bool = False):
    """Yield RGB batches (n, H, W, 3) of every native frame, in order."""
    with tqdm(total=scene.num_frames, desc="video", unit="frame", disable=not progress) as bar:
        for a in range(0, scene.num_frames, VIDEO_CHUNK):
            times = np.arange(a, min(a + VIDEO_CHUNK, scene.num_frames)) / scene.fps
            yield render(scene, times, settings.height, settings.width, signals=("rgb",))["rgb"]
            bar.update(len(times))


def sampled_signals(scene: Scene, settings: RenderSettings) -> dict[str, np.ndarray]:
    """Exact signals of the uniformly sampled frames, plus what is needed to reuse them."""
    indices = uniform_indices(scene.num_frames, settings.num_sampled)
    times = indices / scene.fps
    signals = render(scene, times, settings.height, settings.width, ALL_SIGNALS)
    R_wc, C = camera_pose(scene.camera, times)
    signals.update(
        frame_indices=indices,
        intrinsics=intrinsics(scene.camera, settings.height, settings.width),
        camera_rotation=R_wc,
        camera_position=C,
    )
    return signals


def save_signals(path: Path, signals: dict[str, np.ndarray]) -> None:
    arrays = {k: np.ascontiguousarray(v) for k, v in signals.items()}
    save_file(arrays, str(path), metadata={"schema": SIGNALS_SCHEMA})


def load_signals(path: str | Path) -> dict[str, np.ndarray]:
    """Read a `signals.safetensors` file, checking its schema."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            schema = (f.metadata() or {}).get("schema")
        if schema != SIGNALS_SCHEMA:
            raise InputError(f"schema {schema!r}, expected {SIGNALS_SCHEMA!r}", where=path)
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise InputError(f"unreadable signals file ({err})", where=path) from None


def write_scene(
    scene: Scene,
    out_dir: str | Path,
    settings: RenderSettings = RenderSettings(),
    progress: bool = False,
    name: str | None = None,
) -> Path:
    """Write one scene folder out_dir/name (default scene_<seed>) atomically; returns its path."""
    if name is None and scene.seed is None:
        raise ValueError("write_scene needs a name for a scene without a seed")
    final = Path(out_dir) / (name or scene_dir_name(scene.seed))
    with atomic_dir(final) as tmp:
        write_text(tmp / "scene.json", scene.to_json())
        write_video(tmp / "video.mp4", render_video_frames(scene, settings, progress), scene.fps)
        signals = sampled_signals(scene, settings)
        save_signals(tmp / "signals.safetensors", signals)
        if settings.contact_sheet:
            contact_sheet(signals, tmp / "contact_sheet.png", title=f"seed {scene.seed}")
    return final


def _build_one(seed: int, out_dir: str, settings: RenderSettings) -> str:
    return str(write_scene(sample_scene(seed), out_dir, settings))


def build_world(
    out_dir: str | Path,
    scenes: int,
    seed: int = 0,
    workers: int = 1,
    settings: RenderSettings = RenderSettings(),
    progress: bool = True,
) -> list[Path]:
    """Write scenes for seeds seed .. seed + scenes - 1, skipping finished ones; in parallel.

    `world.json` records the settings (a rerun with other settings is refused) and lists the
    finished scene folders.
    """
    out_dir = Path(out_dir)
    with exclusive_lock(out_dir, "world build"):
        return _build_locked(out_dir, scenes, seed, workers, settings, progress)


def _build_locked(out_dir: Path, scenes, seed, workers, settings, progress) -> list[Path]:
    index = out_dir / "world.json"
    wanted = {
        "height": settings.height,
        "width": settings.width,
        "num_sampled": settings.num_sampled,
    }
    if index.is_file():
        built = json.loads(index.read_text()).get("settings")
        if built != wanted:
            raise InputError(
                f"built with {built}, asked for {wanted}; use another output folder", where=index
            )
    remove_temporaries(out_dir)
    _write_index(index, wanted)
    seeds = list(range(seed, seed + scenes))
    todo = [s for s in seeds if not (out_dir / scene_dir_name(s)).is_dir()]
    bar = tqdm(
        total=len(seeds),
        initial=len(seeds) - len(todo),
        desc="world",
        unit="scene",
        disable=not progress,
    )
    if workers <= 1:
        for s in todo:
            _build_one(s, str(out_dir), settings)
            bar.update()
    else:
        # "spawn": forking a process whose torch / OpenMP threads are running can deadlock.
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_build_one, s, str(out_dir), settings) for s in todo]
            for future in as_completed(futures):
                future.result()
                bar.update()
    bar.close()
    _write_index(index, wanted)
    return [out_dir / scene_dir_name(s) for s in seeds]


def _write_index(index: Path, settings: dict) -> None:
    scenes = sorted(p.name for p in index.parent.glob("scene_*") if p.is_dir())
    manifest = {"schema": "r4d.world.index/1", "settings": settings, "scenes": scenes}
    write_text(index, json.dumps(manifest, indent=1) + "\n")
