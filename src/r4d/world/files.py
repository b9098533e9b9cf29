"""Scenes on disk: one folder per scene, written atomically, and many of them in parallel.

A scene folder `scene_<seed>/` holds
- `scene.json`: the scene description (`r4d.world.scene`),
- `video.mp4`: every frame at the native fps, H.264 (lossy; for models and people),
- `signals.safetensors`: the exact signals of N uniformly sampled frames (`r4d.world.render`
  conventions) with their frame indices, timestamps and camera intrinsics and poses,
- optionally `contact_sheet.png`.
The folder appears only when complete (it is renamed into place), and a killed build leaves
only temporaries that the next run deletes.

A world folder's `world.json` (schema `r4d.world.index/2`) holds the render settings and, per
finished scene, each of its files' byte size and sha256 (`scenes`: {folder: {file: {bytes,
sha256}}}), rewritten atomically as scenes finish. A scene is finished only when world.json
says so: a rerun checks every existing scene against it (sizes, then checksums) and rebuilds,
saying so on stderr, one that differs, lacks a file or is not recorded (its build was killed
before world.json was rewritten). A scene is a function of its seed, so the rebuilt folder is
byte-identical to the original. A folder of the older schema `r4d.world.index/1` (names only)
is upgraded: its finished scenes are adopted as they are and their checksums recorded.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from r4d.errors import InputError
from r4d.io.atomic import (
    atomic_dir,
    exclusive_lock,
    match_umask,
    remove_temporaries,
    sha256_file,
    write_text,
)
from r4d.io.video import uniform_indices, write_video
from r4d.world.kinematics import camera_pose, intrinsics
from r4d.world.render import ALL_SIGNALS, render
from r4d.world.sample import DEFAULT_SAMPLED_FRAMES, sample_scene
from r4d.world.scene import Scene
from r4d.world.sheet import contact_sheet

SIGNALS_SCHEMA = "r4d.world.signals/1"
VIDEO_CHUNK = 64  # frames rendered per batch while encoding
INDEX = "world.json"
INDEX_SCHEMA = "r4d.world.index/2"
OLD_INDEX_SCHEMA = "r4d.world.index/1"  # scene names only; upgraded on the next build
SCENE_FILES = ("scene.json", "video.mp4", "signals.safetensors")  # every scene has these
INDEX_EVERY = 1.0  # seconds: world.json is rewritten as scenes finish, at most this often


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
    match_umask(path)  # safetensors writes 0600


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


def scene_record(folder: str | Path) -> dict[str, dict]:
    """{file: {bytes, sha256}} of every file in a scene folder, as world.json records it."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file())
    return {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in files}


def scene_problem(folder: Path, record: dict[str, dict] | None) -> str | None:
    """How a scene folder differs from its world.json record (None: it does not). Every
    recorded file is checked by size first, then by checksum; files the build did not make
    are ignored."""
    if record is None:
        return "not in world.json (its build stopped before it was recorded)"
    if not folder.is_dir():
        return "missing"
    for name, want in record.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != want["bytes"]:
            return f"{name} is {size} bytes, world.json records {want['bytes']}"
    for name, want in record.items():
        if sha256_file(folder / name) != want["sha256"]:
            return f"{name} has another sha256 than world.json records (damaged)"
    return None


def _note(message: str) -> None:
    tqdm.write(f"note: {message}", file=sys.stderr)


def _build_one(seed: int, out_dir: str, settings: RenderSettings) -> tuple[str, dict]:
    folder = write_scene(sample_scene(seed), out_dir, settings)
    return folder.name, scene_record(folder)


def build_world(
    out_dir: str | Path,
    scenes: int,
    seed: int = 0,
    workers: int = 1,
    settings: RenderSettings = RenderSettings(),
    progress: bool = True,
) -> list[Path]:
    """Write scenes for seeds seed .. seed + scenes - 1 in parallel, keeping finished ones.

    `world.json` records the settings (a rerun with other settings is refused) and every
    finished scene's files; an existing scene that differs from its record, or has none, is
    rebuilt (see the module docstring).
    """
    out_dir = Path(out_dir)
    with exclusive_lock(out_dir, "world build"):
        return _build_locked(out_dir, scenes, seed, workers, settings, progress)


