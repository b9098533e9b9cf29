"""The offline teacher cache: F_4D and P_m per clip, so student training never runs E_4D.

Layout under the cache root:
- `shard-r<rank>-<k>.safetensors`: up to `shard_clips` clips, tensors named `<clip>/<field>`,
  float16: `latent<i>` (T', h, w, D) for each hook (F_4D; absent for the oracle), and the maps
  `depth`, `flow`, `motion` (logits; 0/1 from the oracle), `camray` (P_m, as `Teacher.decode`).
- `index-r<rank>.json`: per shard its clips, byte size and sha256, and the expected shape of
  every field. Each process (rank) of a multi-process build writes only its own shards and
  index (clips are split rank::world_size), so builds scale to many GPUs without coordination.
Shards and indexes are written atomically and a shard enters the index only once complete, so
an interrupted build resumes by skipping indexed clips. The reader opens one shard at a time
(memory-mapped), checks its checksum on first use, checks every tensor's shape, and rejects a
corrupt shard by name.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from r4d.errors import InputError
from r4d.io.atomic import atomic_path, write_text

SCHEMA = "r4d.teacher.cache/1"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dist_rank() -> tuple[int, int]:
    """(rank, world size) from torchrun / `accelerate launch` environment variables."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class CacheWriter:
    def __init__(
        self,
        root: str | Path,
        shapes: dict[str, list[int]],
        meta: dict,
        rank: int = 0,
        shard_clips: int = 64,
    ):
        self.root, self.rank, self.shard_clips = Path(root), rank, shard_clips
        self.root.mkdir(parents=True, exist_ok=True)
        self.index_path = self.root / f"index-r{rank}.json"
        if self.index_path.is_file():
            self.index = json.loads(self.index_path.read_text())
            if self.index["shapes"] != shapes:
                raise InputError(
                    f"this cache holds fields {self.index['shapes']}, the teacher "
                    f"gives {shapes}; use another folder",
                    where=self.index_path,
                )
        else:
            self.index = {"schema": SCHEMA, "meta": meta, "shapes": shapes, "shards": []}
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_clips: list[str] = []

    def done(self) -> set[str]:
        return {c for shard in self.index["shards"] for c in shard["clips"]}

    def add(self, clip: str, fields: dict[str, torch.Tensor]) -> None:
        for name, value in fields.items():
            self.pending[f"{clip}/{name}"] = value.detach().to("cpu", torch.float16).contiguous()
        self.pending_clips.append(clip)
        if len(self.pending_clips) >= self.shard_clips:
            self.flush()

    def flush(self) -> None:
        if not self.pending_clips:
            return
        name = f"shard-r{self.rank}-{len(self.index['shards']):05d}.safetensors"
        with atomic_path(self.root / name) as tmp:
            save_file(self.pending, str(tmp), metadata={"schema": SCHEMA})
            size, digest = tmp.stat().st_size, _sha256(tmp)
        self.index["shards"].append(
            {"file": name, "clips": self.pending_clips, "bytes": size, "sha256": digest}
        )
        write_text(self.index_path, json.dumps(self.index, indent=1) + "\n")
        self.pending, self.pending_clips = {}, []


class TeacherCache:
    """Read clips from a cache without loading it whole."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        indexes = sorted(self.root.glob("index-r*.json"))
        if not indexes:
            raise InputError("no index-r*.json: not a teacher cache", where=self.root)
        self.where: dict[str, dict] = {}
        self.shapes, self.meta = None, None
        for path in indexes:
            index = json.loads(path.read_text())
            if index.get("schema") != SCHEMA:
                raise InputError(f"schema {index.get('schema')!r}, expected {SCHEMA!r}", where=path)
            self.shapes, self.meta = index["shapes"], index["meta"]
            for shard in index["shards"]:
                for clip in shard["clips"]:
                    self.where[clip] = shard
        self.checked: set[str] = set()

    def __len__(self) -> int:
        return len(self.where)

    def __contains__(self, clip: str) -> bool:
        return clip in self.where

    def clips(self) -> list[str]:
        return sorted(self.where)

    @property
    def bytes_per_clip(self) -> float:
        shards = {s["file"]: s for s in self.where.values()}.values()
        return sum(s["bytes"] for s in shards) / max(len(self), 1)

    def _open(self, shard: dict):
        path = self.root / shard["file"]
        if shard["file"] not in self.checked:
            if not path.is_file():
                raise InputError("shard listed in the index is missing", where=path)
            if path.stat().st_size != shard["bytes"] or _sha256(path) != shard["sha256"]:
                raise InputError(
                    "corrupt shard: size or checksum differs from the index", where=path
                )
            self.checked.add(shard["file"])
        try:
            return safe_open(str(path), framework="pt")
        except SafetensorError as err:
            raise InputError(f"corrupt shard ({err})", where=path) from None

    def get(self, clip: str) -> dict[str, torch.Tensor]:
        """Every field of one clip (float16), shapes checked against the index."""
        if clip not in self.where:
            raise KeyError(f"clip {clip!r} is not in the cache at {self.root}")
        shard = self.where[clip]
        out = {}
        with self._open(shard) as f:
            for name, shape in self.shapes.items():
                tensor = f.get_tensor(f"{clip}/{name}")
                if list(tensor.shape) != shape:
                    raise InputError(
                        f"{clip}/{name} has shape {list(tensor.shape)}, the index says {shape}",
                        where=self.root / shard["file"],
                    )
                out[name] = tensor
        return out

    def latents(self, clip: str) -> list[torch.Tensor]:
        fields = self.get(clip)
        return [fields[k] for k in sorted(fields) if k.startswith("latent")]

    def maps(self, clip: str) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.get(clip).items() if not k.startswith("latent")}


def build_cache(
    source, clips, out: str | Path, shard_clips: int = 64, batch: int = 4, progress: bool = True
) -> TeacherCache:
    """Cache `source`'s outputs for `clips` (objects with .name, .video (T, 3, S, S) and, for
    the oracle, .maps). `source` is a Teacher or the string "oracle". This process handles its
    rank's share (rank::world_size)."""
    rank, world_size = dist_rank()
    mine = clips[rank::world_size]
    oracle = source == "oracle"
    first = _fields(source, mine[:1])[0] if mine else {}
    shapes = {k: list(v.shape) for k, v in first.items()}
    meta = {"source": "oracle" if oracle else "teacher", "world_size": world_size}
    if not oracle:
        meta["config"] = asdict(source.config)
    writer = CacheWriter(out, shapes, meta, rank, shard_clips)
    todo = [c for c in mine if c.name not in writer.done()]
    for a in tqdm(range(0, len(todo), batch), desc=f"cache r{rank}", disable=not progress):
        chunk = todo[a : a + batch]
        for clip, fields in zip(chunk, _fields(source, chunk), strict=True):
            writer.add(clip.name, fields)
    writer.flush()
    return TeacherCache(out)


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
        entry = {f"latent{i}": x[b] for i, x in enumerate(out.latents)}
        entry.update({k: v[b] for k, v in out.maps.items()})
        fields.append(entry)
    return fields
