"""Strict weight loading: every parameter filled, nothing left over, or an error naming both."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from r4d.errors import InputError


def load_strict(
    module: nn.Module, state: dict[str, torch.Tensor], where: str | Path | None = None
) -> None:
    """Load `state` into `module`; missing or unexpected keys raise InputError at `where`."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(
            f"weights do not fit the model: missing {missing[:4]} ({len(missing)}), "
            f"unexpected {unexpected[:4]} ({len(unexpected)})",
            where=where,
        )
