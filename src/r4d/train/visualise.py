"""Fig. 5-style pictures: what the student's latents decode to, beside the teacher's maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from r4d.io.atomic import atomic_path
from r4d.teacher.cache import TeacherSignals
from r4d.world.sheet import depth_image, flow_image

SIGNALS = ("depth", "flow", "motion")


def _motion(x: torch.Tensor, is_logits: bool) -> np.ndarray:
    p = torch.sigmoid(x) if is_logits else x
    return np.repeat((p.clamp(0, 1) * 255).byte().numpy()[..., None], 3, -1)


@torch.no_grad()
def decoded_png(
    model, batch: dict, signals: TeacherSignals, path: Path, frames=(3, 8, 13), truth=None
) -> None:
    """For the first sample with teacher signals: rows are frames; per signal in SIGNALS, the
    student's P_m decoded by D_m from its latents (S), the teacher's P_m (T) and, when `truth`
    (that sample's exact maps, r4d.teacher.data.exact_maps) is given, the world's (W)."""
    out = model.student(
        batch["input_ids"],
        batch["attention_mask"],
        batch.get("pixel_values"),
        batch["visual_times"],
        regions=batch.get("regions"),
        output_hidden_states=True,
        features=batch.get("features"),
    )
    has = signals.has
    first = int(has.nonzero()[0])
    latents = model.student_latents(
        out.hidden_states[-1][first : first + 1], out.visual_mask[first : first + 1]
    )
    mine = model.heads.decode([x.float() for x in latents], SIGNALS)
    index = int(has[: first + 1].sum()) - 1
    sources = {"S": {k: v[0] for k, v in mine.items()}}
    sources["T"] = {k: v[index] for k, v in signals.maps.items()}
    if truth is not None:
        sources["W"] = truth
    logits = {
        "S": True,
        "T": signals.motion_is_logits,
        "W": False,
    }
    labels = [f"{signal} {who}" for signal in SIGNALS for who in sources]
    rows = []
    for t in frames:
        reference = sources["W" if truth is not None else "T"]["flow"]
        flow_t = reference[:, t].permute(1, 2, 0).float().cpu().numpy()
        top = max(float(np.percentile(np.linalg.norm(flow_t, axis=-1), 99)), 1e-3)
        row = []
        for signal in SIGNALS:
            for who, maps in sources.items():
                x = maps[signal].float().cpu()
                if signal == "depth":
                    row.append(depth_image(x[0, t].numpy()))
                elif signal == "flow":
                    row.append(flow_image(x[:, t].permute(1, 2, 0).numpy(), top))
                else:
                    row.append(_motion(x[0, t], logits[who]))
        rows.append(row)
    size, pad, head = rows[0][0].shape[0], 2, 12
    sheet = Image.new("RGB", (len(labels) * (size + pad), head + len(rows) * (size + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(labels):
        draw.text((c * (size + pad), 0), label, fill=(0, 0, 0))
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            sheet.paste(Image.fromarray(tile), (c * (size + pad), head + r * (size + pad)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
