"""The one error type for bad input: it names the file (or row) and the field at fault."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input the user must fix. `where` is a file path or row id; `field` a dotted path."""

    def __init__(self, message: str, *, where: str | Path | None = None, field: str | None = None):
        self.where = None if where is None else str(where)
        self.field = field
        self.reason = message
        parts = [p for p in (self.where, field) if p]
        super().__init__(": ".join([*parts, message]))
