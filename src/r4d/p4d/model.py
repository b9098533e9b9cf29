"""The training-time model: the student, the training-only D_4DP, and the teacher's frozen D_m.

`P4DModel.forward` returns L = L_SFT + alpha L_LD + beta L_ED (eq. A8) and its parts. The
student's last-layer states at the video frames' visual positions are rearranged to the teacher
grid and decoded by D_4DP into F^_4D (eq. 3); L_LD compares F^_4D with the teacher's F_4D
(eq. 6); the teacher's heads decode F^_4D into P^_m (eq. 4) and L_ED compares them with the
teacher's P_m (eq. 7). Samples without teacher signals (`has_teacher` False) train on L_SFT only.
The 4D-Concat / 4D-PE baselines (student config `fusion`) instead feed F_4D into the student
(`fused`) and train on L_SFT. At inference only `student` remains (`r4d.train.export`): D_4DP
and D_m are dropped.
"""

from __future__ import annotations

import torch
from torch import nn

from r4d.errors import InputError
from r4d.model.modeling import R4DStudent, fused_latents
from r4d.p4d.decoder import PerceptionDecoder, frame_latents, rearrange
from r4d.p4d.losses import explicit_loss, latent_loss
from r4d.p4d.recipes import P4DRecipe
from r4d.teacher.config import TeacherConfig


class P4DModel(nn.Module):
    def __init__(
        self,
        student: R4DStudent,
        recipe: P4DRecipe,
        teacher_config: TeacherConfig,
        teacher_heads: nn.Module | None = None,
        frames: int = 16,
    ):
        """`teacher_heads`: a Teacher whose `decode` gives P^_m (frozen here); needed when the
        recipe has L_ED."""
        super().__init__()
        self.student, self.recipe, self.frames = student, recipe, frames
        self.teacher_grid = teacher_config.grid
        side = -(-student.config.patch_side // student.config.downsample)
        self.student_grid = (side, side)
        self.decoder = None
        if recipe.distils:
            self.decoder = PerceptionDecoder(
                recipe,
                student.config.llm["hidden_size"],
                teacher_config.width,
                len(teacher_config.hooks),
            )
        self.teacher = None
        if recipe.beta > 0 and recipe.modalities:
            if teacher_heads is None:
                raise InputError(
                    f"recipe {recipe.name!r} has L_ED: the teacher's heads "
                    "(a teacher folder) must decode the student's latents",
                    field="teacher.heads",
                )
            self.teacher = teacher_heads.eval().requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # frozen: no dropout or batch statistics change
        return self

    def student_latents(self, hidden, visual_mask) -> list[torch.Tensor]:
        """F^_4D: D_4DP(Rearrange(last hidden states at the frames' visual positions))."""
        grid = frame_latents(hidden, visual_mask, self.frames, self.student_grid)
        return self.decoder(rearrange(grid, self.teacher_grid, self.recipe.time_reduce))

    def fused(self, batch: dict, teacher: dict | None) -> torch.Tensor | None:
        """F_4D (the deepest hook) on every image's patch grid, for 4D-Concat / 4D-PE."""
        config = self.student.config
        if config.fusion == "none":
            return None
        if teacher is None or len(teacher["latents"][-1]) != len(batch["input_ids"]):
            raise InputError(
                f"the {config.fusion} baseline needs F_4D for every sample", field="teacher.cache"
            )
        slots = (batch["input_ids"] == config.visual_token_id).sum(1)
        images = (slots // config.tokens_per_image).tolist()
        return fused_latents(teacher["latents"][-1], images, self.frames, config.patch_side)

    def forward(
        self,
        batch: dict,
        teacher: dict | None = None,
        has_teacher=None,
        motion_is_mask: bool = False,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`teacher`: {"latents": [hooks x (b, T', h, w, D)], "maps": {m: (b, ...)}} for the
        b samples where `has_teacher` (B,) is True."""
        out = self.student(
            batch["input_ids"],
            batch["attention_mask"],
            batch["pixel_values"],
            batch["visual_times"],
            labels=batch["labels"],
            regions=batch.get("regions"),
            output_hidden_states=self.decoder is not None,
            fused=self.fused(batch, teacher),
        )
        parts = {"sft": out.loss}
        loss = out.loss
        if self.decoder is not None and teacher is not None and bool(has_teacher.any()):
            hidden = out.hidden_states[-1][has_teacher]
            latents = self.student_latents(hidden, out.visual_mask[has_teacher])
            if self.recipe.alpha > 0:
                parts["ld"] = latent_loss(latents, teacher["latents"], self.recipe.ld_distance)
                loss = loss + self.recipe.alpha * parts["ld"]
            if self.teacher is not None:
                decoded = self.teacher.decode(latents, self.recipe.modalities)
                ed, per_modality = explicit_loss(
                    decoded, teacher["maps"], self.recipe, motion_is_mask
                )
                parts["ed"] = ed
                parts.update({f"ed_{m}": v for m, v in per_modality.items()})
                loss = loss + self.recipe.beta * ed
        return loss, parts
