"""Atomic writes: a reader sees the old file (or none) or the whole new one, never a part.

Everything is written to a temporary sibling and renamed into place (POSIX rename is atomic
within a file system). A temporary is named `.<name>.tmp-<pid>-<random>`, so those left by a
killed process are easy to recognise; a long job holds `exclusive_lock` on its folder and
removes them before it starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def match_umask(folder: str | Path) -> None:
    """Give every file and folder under `folder` the mode a plain open / mkdir would (0644 /
    0755 under the usual umask), for writers that create them private (Accelerate's
    `save_state` writes 0600 files)."""
    mask = _umask()
    for path in [Path(folder), *Path(folder).rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def _temp_sibling(path: Path, directory: bool) -> Path:
    """A new temporary next to `path`, with the permissions a plain open/mkdir would give."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp-{os.getpid()}-"
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
        tmp.chmod(0o777 & ~_umask())
        return tmp
    fd, name = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_umask())
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    tmp = _temp_sibling(path, directory=False)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """Hard-link (or, across file systems, copy) a finished file to `dst`, atomically; an
    existing `dst` is kept."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            tmp.write_bytes(src.read_bytes())


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that becomes `path` on success (which must not exist yet).

    If another process finished `path` first, the new one is discarded and `path` kept.
    """
    path = Path(path)
    tmp = _temp_sibling(path, directory=True)
    try:
        yield tmp
        try:
            os.rename(tmp, path)
        except OSError:
            if not path.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file's bytes, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_temporaries(directory: str | Path, names: str = "*") -> int:
    """Delete the temporaries in `directory` (of the files matching the glob `names` only);
    returns how many. Call it only while holding the `exclusive_lock` that covers them, when no
    other writer of theirs can be at work."""
    removed = 0
    for entry in Path(directory).glob(f".{names}.tmp-*"):
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    return removed


class LockedError(RuntimeError):
    """Another process holds the folder's lock."""


@contextlib.contextmanager
def exclusive_lock(directory: str | Path, what: str = "job", name: str = ".lock") -> Iterator[None]:
    """Hold `directory/<name>` (an advisory flock that dies with its process) for one writer;
    writers of disjoint files in one folder (a cache's ranks) each hold their own `name`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lock = directory / name
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(f"{directory}: another {what} is writing here") from None
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
