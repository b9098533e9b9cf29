"""Weight files: a safetensors file read whole or by its header, and strict loading (every
parameter filled at its shape, nothing left over, or an error naming the keys at fault)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from r4d.errors import InputError


def unreadable_weights(path: Path, err: Exception) -> InputError:
    reason = err.strerror if isinstance(err, OSError) else str(err).splitlines()[0]
    return InputError(
        f"not a readable safetensors file ({reason}): truncated, or not written by r4d",
        where=path,
    )


def read_weights(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file; a missing, truncated or foreign file is an
    InputError naming it (safetensors never unpickles)."""
    path = Path(path)
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError) as err:
        raise unreadable_weights(path, err) from None


def weight_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape, from the file's header alone (no tensor is read)."""
    path = Path(path)
    try:
        with safe_open(str(path), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as err:
        raise unreadable_weights(path, err) from None


def check_shapes(
    module: nn.Module, shapes: dict[str, tuple[int, ...]], where: str | Path | None = None
) -> None:
    """Refuse tensors that do not fit `module` (another model's, or the same model at another
    size), naming the first keys at fault. Keys `shapes` lacks are left to `load_strict` (a
    checkpoint may store a tied weight once)."""
    wanted = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    wrong = [
        f"{k} {list(s)}, the model's {list(wanted[k])}"
        for k, s in shapes.items()
        if k in wanted and tuple(s) != wanted[k]
    ]
    unexpected = sorted(set(shapes) - set(wanted))
    parts = []
    if wrong:
        parts.append(f"{len(wrong)} tensor(s) of another shape ({'; '.join(wrong[:2])})")
    if unexpected:
        parts.append(f"{len(unexpected)} the model lacks ({', '.join(unexpected[:3])})")
    if parts:
        raise InputError("weights of another model: " + "; ".join(parts), where=where)


def load_strict(
    module: nn.Module, state: dict[str, torch.Tensor], where: str | Path | None = None
) -> None:
    """Load `state` into `module`; a tensor of another shape, a missing or an unexpected key
    raises InputError at `where`."""
    check_shapes(module, {k: tuple(v.shape) for k, v in state.items()}, where)
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(
            f"weights do not fit the model: missing {missing[:4]} ({len(missing)}), "
            f"unexpected {unexpected[:4]} ({len(unexpected)})",
            where=where,
        )