def read_index(path: Path) -> dict | None:
    """world.json (of this schema or r4d.world.index/1), or None when there is none."""
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read the world's index ({err})", where=path) from None
    schema = index.get("schema") if isinstance(index, dict) else None
    if schema not in (INDEX_SCHEMA, OLD_INDEX_SCHEMA):
        raise InputError(
            f"schema {schema!r}, expected {INDEX_SCHEMA!r}; use another output folder",
            where=path,
            field="schema",
        )
    return index


def _records(index: dict, path: Path) -> dict[str, dict]:
    """The scene records of world.json; those of an r4d.world.index/1 folder (names only) are
    made now from its finished scenes, adopted as they are (said on stderr)."""
    if index["schema"] == INDEX_SCHEMA:
        return dict(index["scenes"])
    folders = [path.parent / name for name in index.get("scenes", [])]
    done = [f for f in folders if all((f / name).is_file() for name in SCENE_FILES)]
    _note(
        f"{path} is of schema {OLD_INDEX_SCHEMA} (no sizes or checksums): adopting its "
        f"{len(done)} finished scenes as they are and recording their checksums"
    )
    return {f.name: scene_record(f) for f in done}


def _build_locked(out_dir: Path, scenes, seed, workers, settings, progress) -> list[Path]:
    index_path = out_dir / INDEX
    wanted = {
        "height": settings.height,
        "width": settings.width,
        "num_sampled": settings.num_sampled,
    }
    index = read_index(index_path)
    if index is not None and index.get("settings") != wanted:
        raise InputError(
            f"built with {index.get('settings')}, asked for {wanted}; use another output folder",
            where=index_path,
        )
    remove_temporaries(out_dir)
    records = _records(index, index_path) if index else {}
    _write_index(index_path, wanted, records)
    seeds = list(range(seed, seed + scenes))
    todo, previous = [], {}
    for s in tqdm(
        seeds, desc="verify", unit="scene", disable=not (progress and records), leave=False
    ):
        folder = out_dir / scene_dir_name(s)
        if not folder.exists() and folder.name not in records:
            todo.append(s)
            continue
        problem = scene_problem(folder, records.get(folder.name))
        if problem is None:
            continue
        _note(f"{folder}: {problem}; rebuilding it")
        previous[folder.name] = records.pop(folder.name, None)
        if folder.exists():
            shutil.rmtree(folder)
        todo.append(s)
    bar = tqdm(
        total=len(seeds),
        initial=len(seeds) - len(todo),
        desc="world",
        unit="scene",
        disable=not progress,
    )
    written = time.monotonic()

    def finished(name: str, record: dict) -> None:
        nonlocal written
        old = previous.get(name)
        if old is not None and old != record:
            _note(
                f"{out_dir / name}: the rebuilt scene differs from the one world.json recorded "
                "(was it built by another version of r4d?)"
            )
        records[name] = record
        bar.update()
        if time.monotonic() - written >= INDEX_EVERY:
            _write_index(index_path, wanted, records)
            written = time.monotonic()

    if workers <= 1:
        for s in todo:
            finished(*_build_one(s, str(out_dir), settings))
    else:
        # "spawn": forking a process whose torch / OpenMP threads are running can deadlock.
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_build_one, s, str(out_dir), settings) for s in todo]
            for future in as_completed(futures):
                finished(*future.result())
    bar.close()
    _write_index(index_path, wanted, records)
    return [out_dir / scene_dir_name(s) for s in seeds]


def _write_index(index: Path, settings: dict, records: dict[str, dict]) -> None:
    scenes = {name: records[name] for name in sorted(records)}
    manifest = {"schema": INDEX_SCHEMA, "settings": settings, "scenes": scenes}
    write_text(index, json.dumps(manifest, indent=1) + "\n")
