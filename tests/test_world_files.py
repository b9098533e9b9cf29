"""Scene folders on disk, parallel resumable builds, and the `r4d world` commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from r4d.cli import app
from r4d.errors import InputError
from r4d.io.video import probe, read_frames
from r4d.world import Scene, sample_scene
from r4d.world.files import RenderSettings, build_world, load_signals, write_scene

SMALL = RenderSettings(height=32, width=32, num_sampled=4)
runner = CliRunner()


def _complete(folder: Path) -> bool:
    return {p.name for p in folder.iterdir()} >= {"scene.json", "video.mp4", "signals.safetensors"}


def test_scene_folder_round_trip(tmp_path):
    scene = sample_scene(2)
    folder = write_scene(scene, tmp_path, RenderSettings(height=48, width=64, num_sampled=6))
    assert Scene.load(folder / "scene.json") == scene
    info = probe(folder / "video.mp4")
    assert (info.num_frames, info.fps, info.width, info.height) == (
        scene.num_frames,
        scene.fps,
        64,
        48,
    )
    signals = load_signals(folder / "signals.safetensors")
    assert signals["rgb"].shape == (6, 48, 64, 3) and signals["camray"].shape == (6, 48, 64, 6)
    assert signals["frame_indices"][[0, -1]].tolist() == [0, scene.num_frames - 1]
    assert np.allclose(signals["times"], signals["frame_indices"] / scene.fps)
    # The video holds the same pictures as the exact RGB, up to compression.
    decoded = read_frames(folder / "video.mp4", signals["frame_indices"]).astype(float)
    assert np.abs(decoded - signals["rgb"]).mean() < 6
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no temporaries left


def test_build_skips_finished_scenes_and_cleans_temporaries(tmp_path):
    first = build_world(tmp_path, 3, seed=10, workers=2, settings=SMALL, progress=False)
    assert all(_complete(f) for f in first)
    stamps = {f.name: (f / "video.mp4").stat().st_mtime_ns for f in first}
    stale = tmp_path / ".scene_000013.tmp-999999999-abc"  # left by a killed writer
    stale.mkdir()
    (stale / "video.mp4").write_bytes(b"half")
    again = build_world(tmp_path, 4, seed=10, workers=1, settings=SMALL, progress=False)
    assert not stale.exists()
    assert all(_complete(f) for f in again)
    assert {f.name: (f / "video.mp4").stat().st_mtime_ns for f in again[:3]} == stamps
    index = json.loads((tmp_path / "world.json").read_text())
    assert list(index["scenes"]) == [f.name for f in again]
    with pytest.raises(Exception, match="use another output folder"):
        build_world(tmp_path, 1, settings=RenderSettings(height=64, width=64), progress=False)


def _contents(world: Path) -> dict[str, bytes]:
    return {str(p.relative_to(world)): p.read_bytes() for p in world.rglob("*") if p.is_file()}


def test_a_damaged_or_unrecorded_scene_is_rebuilt_as_it_was(tmp_path, capsys):
    folders = build_world(tmp_path, 4, seed=20, settings=SMALL, progress=False)
    before = _contents(tmp_path)
    index = json.loads((tmp_path / "world.json").read_text())
    assert set(index["scenes"][folders[0].name]) == {
        "scene.json",
        "video.mp4",
        "signals.safetensors",
    }
    assert index["scenes"][folders[0].name]["video.mp4"]["bytes"] == len(
        before[f"{folders[0].name}/video.mp4"]
    )
    signals = folders[1] / "signals.safetensors"
    signals.write_bytes(signals.read_bytes()[:-100])  # truncated
    video = folders[2] / "video.mp4"
    data = bytearray(video.read_bytes())
    data[len(data) // 2] ^= 0xFF  # damaged, same size
    video.write_bytes(bytes(data))
    del index["scenes"][folders[3].name]  # a build killed before recording it
    (tmp_path / "world.json").write_text(json.dumps(index))
    kept = (folders[0] / "video.mp4").stat().st_mtime_ns
    capsys.readouterr()
    build_world(tmp_path, 4, seed=20, settings=SMALL, progress=False)
    err = capsys.readouterr().err
    assert f"{folders[1]}: signals.safetensors is {signals.stat().st_size - 100} bytes" in err
    assert f"{folders[2]}: video.mp4 has another sha256 than world.json records" in err
    assert f"{folders[3]}: not in world.json" in err
    assert err.count("rebuilding it") == 3 and "differs from the one world.json" not in err
    assert _contents(tmp_path) == before  # byte for byte, world.json too
    assert (folders[0] / "video.mp4").stat().st_mtime_ns == kept


def test_a_world_of_the_first_index_schema_is_adopted_and_upgraded(tmp_path, capsys):
    folders = build_world(tmp_path, 2, seed=30, settings=SMALL, progress=False)
    before = _contents(tmp_path)
    settings = {"height": 32, "width": 32, "num_sampled": 4}
    old = {"schema": "r4d.world.index/1", "settings": settings, "scenes": [f.name for f in folders]}
    (tmp_path / "world.json").write_text(json.dumps(old))
    stamps = [(f / "video.mp4").stat().st_mtime_ns for f in folders]
    capsys.readouterr()
    build_world(tmp_path, 2, seed=30, settings=SMALL, progress=False)
    assert "r4d.world.index/1 (no sizes or checksums): adopting its 2 finished scenes" in (
        capsys.readouterr().err
    )
    assert _contents(tmp_path) == before
    assert [(f / "video.mp4").stat().st_mtime_ns for f in folders] == stamps
    (tmp_path / "world.json").write_text(json.dumps({**old, "schema": "r4d.world.index/9"}))
    with pytest.raises(
        InputError, match=r"schema 'r4d.world.index/9', expected .*/2'; use another"
    ):
        build_world(tmp_path, 2, seed=30, settings=SMALL, progress=False)


@pytest.mark.slow
def test_killed_build_leaves_nothing_half_written(tmp_path):
    build = "world build --scenes 40 --workers 2 --height 32 --width 32 --frames 4".split()
    build += ["--out", str(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "r4d.cli", *build],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and len(list(tmp_path.glob("scene_*"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = list(tmp_path.glob("scene_*"))
    assert 3 <= len(done) < 40
    assert all(_complete(f) for f in done)
    result = runner.invoke(app, build)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"scene_{s:06d}" for s in range(40)] + ["world.json"]
    )


def test_cli_sample_writes_scene_and_contact_sheet(tmp_path):
    from PIL import Image

    result = runner.invoke(
        app,
        [
            "world",
            "sample",
            "--seed",
            "5",
            "--out",
            str(tmp_path),
            "--height",
            "48",
            "--width",
            "48",
            "--frames",
            "6",
        ],
    )
    assert result.exit_code == 0, result.output
    folder = tmp_path / "scene_000005"
    assert _complete(folder)
    sheet = Image.open(folder / "contact_sheet.png")
    assert sheet.width > 5 * 48 and sheet.height > 6 * 48


def test_cli_render_refuses_a_bad_scene_and_writes_nothing(tmp_path):
    data = sample_scene(1).to_dict()
    data["objects"][1]["size"][2] = -1.0
    bad = tmp_path / "mine.json"
    bad.write_text(json.dumps(data))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "r4d.cli", "world", "render", str(bad), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert f"{bad}: objects[1].size[2]: must be > 0" in proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_cli_render_writes_a_hand_made_scene(tmp_path):
    data = sample_scene(1).to_dict()
    data["seed"] = None
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    result = runner.invoke(
        app,
        [
            "world",
            "render",
            str(path),
            "--out",
            str(tmp_path / "out"),
            "--height",
            "32",
            "--width",
            "32",
            "--frames",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert _complete(tmp_path / "out" / "mine")
