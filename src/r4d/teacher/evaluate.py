"""How good is a teacher: its maps against the world's exact ones, beside trivial baselines.

Metrics over held-out clips (pooled over all their pixels):
- depth: AbsRel = mean |pred - true| / true and delta<1.25 = share with max(pred/true,
  true/pred) < 1.25, on valid (non-sky) pixels, metric (no median scaling: the world is
  metric and so is the teacher);
- flow: end-point error (pixels at the teacher's resolution), frames 1..T-1;
- motion: IoU of (logit > 0) with the true mask, as one dataset-level TP / (TP + FP + FN), so
  frames where both are empty add nothing and a prediction on a still frame counts against it;
- camray: the angle (degrees) between predicted and true ray directions (first 3 channels).
Baselines: the train split's mean depth everywhere, zero flow, an all-static mask, and the
train split's mean ray map. `evaluate_on_world` is the whole step (`r4d teacher eval`, and
`r4d reproduce`'s "teacher eval" stage): a world's splits in, the table, JSON and picture out.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from r4d.errors import InputError
from r4d.io.atomic import atomic_path, write_text
from r4d.teacher.data import Clip, load_clip, scene_folders
from r4d.world.sheet import depth_image, flow_image


class Metrics:
    """Accumulates the metric sums over clips."""

    def __init__(self):
        self.sums = {
            "absrel": 0.0,
            "delta": 0.0,
            "depth_n": 0,
            "epe": 0.0,
            "flow_n": 0,
            "tp": 0,
            "fp": 0,
            "fn": 0,
            "angle": 0.0,
            "ray_n": 0,
        }

    def add(self, pred: dict, true: dict) -> None:
        s = self.sums
        valid = true["depth"] > 0
        p, t = pred["depth"][valid].double(), true["depth"][valid].double()
        s["absrel"] += float(((p - t).abs() / t).sum())
        s["delta"] += float((torch.maximum(p / t, t / p) < 1.25).sum())
        s["depth_n"] += int(valid.sum())
        epe = torch.linalg.vector_norm(pred["flow"] - true["flow"], dim=1)[:, 1:]
        s["epe"] += float(epe.double().sum())
        s["flow_n"] += epe.numel()
        moving, said = true["motion"] > 0.5, pred["motion"] > 0
        s["tp"] += int((moving & said).sum())
        s["fp"] += int((~moving & said).sum())
        s["fn"] += int((moving & ~said).sum())
        d_pred = torch.nn.functional.normalize(pred["camray"][:, :3].double(), dim=1)
        d_true = torch.nn.functional.normalize(true["camray"][:, :3].double(), dim=1)
        cos = (d_pred * d_true).sum(1).clamp(-1, 1)
        s["angle"] += float(torch.rad2deg(torch.arccos(cos)).sum())
        s["ray_n"] += cos.numel()

    def result(self) -> dict[str, float]:
        s = self.sums
        union = s["tp"] + s["fp"] + s["fn"]
        return {
            "depth_absrel": s["absrel"] / max(s["depth_n"], 1),
            "depth_delta1": s["delta"] / max(s["depth_n"], 1),
            "flow_epe": s["epe"] / max(s["flow_n"], 1),
            "motion_iou": s["tp"] / union if union else 1.0,
            "camray_angle_deg": s["angle"] / max(s["ray_n"], 1),
        }


def baseline_maps(train: list[Clip]):
    """A function clip -> trivial predictions fitted on the train clips."""
    depths = torch.cat([c.maps["depth"][c.maps["depth"] > 0] for c in train])
    mean_depth = float(depths.mean())
    mean_rays = torch.stack([c.maps["camray"] for c in train]).mean(0)

    def predict(clip: Clip) -> dict[str, torch.Tensor]:
        m = clip.maps
        return {
            "depth": torch.full_like(m["depth"], mean_depth),
            "flow": torch.zeros_like(m["flow"]),
            "motion": torch.full_like(m["motion"], -1.0),
            "camray": mean_rays.clone(),
        }

    return predict


@torch.no_grad()
def evaluate(teacher, clips: list[Clip], train: list[Clip], batch: int = 4) -> dict[str, dict]:
    """{"teacher": metrics, "baseline": metrics} over `clips`."""
    teacher.eval()
    ours, base = Metrics(), Metrics()
    baseline = baseline_maps(train)
    for a in range(0, len(clips), batch):
        chunk = clips[a : a + batch]
        pred = teacher(torch.stack([c.video for c in chunk])).maps
        true = {k: torch.stack([c.maps[k] for c in chunk]) for k in chunk[0].maps}
        ours.add(pred, true)
        trivial = [baseline(c) for c in chunk]
        base.add({k: torch.stack([t[k] for t in trivial]) for k in trivial[0]}, true)
    return {"teacher": ours.result(), "baseline": base.result()}


def table(result: dict[str, dict]) -> str:
    rows = [
        ("depth AbsRel (lower is better)", "depth_absrel", "mean depth"),
        ("depth delta<1.25 (higher)", "depth_delta1", "mean depth"),
        ("flow EPE, px (lower)", "flow_epe", "zero flow"),
        ("motion IoU (higher)", "motion_iou", "all static"),
        ("camray angle, deg (lower)", "camray_angle_deg", "mean ray map"),
    ]
    lines = ["| metric | teacher | baseline | baseline is |", "|---|---:|---:|---|"]
    for label, key, what in rows:
        lines.append(
            f"| {label} | {result['teacher'][key]:.3f} | {result['baseline'][key]:.3f} | {what} |"
        )
    return "\n".join(lines)


@torch.no_grad()
def comparison_png(teacher, clips: list[Clip], path: str | Path, frames=(4, 10)) -> None:
    """Rows: a clip's frame; columns: RGB, depth true / predicted, flow true / predicted,
    motion true / predicted."""
    teacher.eval()
    tiles, labels = (
        [],
        ["rgb", "depth", "depth (teacher)", "flow", "flow (teacher)", "motion", "motion (teacher)"],
    )
    for clip in clips:
        pred = teacher(clip.video[None]).maps
        for t in frames:
            flow_true = clip.maps["flow"][:, t].permute(1, 2, 0).numpy()
            top = max(float(np.percentile(np.linalg.norm(flow_true, axis=-1), 99)), 1e-3)
            motion_pred = (torch.sigmoid(pred["motion"][0, 0, t]) * 255).byte().numpy()
            row = [
                (clip.video[t].permute(1, 2, 0).numpy() * 255).astype(np.uint8),
                depth_image(clip.maps["depth"][0, t].numpy()),
                depth_image(
                    np.where(
                        clip.maps["depth"][0, t].numpy() > 0, pred["depth"][0, 0, t].numpy(), 0
                    )
                ),
                flow_image(flow_true, top),
                flow_image(pred["flow"][0, :, t].permute(1, 2, 0).numpy(), top),
                np.repeat(
                    (clip.maps["motion"][0, t].numpy() * 255).astype(np.uint8)[..., None], 3, -1
                ),
                np.repeat(motion_pred[..., None], 3, -1),
            ]
            tiles.append(row)
    size, pad, head = tiles[0][0].shape[0], 2, 12
    sheet = Image.new(
        "RGB", (len(labels) * (size + pad), head + len(tiles) * (size + pad)), "white"
    )
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(labels):
        draw.text((c * (size + pad), 0), label, fill=(0, 0, 0))
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            sheet.paste(Image.fromarray(tile), (c * (size + pad), head + r * (size + pad)))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")


def evaluate_on_world(
    teacher,
    world: str | Path,
    out: str | Path,
    test_limit: int | None = None,
    train_limit: int | None = None,
    figure_clips: int = 3,
) -> dict[str, dict]:
    """`evaluate` a Teacher on the world's test-split scenes (at most `test_limit`), the
    baselines fitted on its train split (at most `train_limit`); writes OUT/teacher_eval.md,
    .json and .png (the first `figure_clips` clips) and returns the metrics."""
    out = Path(out)
    for split in ("test", "train"):
        if not scene_folders(world, split):
            raise InputError(f"no {split}-split scenes to evaluate the teacher on", where=world)
    test = [load_clip(f, teacher.config) for f in scene_folders(world, "test")[:test_limit]]
    train = [load_clip(f, teacher.config) for f in scene_folders(world, "train")[:train_limit]]
    result = evaluate(teacher, test, train)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "teacher_eval.md", f"{len(test)} held-out scenes\n\n{table(result)}\n")
    write_text(out / "teacher_eval.json", json.dumps(result, indent=1) + "\n")
    comparison_png(teacher, test[:figure_clips], out / "teacher_eval.png")
    return result
