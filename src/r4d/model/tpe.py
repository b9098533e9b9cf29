"""TPE: timestamp positional encoding (paper eq. 5), added to a frame's E_v tokens before E_p.

p[2i] = sin(t / T^(2i/D)), p[2i+1] = cos(t / T^(2i/D)), T = 10000, t = the frame's timestamp in
seconds, D = the vision feature width. No learned parameters: the same timestamp always adds the
same vector, so the student sees absolute time whatever the frame rate or sampling.
"""

from __future__ import annotations

import torch

TPE_BASE = 10000.0


def timestamp_encoding(times: torch.Tensor, dim: int, base: float = TPE_BASE) -> torch.Tensor:
    """(..., dim) encodings of timestamps `times` (...) in seconds; dim must be even."""
    if dim % 2:
        raise ValueError(f"TPE needs an even feature width, got {dim}")
    i = torch.arange(dim // 2, dtype=torch.float64, device=times.device)
    freq = base ** (-2.0 * i / dim)
    angle = times.to(torch.float64)[..., None] * freq
    out = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).flatten(-2)
    return out.to(torch.float32)
