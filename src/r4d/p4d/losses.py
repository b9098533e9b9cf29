"""L_LD (eq. 6) and L_ED (eq. 7), with the distances and depth space a recipe names.

Both sum a per-frame distance over frames, as the equations do; the per-frame distance is the
mean over that frame's tokens and channels (L_LD: over every hook's latent too), and the
result is averaged over the batch. L_ED compares the teacher's heads D_m applied to the
student's latents (P^_m) with the teacher's own maps P_m; depth pixels the teacher marks
invalid (0, the world's sky in the oracle's maps) are left out. When the teacher's motion map is
a 0/1 mask (the oracle) rather than logits, the student's logits pass through a sigmoid first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from r4d.p4d.recipes import P4DRecipe


def distance(kind: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise distance: Smooth-L1 (beta 1) or squared error."""
    if kind == "smooth_l1":
        return F.smooth_l1_loss(a, b, reduction="none", beta=1.0)
    if kind == "mse":
        return (a - b) ** 2
    raise ValueError(f"unknown distance {kind!r}")


def latent_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], kind: str):
    """L_LD: hooks x (B, N', h, w, D) each -> sum over N' of the per-frame mean distance."""
    d = torch.stack(
        [distance(kind, s, t.to(s.dtype)) for s, t in zip(student, teacher, strict=True)]
    )
    per_frame = d.mean(dim=(0, 3, 4, 5))  # (B, N')
    return per_frame.sum(1).mean()


def explicit_loss(
    student: dict[str, torch.Tensor],
    teacher: dict[str, torch.Tensor],
    recipe: P4DRecipe,
    motion_is_mask: bool = False,
):
    """L_ED = sum_m lambda_m sum_n Delta_m(P_m, P^_m); returns (total, {m: unweighted term})."""
    parts = {}
    for m in recipe.modalities:
        pred, true = student[m], teacher[m].to(student[m].dtype)
        keep = torch.ones_like(true, dtype=torch.bool)
        if m == "depth":
            keep = true > 0
            if recipe.depth_space == "log":
                pred, true = torch.log(pred + 1e-8), torch.log(true.clamp_min(0) + 1e-8)
        if m == "motion" and motion_is_mask:
            pred = torch.sigmoid(pred)
        d = distance(recipe.ed_distance, pred, true) * keep
        per_frame = d.sum(dim=(1, 3, 4)) / keep.sum(dim=(1, 3, 4)).clamp_min(1)  # (B, T)
        parts[m] = per_frame.sum(1).mean()
    total = sum(recipe.lambdas[m] * v for m, v in parts.items())
    return total, parts
