"""A run folder's identity, so that a rerun resumes only the run it is.

`manifest.json` (schema `r4d.run/1`), beside a run's results (`r4d eval`, `r4d train`), holds
- `identity`: what the results depend on (the command's kind, its resolved settings, the
  identities of its inputs), compared on every rerun;
- `record`: what is noted but may change between reruns (where the inputs were, how many
  items were asked for, bookkeeping cadence, the code version: r4d's version and git commit,
  the creation time), never compared.

`check_or_write(folder, identity)`: a folder with no manifest is a fresh run, and gets one; a
manifest with the same identity is resumed, and left as it was first written; another identity
is refused with an `InputError` that names every field that differs, with both values, and how
to start fresh (`--overwrite`) or elsewhere (another `--out`). With `overwrite` the folder's
previous results are deleted first: everything in it when it has a manifest (r4d made it), or
only r4d's own names (`own`) when it has none.

Inputs are named by content, not by path (a moved folder is the same input): `file_identity` is
a file's sha256 (a file over `SAMPLED_BYTES` is sampled), `folder_identity` every file's.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import r4d
from r4d.errors import InputError
from r4d.io.atomic import remove_temporaries, write_text

SCHEMA = "r4d.run/1"
MANIFEST = "manifest.json"
# Files larger than this are identified by their size, their first 1 MiB (a safetensors file's
# header: every tensor's name, dtype, shape and offsets) and 64 evenly spaced 64 KiB blocks: a
# retrained checkpoint changes nearly every byte, and a 16 GiB folder is not read whole.
SAMPLED_BYTES = 256 << 20
_SHOWN = 6  # differing fields named in a refusal; the rest are counted


@dataclass
class Identity:
    """What made a run (`compared`: a rerun must match it) and what is only noted
    (`recorded`)."""

    compared: dict[str, Any]
    recorded: dict[str, Any] = field(default_factory=dict)


def file_identity(path: str | Path) -> str:
    """`sha256:<hex>` of a file's bytes, or `sampled-sha256:<hex>` over a file larger than
    SAMPLED_BYTES (its size, first MiB and 64 blocks spread over it)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            if size <= SAMPLED_BYTES:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
                return f"sha256:{digest.hexdigest()}"
            digest.update(str(size).encode())
            digest.update(f.read(1 << 20))
            for k in range(64):
                f.seek((size - (64 << 10)) * k // 63)
                digest.update(f.read(64 << 10))
    except OSError as err:
        raise InputError(f"cannot read ({err.strerror})", where=path) from None
    return f"sampled-sha256:{digest.hexdigest()}"


def folder_identity(folder: str | Path, pattern: str = "**/*") -> dict[str, str]:
    """{relative path: `file_identity`} of the files under `folder` matching `pattern`; hidden
    names (locks, temporaries) are left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("no such folder", where=folder)
    files = sorted(
        p
        for p in folder.glob(pattern)
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    return {str(p.relative_to(folder)): file_identity(p) for p in files}


def code_version() -> dict[str, str | None]:
    """r4d's version and, when it runs from a git checkout, the commit (recorded only)."""
    commit = None
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(r4d.__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if done.returncode == 0:
            commit = done.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"r4d": r4d.__version__, "git": commit}


def _plain(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists), so a stored identity and a
    fresh one compare equal."""
    return json.loads(json.dumps(value))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
        out = {}
        for i, inner in enumerate(value):
            out.update(_flatten(inner, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


_ABSENT = object()


def differences(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """(dotted field, old value, new value) for every leaf that differs (a field one side lacks
    is shown "(absent)")."""
    a, b = _flatten(_plain(old)), _flatten(_plain(new))
    return [
        (key, a.get(key, _ABSENT), b.get(key, _ABSENT))
        for key in sorted(set(a) | set(b))
        if a.get(key, _ABSENT) != b.get(key, _ABSENT)
    ]


def _shown(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    text = json.dumps(value)
    if isinstance(value, str) and value.startswith(("sha256:", "sampled-sha256:")):
        text = value.split(":")[0] + ":" + value.split(":")[1][:12]
    return text if len(text) <= 80 else text[:77] + "..."


def refusal(folder: str | Path, diffs: list[tuple[str, Any, Any]], what: str) -> InputError:
    """The error for a folder that holds another run: each differing field with both values
    (`what` names the previous run: "in the run", "in train_config.json")."""
    named = [f"{k}: {_shown(a)} ({what}) vs {_shown(b)} (now)" for k, a, b in diffs[:_SHOWN]]
    if len(diffs) > _SHOWN:
        named.append(f"and {len(diffs) - _SHOWN} more")
    return InputError(
        f"holds another run ({'; '.join(named)}); start fresh with --overwrite (deletes its "
        "results) or choose another --out",
        where=folder,
    )


def read_manifest(folder: str | Path) -> dict | None:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read the run's manifest ({err})", where=path) from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        found = manifest.get("schema") if isinstance(manifest, dict) else None
        raise InputError(
            f"schema {found!r}, expected {SCHEMA!r}; start fresh with --overwrite",
            where=path,
            field="schema",
        )
    return manifest


def check(folder: str | Path, identity: Identity) -> bool:
    """True when `folder` holds this run (resume), False when it has no manifest; an
    InputError naming the differing fields when it holds another run. Writes nothing."""
    manifest = read_manifest(folder)
    if manifest is None:
        return False
    diffs = differences(manifest["identity"], identity.compared)
    if diffs:
        raise refusal(folder, diffs, "in the run")
    return True


def write(folder: str | Path, identity: Identity, own: tuple[str, ...] = ()) -> None:
    """Write a fresh run's manifest (the code version and the time are added to the record).
    Results of r4d's (`own`) already there were made before runs had manifests: they are
    resumed unchecked, which is said on stderr and recorded (`adopted`)."""
    folder = Path(folder)
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    record = {**identity.recorded, "code": code_version(), "created": now}
    found = sorted(name for name in own if (folder / name).exists())
    if found:
        record["adopted"] = found
        print(
            f"note: {folder} holds results from before runs had a manifest ({', '.join(found)}); "
            "they are resumed unchecked (--overwrite starts fresh)",
            file=sys.stderr,
        )
    manifest = {"schema": SCHEMA, "identity": identity.compared, "record": record}
    write_text(Path(folder) / MANIFEST, json.dumps(_plain(manifest), indent=1) + "\n")


def clear(folder: str | Path, own: tuple[str, ...]) -> None:
    """Delete a folder's previous results: everything in it (but the lock) when it has a
    manifest, else only the names in `own`; temporaries too."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    made_by_r4d = (folder / MANIFEST).is_file()
    for entry in folder.iterdir():
        if entry.name == ".lock" or not (made_by_r4d or entry.name in own):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    remove_temporaries(folder)


def check_or_write(
    folder: str | Path, identity: Identity, overwrite: bool = False, own: tuple[str, ...] = ()
) -> bool:
    """Resume (True) the run `folder` holds when it is this one, or start it (False: the
    manifest is written; with `overwrite`, after the previous results are deleted). Call it
    holding the folder's `exclusive_lock`."""
    if overwrite:
        clear(folder, own)
    elif check(folder, identity):
        return True
    Path(folder).mkdir(parents=True, exist_ok=True)
    write(folder, identity, own)
    return False
