"""The training-time model: the student, the training-only D_4DP, and the teacher's frozen D_m.

`P4DModel.forward` returns L = L_SFT + alpha L_LD + beta L_ED (eq. A8) and its parts. The
student's last-layer states at the video frames' visual positions are rearranged to the teacher
grid and decoded by D_4DP into F^_4D (eq. 3); L_LD compares F^_4D with the teacher's F_4D
(eq. 6); the teacher's frozen heads D_m (`TeacherHeads`, without E_4D) decode F^_4D into P^_m
(eq. 4) and L_ED compares them with the teacher's P_m (eq. 7). The teacher's side arrives as
`TeacherSignals` from the cache; samples without signals (`signals.has` False) train on L_SFT
only. The 4D-Concat / 4D-PE baselines (student config `fusion`) instead feed F_4D into the
student (`fused`) and train on L_SFT. At inference only `student` remains
(`r4d.train.export`): D_4DP and D_m are dropped.
"""

from __future__ import annotations

import torch
from torch import nn

from r4d.errors import InputError
from r4d.model.modeling import R4DStudent, fused_latents
from r4d.p4d.decoder import PerceptionDecoder, frame_latents, rearrange
from r4d.p4d.losses import explicit_loss, latent_loss
from r4d.p4d.recipes import P4DRecipe
from r4d.teacher.cache import TeacherSignals
from r4d.teacher.config import TeacherConfig
from r4d.teacher.model import TeacherHeads


class P4DModel(nn.Module):
    def __init__(
        self,
        student: R4DStudent,
        recipe: P4DRecipe,
        teacher_config: TeacherConfig,
        heads: TeacherHeads | None = None,
        frames: int = 16,
    ):
        """`heads`: the teacher's D_m, whose `decode` gives P^_m (frozen here); needed when the
        recipe has L_ED."""
        super().__init__()
        self.student, self.recipe, self.frames = student, recipe, frames
        self.teacher_grid = teacher_config.grid
        self.decoder = None
        if recipe.distils:
            self.decoder = PerceptionDecoder(
                recipe,
                student.config.llm["hidden_size"],
                teacher_config.width,
                len(teacher_config.hooks),
            )
        self.heads = None
        if recipe.beta > 0 and recipe.modalities:
            if heads is None:
                raise InputError(
                    f"recipe {recipe.name!r} has L_ED: the teacher's heads "
                    "(a teacher folder) must decode the student's latents",
                    field="teacher.heads",
                )
            self.heads = heads.eval().requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.heads is not None:
            self.heads.eval()  # frozen: no dropout or batch statistics change
        return self

    def student_latents(self, hidden, visual_mask) -> list[torch.Tensor]:
        """F^_4D: D_4DP(Rearrange(last hidden states at the frames' visual positions))."""
        grid = frame_latents(hidden, visual_mask, self.frames, self.student.config.token_grid)
        return self.decoder(rearrange(grid, self.teacher_grid, self.recipe.time_reduce))

    def fused(self, batch: dict, signals: TeacherSignals | None) -> torch.Tensor | None:
        """F_4D (the deepest hook) on every image's patch grid, for 4D-Concat / 4D-PE."""
        config = self.student.config
        if config.fusion == "none":
            return None
        if signals is None or not signals.latents or not bool(signals.has.all()):
            raise InputError(
                f"the {config.fusion} baseline needs F_4D for every sample", field="teacher.cache"
            )
        return fused_latents(
            signals.latents[-1],
            self.student.images_per_sample(batch["input_ids"]),
            self.frames,
            config.patch_side,
        )

    def forward(
        self, batch: dict, signals: TeacherSignals | None = None, num_items_in_batch=None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss and its parts for a collated batch and its samples' `TeacherSignals`
        (`num_items_in_batch`: see `R4DStudent.forward`)."""
        out = self.student(
            batch["input_ids"],
            batch["attention_mask"],
            batch.get("pixel_values"),
            batch["visual_times"],
            labels=batch["labels"],
            regions=batch.get("regions"),
            output_hidden_states=self.decoder is not None,
            fused=self.fused(batch, signals),
            features=batch.get("features"),
            num_items_in_batch=num_items_in_batch,
        )
        parts = {"sft": out.loss}
        loss = out.loss
        if self.decoder is not None and signals is not None and signals.any:
            has = signals.has
            latents = self.student_latents(out.hidden_states[-1][has], out.visual_mask[has])
            if self.recipe.alpha > 0:
                parts["ld"] = latent_loss(latents, signals.latents, self.recipe.ld_distance)
                loss = loss + self.recipe.alpha * parts["ld"]
            if self.heads is not None:
                decoded = self.heads.decode(latents, self.recipe.modalities)
                ed, per_modality = explicit_loss(
                    decoded, signals.maps, self.recipe, not signals.motion_is_logits
                )
                parts["ed"] = ed
                parts.update({f"ed_{m}": v for m, v in per_modality.items()})
                loss = loss + self.recipe.beta * ed
        return loss, parts
