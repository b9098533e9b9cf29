"""A resumable store of named tensors: checksummed safetensors shards and one JSON index a rank.

Under the store's root:
- `shard-r<rank>-<k>.safetensors`: the tensors of up to `shard_entries` entries, named
  `<key>/<field>`, float16;
- `index-r<rank>.json`: the store's schema, its `header` (what made the entries: a rebuild into
  the same folder must have the same header), per entry its metadata (`entries`), and per shard
  its keys, byte size and sha256.
Each process (rank) of a multi-process build writes only its own shards and index, so builds
need no coordination. Shards and indexes are written atomically and a shard enters the index
only once complete, so an interrupted build resumes by skipping indexed keys. The reader checks
each index's layout, opens one shard at a time (memory-mapped), checks its size and checksum on
first use (a truncated or altered shard is refused), checks the shape and finiteness (no NaN,
no inf) of every tensor it returns, and names the shard file and the entry at fault.

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
from r4d.io.atomic import atomic_path, match_umask, sha256_file, write_text


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


def _check_layout(index: dict, path: Path) -> None:
    """Refuse an index whose `entries` / `shards` are not what `ShardWriter` writes, naming the
    field: each shard a plain file name in the store's folder, its keys, byte size and sha256."""
    if not isinstance(index.get("header"), dict):
        raise InputError("expected an object", where=path, field="header")
    if not isinstance(index.get("entries"), dict):
        raise InputError("expected an object", where=path, field="entries")
    shards = index.get("shards")
    if not isinstance(shards, list):
        raise InputError("expected a list", where=path, field="shards")
    for i, shard in enumerate(shards):
        name = f"shards[{i}]"
        if not isinstance(shard, dict):
            raise InputError("expected an object", where=path, field=name)
        file = shard.get("file")
        if not isinstance(file, str) or not file or Path(file).name != file:
            raise InputError(
                f"expected a shard file name in the store's folder, got {file!r}",
                where=path,
                field=f"{name}.file",
            )
        keys = shard.get("keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise InputError("expected a list of keys", where=path, field=f"{name}.keys")
        size = shard.get("bytes")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InputError(
                f"expected a byte count, got {size!r}", where=path, field=f"{name}.bytes"
            )
        if not isinstance(shard.get("sha256"), str):
            raise InputError("expected a sha256 digest", where=path, field=f"{name}.sha256")


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
            match_umask(tmp)  # safetensors writes 0600
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
            _check_layout(index, path)
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

    def _open(self, shard: dict, key: str):
        path = self.root / shard["file"]
        if shard["file"] not in self.checked:
            if not path.is_file():
                raise InputError(f"shard listed in the index (for {key!r}) is missing", where=path)
            size = path.stat().st_size
            if size != shard["bytes"]:
                raise InputError(
                    f"corrupt shard (reading {key!r}): {size} bytes, the index records "
                    f"{shard['bytes']} (truncated or rewritten)",
                    where=path,
                )
            if sha256_file(path) != shard["sha256"]:
                raise InputError(
                    f"corrupt shard (reading {key!r}): its sha256 differs from the index",
                    where=path,
                )
            self.checked.add(shard["file"])
        try:
            return safe_open(str(path), framework="pt")
        except SafetensorError as err:
            raise InputError(f"corrupt shard (reading {key!r}): {err}", where=path) from None

    def get(self, key: str, shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
        """The fields `shapes` names of one entry (float16), each checked to have its shape and
        only finite values."""
        if key not in self.where:
            raise InputError(f"{key!r} is not in the store", where=self.root)
        shard = self.where[key]
        path = self.root / shard["file"]
        out = {}
        with self._open(shard, key) as f:
            for name, shape in shapes.items():
                tensor_name = f"{key}/{name}"
                try:
                    tensor = f.get_tensor(tensor_name)
                except SafetensorError as err:
                    raise InputError(
                        f"corrupt shard (reading {tensor_name!r}): {err}", where=path
                    ) from None
                if list(tensor.shape) != list(shape):
                    raise InputError(
                        f"{tensor_name} has shape {list(tensor.shape)}, expected {list(shape)}",
                        where=path,
                    )
                bad = int(tensor.numel() - torch.isfinite(tensor).sum())
                if bad:
                    raise InputError(
                        f"{tensor_name} holds {bad} NaN or infinite values of "
                        f"{tensor.numel()} (expected finite numbers)",
                        where=path,
                    )
                out[name] = tensor
        return out
