"""D_m: one DPT head per modality with 3D convolutions, laid out as L4P's heads are.

Module names follow the released L4P heads (`act_postprocess.<k>`, `scratch.layer<k>_rn`,
`scratch.refinenet<k>.resConfUnit<1|2>.conv<1|2>`, `.out_conv`, `head1`, `head2`), so real
weights load by name. For hook k (B, D, T', h, w):
- `act_postprocess.k`: a 1x1x1 projection to channels[k], then resampling by 2^f per axis
  (t, h, w) for the branch's factors f: a transposed 3D conv for f >= 0, identity for all 0,
  a stride-2 3x3x3 conv for all -1. L4P's dense heads: (1,2,2), (1,1,1), (0,0,0), (-1,-1,-1),
  with refinenet1..4 upsampling by (0,1,1), (0,1,1), (1,1,1), (1,1,1) (log2).
- `scratch.layer<k+1>_rn`: a 3x3x3 conv to the fused width.
- `scratch.refinenet4..1`: fusion from the coarsest branch up; each adds its refined branch
  (resConfUnit1), refines (resConfUnit2), upsamples trilinearly by its factor, and mixes
  (out_conv). refinenet4 has no branch to add (its resConfUnit1 is unused, as in L4P).
- `head1` (3x3x3 conv to half width), a trilinear resize to the output size, `head2` (3x3x3
  conv, ReLU, 1x1x1 conv to the output channels).
The camray head uses factors (1,0,0), (1,0,0), (0,0,0), (-1,-1,-1), refinenets (0,0,0),
(0,0,0), (1,0,0), (1,1,1), and ends at (T, h, w).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GRID_BRANCHES = ((1, 0, 0), (1, 0, 0), (0, 0, 0), (-1, -1, -1))  # log2 factors (t, h, w)
GRID_FUSION = ((0, 0, 0), (0, 0, 0), (1, 0, 0), (1, 1, 1))  # refinenet1..4


def _resample(channels: int, factors) -> nn.Module:
    if all(f == 0 for f in factors):
        return nn.Identity()
    if all(f == -1 for f in factors):
        return nn.Conv3d(channels, channels, 3, stride=2, padding=1)
    if all(f >= 0 for f in factors):
        scale = tuple(2**f for f in factors)
        return nn.ConvTranspose3d(channels, channels, scale, stride=scale)
    raise ValueError(f"unsupported resampling factors {factors}")


class ResidualConvUnit(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv3d(width, width, 3, padding=1)
        self.conv2 = nn.Conv3d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    def __init__(self, width: int, factors):
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(width)
        self.resConfUnit2 = ResidualConvUnit(width)
        self.out_conv = nn.Conv3d(width, width, 1)
        self.scale = tuple(2**f for f in factors)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if self.scale != (1, 1, 1):
            x = F.interpolate(x, scale_factor=self.scale, mode="trilinear", align_corners=True)
        return self.out_conv(x)


class Scratch(nn.Module):
    """L4P's `scratch`: the branch-to-fusion convs and the four refinenets."""

    def __init__(self, channels: list[int], fusion: int, scales):
        super().__init__()
        for k, c in enumerate(channels, start=1):
            setattr(self, f"layer{k}_rn", nn.Conv3d(c, fusion, 3, padding=1, bias=False))
        for k, scale in enumerate(scales, start=1):
            setattr(self, f"refinenet{k}", FusionBlock(fusion, scale))

    def forward(self, branches: list[torch.Tensor]) -> torch.Tensor:
        feats = [getattr(self, f"layer{k}_rn")(x) for k, x in enumerate(branches, start=1)]
        path = self.refinenet4(feats[3])
        path = self.refinenet3(path, feats[2])
        path = self.refinenet2(path, feats[1])
        return self.refinenet1(path, feats[0])


class DPTHead3D(nn.Module):
    def __init__(
        self,
        width: int,
        channels: list[int],
        fusion: int,
        out_channels: int,
        branches=GRID_BRANCHES,
        scales=GRID_FUSION,
    ):
        """branches / scales: log2 resampling (t, h, w) of the hook branches and refinenet1..4;
        the defaults are L4P's camray head's, the dense heads' come from the config."""
        super().__init__()
        self.act_postprocess = nn.ModuleList(
            nn.Sequential(nn.Conv3d(width, c, 1), _resample(c, f))
            for c, f in zip(channels, branches, strict=True)
        )
        self.scratch = Scratch(channels, fusion, scales)
        self.head1 = nn.Sequential(nn.Conv3d(fusion, fusion // 2, 3, padding=1))
        self.head2 = nn.Sequential(
            nn.Conv3d(fusion // 2, fusion // 2, 3, padding=1),
            nn.ReLU(),
            nn.Conv3d(fusion // 2, out_channels, 1),
        )

    def forward(self, hooks: list[torch.Tensor], size: tuple[int, int, int]) -> torch.Tensor:
        """hooks: (B, D, T', h, w) each -> (B, C, *size) with size = (T, H, W)."""
        branches = [post(x) for post, x in zip(self.act_postprocess, hooks, strict=True)]
        x = self.head1(self.scratch(branches))
        if tuple(x.shape[2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="trilinear", align_corners=True)
        return self.head2(x)
