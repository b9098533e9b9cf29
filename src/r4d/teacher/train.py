"""Training the tiny teacher on the world's exact maps (`r4d teacher train`), resumably.

Losses, per batch of clips:
- depth: scale-invariant log loss on valid pixels, mean(d^2) - 0.85 mean(d)^2 with
  d = log(pred) - log(true) (the 0.15 share of the mean keeps the metric scale);
- flow: end-point error (pixels) over frames 1..T-1 (frame 0 has no previous frame);
- motion: binary cross-entropy on the logits, moving pixels weighted MOTION_POS_WEIGHT;
- camray: L1 on the six Plucker channels.
The total weighs them by `TrainSettings.weights`. Training runs the student's loop
(`r4d.train.loop.fit`: the same DataLoader stream, checkpoint format `OUT/checkpoints/step-N/`
and resume), so a rerun continues from the latest checkpoint and ends with the same weights as
an uninterrupted run; `OUT/teacher/` and `OUT/train.json` appear at the end.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from r4d.io.atomic import write_text
from r4d.teacher.config import PRESETS
from r4d.teacher.data import Clip, load_clip, scene_folders
from r4d.teacher.model import Teacher
from r4d.train.loop import LoopSettings, fit, make_accelerator

MOTION_POS_WEIGHT = 4.0
SILOG_LAMBDA = 0.85


@dataclass
class TrainSettings:
    preset: str = "tiny"
    steps: int = 2000
    batch_size: int = 4
    lr: float = 3e-4
    warmup: int = 100
    weight_decay: float = 0.05
    seed: int = 0
    checkpoint_every: int = 200
    weights: dict[str, float] = field(
        default_factory=lambda: {"depth": 1.0, "flow": 0.1, "motion": 1.0, "camray": 1.0}
    )


def teacher_losses(pred: dict, true: dict) -> dict[str, torch.Tensor]:
    """One scalar per modality present in both (see the module docstring)."""
    out = {}
    if "depth" in pred:
        valid = true["depth"] > 0
        d = torch.log(pred["depth"][valid].clamp_min(1e-6)) - torch.log(true["depth"][valid])
        out["depth"] = (d**2).mean() - SILOG_LAMBDA * d.mean() ** 2
    if "flow" in pred:
        out["flow"] = torch.linalg.vector_norm(pred["flow"] - true["flow"], dim=1)[:, 1:].mean()
    if "motion" in pred:
        weight = torch.tensor(MOTION_POS_WEIGHT)
        out["motion"] = F.binary_cross_entropy_with_logits(
            pred["motion"], true["motion"], pos_weight=weight
        )
    if "camray" in pred:
        out["camray"] = F.l1_loss(pred["camray"], true["camray"])
    return out


def stack(clips: list[Clip]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    video = torch.stack([c.video for c in clips])
    maps = {k: torch.stack([c.maps[k] for c in clips]) for k in clips[0].maps}
    return video, maps


def train_teacher(
    world: str | Path,
    out: str | Path,
    settings: TrainSettings | None = None,
    progress: bool = True,
    clips: list[Clip] | None = None,
    stop_at: int | None = None,
) -> dict:
    """Train on the world's train-split scenes (or `clips`); returns the summary written to
    `out`. `stop_at` ends this run early, after that step's checkpoint, as an interruption
    would (the schedule still spans `settings.steps`)."""
    settings = settings or TrainSettings()
    out = Path(out)
    config = PRESETS[settings.preset]()
    if clips is None:
        folders = scene_folders(world, "train")
        clips = [load_clip(f, config) for f in tqdm(folders, desc="clips", disable=not progress)]
    accelerator = make_accelerator()
    set_seed(settings.seed)
    model = Teacher(config)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    schedule = get_cosine_schedule_with_warmup(optimiser, settings.warmup, settings.steps)
    device = accelerator.device

    def loss_fn(model, batch):
        video, true = batch
        parts = teacher_losses(
            model(video.to(device)).maps, {k: v.to(device) for k, v in true.items()}
        )
        return sum(settings.weights[k] * v for k, v in parts.items()), parts

    def draw(rng, n):
        return rng.choice(len(clips), n, replace=False).tolist()

    loop = LoopSettings(
        steps=settings.steps,
        batch_size=settings.batch_size,
        seed=settings.seed,
        checkpoint_every=settings.checkpoint_every,
        log_every=1,
        keep=1,
        desc="teacher",
    )
    step = fit(
        accelerator, model, optimiser, schedule, clips, draw, stack, loss_fn, out, loop,
        stop_at, progress,
    )  # fmt: skip
    if step < settings.steps:
        return {"stopped_at": step}
    accelerator.unwrap_model(model).save_pretrained(out / "teacher")
    rows = [json.loads(r) for r in (out / "log.jsonl").read_text().splitlines()]
    losses = [{k: round(r[k], 5) for k in r if k not in ("step", "lr", "seconds")} for r in rows]
    summary = {"settings": asdict(settings), "clips": len(clips), "losses": losses}
    write_text(out / "train.json", json.dumps(summary, indent=1) + "\n")
    return summary
