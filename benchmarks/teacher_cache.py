"""The teacher cache: build speed, bytes per clip, and reading it against running the teacher.

    python benchmarks/teacher_cache.py --world DIR [--teacher DIR] [--clips 48]

Builds a cache of the first `clips` scenes' clips with the tiny teacher (trained weights from
--teacher, or random ones: the cost is the same), then times reading every clip's F_4D and P_m
back from it against running the teacher's encoder (E_4D only, no heads) on the same clips,
in this run (a second pass: the first also verifies every shard's checksum, and is reported
beside it). Target: reading >= 10x faster than encoding online.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from r4d.teacher.cache import build_cache
from r4d.teacher.config import tiny_config
from r4d.teacher.data import load_clip, scene_folders
from r4d.teacher.model import Teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--teacher", type=Path)
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    teacher = Teacher.from_pretrained(args.teacher) if args.teacher else Teacher(tiny_config())
    teacher.eval()
    clips = [
        load_clip(f, teacher.config, with_maps=False)
        for f in scene_folders(args.world)[: args.clips]
    ]
    out = Path(tempfile.mkdtemp(prefix="r4d-bench-cache-"))
    try:
        start = time.perf_counter()
        cache = build_cache(teacher, clips, out / "cache", batch=args.batch, progress=False)
        build = time.perf_counter() - start
        print(
            f"build: {len(clips)} clips in {build:.1f} s ({len(clips) / build:.2f} clips/s), "
            f"{cache.bytes_per_clip / 1e6:.2f} MB a clip on disk"
        )
        reader = type(cache)(out / "cache")  # a fresh reader: checksums are verified once
        reads = []
        for _ in range(2):  # the first pass also verifies every shard's checksum
            start = time.perf_counter()
            for clip in clips:
                reader.get(clip.name)
            reads.append(time.perf_counter() - start)
        read = reads[1]
        start = time.perf_counter()
        with torch.no_grad():
            for a in range(0, len(clips), args.batch):
                teacher.encode(torch.stack([c.video for c in clips[a : a + args.batch]]))
        online = time.perf_counter() - start
        print(
            f"read F_4D + P_m: {len(clips) / read:.1f} clips/s ({len(clips) / reads[0]:.1f} "
            "on the first pass, which checks every shard's sha256); teacher encoder online: "
            f"{len(clips) / online:.1f} clips/s; ratio {online / read:.1f}x "
            f"({online / reads[0]:.1f}x first pass) (target >= 10x)"
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
