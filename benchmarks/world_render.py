"""World rendering speed and the wall time of `r4d world build`.

    python benchmarks/world_render.py [--scenes-timed 12] [--build-scenes 500] [--workers 2]

Prints frames/s at 128x128 for RGB+depth+ids (batched over a scene's frames; the baseline in the
same run traces one frame at a time), for the full signal set at 16 sampled frames, and the
wall time of building a world (videos at native fps + signals of 16 frames), each with its
ratio to the target of the foundation issue.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from r4d.io.video import uniform_indices
from r4d.world.files import RenderSettings, build_world
from r4d.world.render import ALL_SIGNALS, render
from r4d.world.sample import sample_scene

TARGET_FPS = 500.0
TARGET_BUILD_S = 300.0


def frames_per_second(scenes, frames_of, signals, chunk=None) -> float:
    kwargs = {} if chunk is None else {"chunk": chunk}
    total, start = 0, time.perf_counter()
    for scene in scenes:
        times = frames_of(scene)
        render(scene, times, 128, 128, signals=signals, **kwargs)
        total += len(times)
    return total / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes-timed", type=int, default=12)
    parser.add_argument("--build-scenes", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    scenes = [sample_scene(seed) for seed in range(args.scenes_timed)]
    native = lambda s: np.arange(min(s.num_frames, 96)) / s.fps  # noqa: E731
    sampled = lambda s: uniform_indices(s.num_frames, 16) / s.fps  # noqa: E731
    frames_per_second(scenes[:1], native, ("rgb",))  # warm-up

    base = frames_per_second(scenes, native, ("rgb", "depth", "ids"), chunk=1)
    fast = frames_per_second(scenes, native, ("rgb", "depth", "ids"))
    full = frames_per_second(scenes, sampled, ALL_SIGNALS)
    print(f"RGB+depth+ids 128x128, one frame at a time (baseline): {base:7.1f} frames/s")
    print(
        f"RGB+depth+ids 128x128, batched:                        {fast:7.1f} frames/s "
        f"({fast / base:.2f}x baseline, {fast / TARGET_FPS:.2f}x the {TARGET_FPS:.0f} target)"
    )
    print(f"all signals 128x128 at 16 sampled frames:              {full:7.1f} frames/s")

    if args.build_scenes:
        out = Path(tempfile.mkdtemp(prefix="r4d-bench-world-"))
        try:
            start = time.perf_counter()
            build_world(out, args.build_scenes, 0, args.workers, RenderSettings(), progress=True)
            wall = time.perf_counter() - start
            size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        finally:
            shutil.rmtree(out, ignore_errors=True)
        print(
            f"r4d world build: {args.build_scenes} scenes, {args.workers} workers: {wall:.1f} s "
            f"({wall / TARGET_BUILD_S:.2f}x the {TARGET_BUILD_S:.0f} s budget), "
            f"{size / 2**30:.2f} GiB on disk"
        )


if __name__ == "__main__":
    main()
