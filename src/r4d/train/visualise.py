"""Fig. 5-style pictures: what the student's latents decode to, beside the teacher's maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from r4d.io.atomic import atomic_path
from r4d.world.sheet import depth_image, flow_image

COLUMNS = (
    "depth (student)",
    "depth (teacher)",
    "flow (student)",
    "flow (teacher)",
    "motion (student)",
    "motion (teacher)",
)


def _motion(x: torch.Tensor, is_logits: bool) -> np.ndarray:
    p = torch.sigmoid(x) if is_logits else x
    return np.repeat((p.clamp(0, 1) * 255).byte().numpy()[..., None], 3, -1)


@torch.no_grad()
def decoded_png(model, batch: dict, teacher: dict, has, path: Path, frames=(3, 8, 13)) -> None:
    """For the first sample with teacher signals: rows are frames, columns COLUMNS."""
    out = model.student(
        batch["input_ids"],
        batch["attention_mask"],
        batch["pixel_values"],
        batch["visual_times"],
        regions=batch.get("regions"),
        output_hidden_states=True,
    )
    first = int(has.nonzero()[0])
    latents = model.student_latents(
        out.hidden_states[-1][first : first + 1], out.visual_mask[first : first + 1]
    )
    mine = model.teacher.decode([x.float() for x in latents], ("depth", "flow", "motion"))
    index = int(has[: first + 1].sum()) - 1
    theirs = {k: v[index : index + 1] for k, v in teacher["maps"].items()}
    logits = bool((theirs["motion"] < 0).any() or (theirs["motion"] > 1).any())
    rows = []
    for t in frames:
        flow_t = theirs["flow"][0, :, t].permute(1, 2, 0).cpu().numpy()
        top = max(float(np.percentile(np.linalg.norm(flow_t, axis=-1), 99)), 1e-3)
        rows.append(
            [
                depth_image(mine["depth"][0, 0, t].float().cpu().numpy()),
                depth_image(theirs["depth"][0, 0, t].cpu().numpy()),
                flow_image(mine["flow"][0, :, t].permute(1, 2, 0).float().cpu().numpy(), top),
                flow_image(flow_t, top),
                _motion(mine["motion"][0, 0, t].float().cpu(), True),
                _motion(theirs["motion"][0, 0, t].cpu(), logits),
            ]
        )
    size, pad, head = rows[0][0].shape[0], 2, 12
    sheet = Image.new(
        "RGB", (len(COLUMNS) * (size + pad), head + len(rows) * (size + pad)), "white"
    )
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(COLUMNS):
        draw.text(
            (c * (size + pad), 0),
            label.split(" ")[0] + (" S" if "student" in label else " T"),
            fill=(0, 0, 0),
        )
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            sheet.paste(Image.fromarray(tile), (c * (size + pad), head + r * (size + pad)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
