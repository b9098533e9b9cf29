"""A resumable store of named tensors: checksummed safetensors shards and one JSON index a rank.

Under the store's root:
- `shard-r<rank>-<k>.safetensors`: the tensors of up to `shard_entries` entries, named
  `<key>/<field>`, float16;
- `index-r<rank>.json`: the store's schema, its `header` (what made the entries: a rebuild into
  the same folder must have the same header), per entry its metadata (`entries`), and per shard
  its keys, byte size and sha256.
Each process (rank) of a multi-process build writes only its own shards and index, so builds
need no coordination. Shards and indexes are written atomically and a shard enters the index
only once complete, so an interrupted build resumes by skipping indexed keys. The reader opens
one shard at a time (memory-mapped), checks its checksum on first use, checks the shape of
every tensor it returns and names a corrupt shard.

`r4d.model.features` (E_v's features) keeps its cache here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from r4d.errors import InputError
from r4d.io.atomic import atomic_path, write_text


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_parameters(module: torch.nn.Module) -> str:
    """sha256 over a module's parameter names and bytes (buffers excluded: they are derived)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.named_parameters()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def read_index(path: Path, schema: str) -> dict:
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read a store index ({err})", where=path) from None
    if not isinstance(index, dict) or index.get("schema") != schema:
        found = index.get("schema") if isinstance(index, dict) else None
        raise InputError(
            f"schema {found!r}, expected {schema!r} (rebuild it)", where=path, field="schema"
        )
    return index


def _header_mismatch(index: dict, header: dict, where: Path) -> InputError | None:
    """The error for an index made with another header, naming a key it holds."""
    for name in sorted(set(index["header"]) | set(header)):
        if index["header"].get(name) != header.get(name):
            keys = [k for shard in index["shards"] for k in shard["keys"]]
            held = f"{keys[0]!r} and {len(keys) - 1} more" if keys else "no entries yet"
            return InputError(
                f"{held} were made with {name} {index['header'].get(name)}, this build has "
                f"{header.get(name)}; use another folder",
                where=where,
                field=name,
            )
    return None


class ShardWriter:
    """Appends entries to one rank's shards and index; refuses a folder of another header."""

    def __init__(
        self,
        root: str | Path,
        schema: str,
        header: dict,
        rank: int = 0,
        shard_entries: int = 64,
        world_size: int = 1,
    ):
        self.root, self.schema, self.rank = Path(root), schema, rank
        self.shard_entries = shard_entries
        self.root.mkdir(parents=True, exist_ok=True)
        self.index_path = self.root / f"index-r{rank}.json"
        if self.index_path.is_file():
            self.index = read_index(self.index_path, schema)
            error = _header_mismatch(self.index, header, self.index_path)
            if error is not None:
                raise error
        else:
            self.index = {
                "schema": schema,
                "header": header,
                "world_size": world_size,
                "entries": {},
                "shards": [],
            }
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_entries: dict[str, dict] = {}

    def done(self) -> dict[str, dict]:
        """The indexed entries' metadata, by key."""
        return dict(self.index["entries"])

    def add(self, key: str, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        for name, value in tensors.items():
            self.pending[f"{key}/{name}"] = value.detach().to("cpu", torch.float16).contiguous()
        self.pending_entries[key] = meta
        if len(self.pending_entries) >= self.shard_entries:
            self.flush()

    def flush(self) -> None:
        if not self.pending_entries:
            return
        name = f"shard-r{self.rank}-{len(self.index['shards']):05d}.safetensors"
        with atomic_path(self.root / name) as tmp:
            save_file(self.pending, str(tmp), metadata={"schema": self.schema})
            size, digest = tmp.stat().st_size, sha256_file(tmp)
        keys = list(self.pending_entries)
        self.index["shards"].append({"file": name, "keys": keys, "bytes": size, "sha256": digest})
        self.index["entries"].update(self.pending_entries)
        write_text(self.index_path, json.dumps(self.index, indent=1) + "\n")
        self.pending, self.pending_entries = {}, {}


class ShardReader:
    """Reads entries from every rank's shards without loading the store whole."""

    def __init__(self, root: str | Path, schema: str):
        self.root, self.schema = Path(root), schema
        indexes = sorted(self.root.glob("index-r*.json"))
        if not indexes:
            raise InputError(f"no index-r*.json: not a {schema} store", where=self.root)
        self.where: dict[str, dict] = {}
        self.entries: dict[str, dict] = {}
        self.header = None
        for path in indexes:
            index = read_index(path, schema)
            if self.header is None:
                self.header = index["header"]
            error = _header_mismatch(index, self.header, path)
            if error is not None:
                raise InputError(
                    f"ranks of two builds are mixed ({error.reason})", where=path, field=error.field
                )
            for shard in index["shards"]:
                for key in shard["keys"]:
                    self.where[key] = shard
            self.entries.update(index["entries"])
        self.checked: set[str] = set()

    def __len__(self) -> int:
        return len(self.where)

    def __contains__(self, key: str) -> bool:
        return key in self.where

    def keys(self) -> list[str]:
        return sorted(self.where)

    def _open(self, shard: dict):
        path = self.root / shard["file"]
        if shard["file"] not in self.checked:
            if not path.is_file():
                raise InputError("shard listed in the index is missing", where=path)
            if path.stat().st_size != shard["bytes"] or sha256_file(path) != shard["sha256"]:
                raise InputError(
                    "corrupt shard: size or checksum differs from the index", where=path
                )
            self.checked.add(shard["file"])
        try:
            return safe_open(str(path), framework="pt")
        except SafetensorError as err:
            raise InputError(f"corrupt shard ({err})", where=path) from None

    def get(self, key: str, shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
        """The fields `shapes` names of one entry (float16), each checked to have its shape."""
        if key not in self.where:
            raise InputError(f"{key!r} is not in the store", where=self.root)
        shard = self.where[key]
        out = {}
        with self._open(shard) as f:
            for name, shape in shapes.items():
                try:
                    tensor = f.get_tensor(f"{key}/{name}")
                except SafetensorError as err:
                    raise InputError(
                        f"corrupt shard ({err})", where=self.root / shard["file"]
                    ) from None
                if list(tensor.shape) != list(shape):
                    raise InputError(
                        f"{key}/{name} has shape {list(tensor.shape)}, expected {list(shape)}",
                        where=self.root / shard["file"],
                    )
                out[name] = tensor
        return out
