"""D_4DP and Rearrange: from the LLM's last hidden states to latents shaped like F_4D (eq. 3).

`frame_latents` takes the last LLM layer's states at the visual positions of each video frame
(the SoM image, when present, comes first and is skipped) as per-frame token grids
(B, N, h, w, H). `rearrange` reduces time N -> N' (every other frame, or the mean of pairs)
and resizes each frame's grid bilinearly to the teacher's (h', w'). `PerceptionDecoder` (D_4DP)
maps each token to one latent per teacher hook: the paper's 3-layer MLP (Xavier weights, zero
biases, GELU) whose output is split across hooks, or the released code's one Linear per hook.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from r4d.p4d.recipes import P4DRecipe


def frame_latents(
    hidden: torch.Tensor, visual_mask: torch.Tensor, frames: int, grid: tuple[int, int]
) -> torch.Tensor:
    """(B, L, H) hidden states -> (B, N, h, w, H) for the last `frames` images of each sample."""
    per_image = grid[0] * grid[1]
    out = []
    for b in range(len(hidden)):
        states = hidden[b][visual_mask[b]]
        if len(states) < frames * per_image or len(states) % per_image:
            raise ValueError(
                f"sample {b} has {len(states)} visual states, not a multiple of "
                f"{per_image} covering {frames} frames"
            )
        out.append(states[-frames * per_image :].reshape(frames, *grid, -1))
    return torch.stack(out)


def rearrange(
    latents: torch.Tensor, target: tuple[int, int, int], time_reduce: str
) -> torch.Tensor:
    """(B, N, h, w, H) -> (B, N', h', w', H) for target (N', h', w')."""
    b, n, h, w, c = latents.shape
    steps, th, tw = target
    if n % steps:
        raise ValueError(f"cannot reduce {n} frames to {steps}")
    if time_reduce == "stride":
        latents = latents[:, :: n // steps]
    elif time_reduce == "mean":
        latents = latents.reshape(b, steps, n // steps, h, w, c).mean(2)
    else:
        raise ValueError(f"unknown time_reduce {time_reduce!r}")
    if (h, w) == (th, tw):
        return latents
    grid = latents.permute(0, 1, 4, 2, 3).reshape(b * steps, c, h, w)
    grid = F.interpolate(grid, size=(th, tw), mode="bilinear", align_corners=False)
    return grid.reshape(b, steps, c, th, tw).permute(0, 1, 3, 4, 2)


class PerceptionDecoder(nn.Module):
    """D_4DP: (B, N', h', w', H) -> one (B, N', h', w', D) latent per teacher hook."""

    def __init__(self, recipe: P4DRecipe, llm_width: int, teacher_width: int, hooks: int):
        super().__init__()
        self.hooks, self.width = hooks, teacher_width
        if recipe.decoder == "mlp":
            hidden = recipe.decoder_hidden
            self.mlp = nn.Sequential(
                nn.Linear(llm_width, hidden),
                nn.GELU(),
                nn.Linear(hidden, hidden),
                nn.GELU(),
                nn.Linear(hidden, hooks * teacher_width),
            )
            for layer in self.mlp:
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.zeros_(layer.bias)
        elif recipe.decoder == "linear":
            self.per_hook = nn.ModuleList(nn.Linear(llm_width, teacher_width) for _ in range(hooks))
            for layer in self.per_hook:
                nn.init.normal_(layer.weight, std=recipe.decoder_init_std)
                nn.init.zeros_(layer.bias)
        else:
            raise ValueError(f"unknown decoder {recipe.decoder!r}")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if hasattr(self, "mlp"):
            return list(self.mlp(x).split(self.width, dim=-1))
        return [layer(x) for layer in self.per_hook]
