"""E_p: NVILA-Lite's `mlp_downsample_3x3_fix` projector from vision features to LLM embeddings.

The (h, w) patch grid of each image is zero-padded at the bottom and right to multiples of 3,
each 3x3 block is folded into the channels (block order: row offset, then column offset, then
channel), and the result goes through LayerNorm(9C) -> Linear(9C, 3C) -> GELU -> LayerNorm(3C) ->
Linear(3C, H) -> GELU -> Linear(H, H). Tokens leave in row-major order of the (h/3, w/3) grid.
The module indices match the released checkpoints' `layers.<i>` keys (0 is the parameter-free
space-to-channel step).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def space_to_channel(x: torch.Tensor, height: int, width: int, block: int = 3) -> torch.Tensor:
    """(B, height*width, C) row-major patch tokens -> (B, ceil(h/b)*ceil(w/b), b*b*C)."""
    b, n, c = x.shape
    if n != height * width:
        raise ValueError(f"{n} tokens do not form a {height}x{width} grid")
    grid = x.reshape(b, height, width, c)
    pad_h, pad_w = (-height) % block, (-width) % block
    grid = F.pad(grid, (0, 0, 0, pad_w, 0, pad_h))
    rows, cols = (height + pad_h) // block, (width + pad_w) // block
    grid = grid.reshape(b, rows, block, cols, block, c).permute(0, 1, 3, 2, 4, 5)
    return grid.reshape(b, rows * cols, block * block * c)


class SpaceToChannel(nn.Module):
    def __init__(self, block: int = 3):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = math.isqrt(x.shape[1])
        return space_to_channel(x, side, side, self.block)


class DownsampleProjector(nn.Module):
    """E_p for square patch grids (as SigLIP gives), NVILA-Lite's layer layout."""

    def __init__(self, vision_width: int, llm_width: int, block: int = 3):
        super().__init__()
        folded = block * block * vision_width
        self.block = block
        self.layers = nn.Sequential(
            SpaceToChannel(block),
            nn.LayerNorm(folded),
            nn.Linear(folded, 3 * vision_width),
            nn.GELU(),
            nn.LayerNorm(3 * vision_width),
            nn.Linear(3 * vision_width, llm_width),
            nn.GELU(),
            nn.Linear(llm_width, llm_width),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, P, C) vision tokens -> (B, T, H) LLM embeddings."""
        return self.layers(features)
