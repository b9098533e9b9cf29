"""The offline teacher cache: F_4D and P_m per clip, so student training never runs E_4D.

This module is the one owner of the cache's layout; everything else asks it for
`TeacherSignals`. Under the cache root:
- `shard-r<rank>-<k>.safetensors`: up to `shard_clips` clips, tensors named `<clip>/<field>`,
  float16: `latent<i>` (T', h, w, D) for hook i = 0 .. hooks - 1 in the teacher's hook order
  (F_4D; none for the oracle), and the maps `depth`, `flow`, `motion` (logits; 0/1 from the
  oracle), `camray` (P_m, as `Teacher.decode`).
- `index-r<rank>.json`: its header (the hook count, the teacher's identity `teacher_identity`,
  the shape of every field), per clip the video frame indices its signals were computed on,
  and per shard its clips, byte size and sha256. Each process (rank) of a multi-process build
  writes only its own shards and index (clips are split rank::world_size), so builds scale to
  many GPUs without coordination.
The store is `r4d.io.shards` (as E_v's feature cache): written atomically, a shard indexed
only once complete (an interrupted build resumes by skipping indexed clips), every shard's
checksum checked on first read (a truncated shard is refused) and every tensor's shape and
finiteness on each (a NaN or inf is refused naming the shard file and the clip). The reader
also checks the index's header and every clip's frame indices before handing out anything.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from r4d.errors import InputError
from r4d.io.atomic import exclusive_lock, remove_temporaries
from r4d.io.shards import ShardReader, ShardWriter, sha256_parameters
from r4d.teacher.config import PRESETS, TeacherConfig
from r4d.teacher.data import load_clip, scene_folders
from r4d.teacher.model import Teacher

SCHEMA = "r4d.teacher.cache/3"


def teacher_identity(source: Teacher | str) -> dict[str, str]:
    """What made a cache's signals: the oracle, or a teacher's config, E_4D and D_m (sha256)."""
    if source == "oracle":
        return {"source": "oracle"}
    config = json.dumps(asdict(source.config), sort_keys=True).encode()
    return {
        "source": "teacher",
        "config": hashlib.sha256(config).hexdigest(),
        "encoder": sha256_parameters(source.encoder),
        "heads": sha256_parameters(source.heads),
    }


def heads_identity(config: TeacherConfig, heads: torch.nn.Module) -> dict[str, str]:
    """The part of `teacher_identity` that frozen heads alone can be checked against."""
    encoded = json.dumps(asdict(config), sort_keys=True).encode()
    return {"config": hashlib.sha256(encoded).hexdigest(), "heads": sha256_parameters(heads)}


def latent_name(hook: int) -> str:
    """The field of F_4D at the hook-th hook (0-based, in the teacher's hook order)."""
    return f"latent{hook}"


def dist_rank() -> tuple[int, int]:
    """(rank, world size) from torchrun / `accelerate launch` environment variables."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


@dataclass
class TeacherSignals:
    """The teacher's signals for a batch of B samples, b = has.sum() of which have them.

    - `latents`: F_4D, one (b, T', h, w, D) tensor per hook in the teacher's hook order (empty
      for the oracle);
    - `maps`: P_m, {modality: (b, C, T, H, W)} (camray at the patch grid's (h, w));
    - `has`: (B,) bool, which samples have signals; `frame_indices`: theirs, per sample;
    - `motion_is_logits`: the motion map is logits (the oracle's is a 0/1 mask);
    - `teacher`: `teacher_identity` of what made them.
    """

    latents: list[torch.Tensor]
    maps: dict[str, torch.Tensor]
    has: torch.Tensor
    motion_is_logits: bool
    frame_indices: list[list[int]]
    teacher: dict[str, str]

    @property
    def any(self) -> bool:
        return bool(self.has.any())

    def to(self, device) -> TeacherSignals:
        return TeacherSignals(
            [x.to(device) for x in self.latents],
            {k: v.to(device) for k, v in self.maps.items()},
            self.has.to(device),
            self.motion_is_logits,
            self.frame_indices,
            self.teacher,
        )


class CacheWriter:
    """Appends clips to one rank's shards and index; refuses a folder made by another teacher
    (or with other hooks or field shapes)."""

    def __init__(
        self,
        root: str | Path,
        shapes: dict[str, list[int]],
        teacher: dict[str, str],
        hooks: int,
        rank: int = 0,
        shard_clips: int = 64,
        world_size: int = 1,
    ):
        header = {"teacher": teacher, "hooks": hooks, "shapes": shapes}
        self.store = ShardWriter(root, SCHEMA, header, rank, shard_clips, world_size)

    def done(self) -> set[str]:
        return set(self.store.done())

    def add(self, clip: str, fields: dict[str, torch.Tensor], frame_indices: list[int]) -> None:
        self.store.add(clip, fields, {"frame_indices": [int(i) for i in frame_indices]})

    def flush(self) -> None:
        self.store.flush()


def _nonnegative_ints(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    )


def _check_header(header: dict, where: Path) -> None:
    """Refuse an index header that is not what `CacheWriter` writes, naming the field."""
    teacher = header.get("teacher")
    if not isinstance(teacher, dict) or not isinstance(teacher.get("source"), str):
        raise InputError(
            f"expected the teacher's identity (an object with its source), got {teacher!r}",
            where=where,
            field="header.teacher",
        )
    hooks = header.get("hooks")
    if isinstance(hooks, bool) or not isinstance(hooks, int) or hooks < 0:
        raise InputError(
            f"expected a hook count >= 0, got {hooks!r}", where=where, field="header.hooks"
        )
    shapes = header.get("shapes")
    if not isinstance(shapes, dict):
        raise InputError("expected an object of field shapes", where=where, field="header.shapes")
    for name, shape in shapes.items():
        if not _nonnegative_ints(shape):
            raise InputError(
                f"expected a shape (a list of sizes), got {shape!r}",
                where=where,
                field=f"header.shapes.{name}",
            )
    missing = [latent_name(i) for i in range(hooks) if latent_name(i) not in shapes]
    if missing:
        raise InputError(
            f"{hooks} hooks but no shape for {missing[0]}", where=where, field="header.shapes"
        )


class TeacherCache:
    """Reads clips from a cache without loading it whole, as `TeacherSignals` for a batch."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.store = ShardReader(self.root, SCHEMA)
        header = self.store.header
        _check_header(header, self.root)
        self.teacher, self.hooks, self.shapes = header["teacher"], header["hooks"], header["shapes"]
        self.frame_indices = {}
        for clip, meta in self.store.entries.items():
            frames = meta.get("frame_indices") if isinstance(meta, dict) else None
            if not _nonnegative_ints(frames):
                raise InputError(
                    f"expected the frame indices of clip {clip!r}, got {frames!r}",
                    where=self.root,
                    field=f"entries.{clip}.frame_indices",
                )
            self.frame_indices[clip] = frames

    @property
    def motion_is_logits(self) -> bool:
        return self.teacher["source"] != "oracle"

    @property
    def has_latents(self) -> bool:
        return self.hooks > 0

    def __len__(self) -> int:
        return len(self.store)

    def __contains__(self, clip: str) -> bool:
        return clip in self.store

    def clips(self) -> list[str]:
        return self.store.keys()

    @property
    def bytes_per_clip(self) -> float:
        shards = {s["file"]: s for s in self.store.where.values()}.values()
        return sum(s["bytes"] for s in shards) / max(len(self), 1)

    def check_heads(self, config: TeacherConfig, heads: torch.nn.Module) -> None:
        """Refuse frozen heads D_m that are not the teacher whose F_4D this cache holds."""
        if self.teacher["source"] == "oracle":
            return
        theirs = heads_identity(config, heads)
        for key, value in theirs.items():
            if self.teacher[key] != value:
                raise InputError(
                    f"the teacher heads' {key} (sha256 {value[:12]}) are not those of the teacher "
                    f"that made this cache ({self.teacher[key][:12]})",
                    where=self.root,
                    field=f"teacher.{key}",
                )

    def get(self, clip: str) -> dict[str, torch.Tensor]:
        """Every field of one clip (float16), shapes checked against the index."""
        return self.store.get(clip, self.shapes)

    def signals(self, clips: list[str | None], frame_indices: list | None = None) -> TeacherSignals:
        """`TeacherSignals` for a batch: sample i has them when clips[i] is cached. With
        `frame_indices` (per sample, the video frames the student sees), a cached clip whose
        signals were computed on other frames is refused, naming the clip."""
        has = [c is not None and c in self.store for c in clips]
        chosen = [c for c, h in zip(clips, has, strict=True) if h]
        if frame_indices is not None:
            for clip, mine, h in zip(clips, frame_indices, has, strict=True):
                theirs = self.frame_indices.get(clip) if h else None
                if theirs is not None and [int(i) for i in mine] != theirs:
                    raise InputError(
                        f"clip {clip!r}: the run samples frames {[int(i) for i in mine]} but "
                        f"the cache's signals are of frames {theirs}",
                        where=self.root,
                        field="frames",
                    )
        fields = [self.get(c) for c in chosen]

        def stacked(name: str) -> torch.Tensor:
            return torch.stack([f[name] for f in fields]).float()

        names = [k for k in self.shapes if not k.startswith("latent")]
        return TeacherSignals(
            [stacked(latent_name(i)) for i in range(self.hooks)] if fields else [],
            {k: stacked(k) for k in names} if fields else {},
            torch.tensor(has, dtype=torch.bool),
            self.motion_is_logits,
            [self.frame_indices.get(c, []) for c in chosen],
            self.teacher,
        )


def build_cache(
    source, clips, out: str | Path, shard_clips: int = 64, batch: int = 4, progress: bool = True
) -> TeacherCache:
    """Cache `source`'s outputs for `clips` (`r4d.teacher.data.Clip`s; the oracle's with their
    maps). `source` is a Teacher or the string "oracle". This process handles its rank's share
    (rank::world_size)."""
    rank, world_size = dist_rank()
    mine = clips[rank::world_size]
    first = _fields(source, mine[:1])[0] if mine else {}
    shapes = {k: list(v.shape) for k, v in first.items()}
    hooks = 0 if source == "oracle" else len(source.config.hooks)
    with exclusive_lock(out, f"cache build of rank {rank}", f".lock-r{rank}"):
        for names in (f"shard-r{rank}-*", f"index-r{rank}.json"):  # a killed build's
            remove_temporaries(out, names)
        writer = CacheWriter(
            out, shapes, teacher_identity(source), hooks, rank, shard_clips, world_size
        )
        done = writer.done()
        # Batches as a fresh build makes them (a resumed build may redo a finished clip of the
        # first): a clip's outputs can differ in the last bit with its batch-mates.
        for a in tqdm(range(0, len(mine), batch), desc=f"cache r{rank}", disable=not progress):
            chunk = mine[a : a + batch]
            if all(c.name in done for c in chunk):
                continue
            for clip, fields in zip(chunk, _fields(source, chunk), strict=True):
                if clip.name not in done:
                    writer.add(clip.name, fields, clip.frame_indices)
        writer.flush()
    return TeacherCache(out)


def cache_world(
    source: Teacher | str,
    world: str | Path,
    out: str | Path,
    shard_clips: int = 64,
    batch: int = 4,
    progress: bool = True,
) -> TeacherCache:
    """Cache every scene of a world: `source` a Teacher, or "oracle" (the world's exact maps at
    the tiny teacher's sizes)."""
    oracle = source == "oracle"
    config = PRESETS["tiny"]() if oracle else source.config
    clips = [load_clip(f, config, with_maps=oracle) for f in scene_folders(world)]
    return build_cache(source, clips, out, shard_clips, batch, progress)


@torch.no_grad()
def _fields(source, clips) -> list[dict[str, torch.Tensor]]:
    if not clips:
        return []
    if source == "oracle":
        return [dict(c.maps) for c in clips]
    device = next(source.parameters()).device
    out = source(torch.stack([c.video for c in clips]).to(device))
    fields = []
    for b in range(len(clips)):
        entry = {latent_name(i): x[b] for i, x in enumerate(out.latents)}
        entry.update({k: v[b] for k, v in out.maps.items()})
        fields.append(entry)
    return fields
