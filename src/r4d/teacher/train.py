"""Training the tiny teacher on the world's exact maps (`r4d teacher train`), resumably.

Losses, per batch of clips:
- depth: scale-invariant log loss on valid pixels, mean(d^2) - 0.85 mean(d)^2 with
  d = log(pred) - log(true) (the 0.15 share of the mean keeps the metric scale);
- flow: end-point error (pixels) over frames 1..T-1 (frame 0 has no previous frame);
- motion: binary cross-entropy on the logits, moving pixels weighted MOTION_POS_WEIGHT;
- camray: L1 on the six Plucker channels.
The total weighs them by `TrainSettings.weights`. A checkpoint folder (model, optimiser,
schedule, step, both random generators; `trainer.pt` holds only tensors and numbers, read with
`weights_only=True`) is written atomically every `checkpoint_every` steps; a rerun continues
from the latest and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from r4d.io.atomic import atomic_dir, write_text
from r4d.teacher.config import PRESETS
from r4d.teacher.data import Clip, load_clip, scene_folders
from r4d.teacher.model import Teacher

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


def _save_checkpoint(out: Path, model, optimiser, schedule, step, rng, losses) -> None:
    """Write out/checkpoint-<step> whole (atomically), then drop the older ones."""
    with atomic_dir(out / f"checkpoint-{step:06d}") as tmp:
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        torch.save(
            {
                "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(),
                "torch_rng": torch.get_rng_state(),
            },
            tmp / "trainer.pt",
        )
        write_text(
            tmp / "state.json",
            json.dumps({"step": step, "numpy_rng": rng.bit_generator.state, "losses": losses})
            + "\n",
        )
    for old in sorted(out.glob("checkpoint-*"))[:-1]:
        shutil.rmtree(old)


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted(p for p in out.glob("checkpoint-*") if (p / "state.json").is_file())
    return found[-1] if found else None


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
    torch.manual_seed(settings.seed)
    model = Teacher(config)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    schedule = get_cosine_schedule_with_warmup(optimiser, settings.warmup, settings.steps)
    rng = np.random.default_rng(settings.seed)
    step, losses = 0, []
    checkpoint = latest_checkpoint(out)
    if checkpoint is not None:
        state = json.loads((checkpoint / "state.json").read_text())
        model.load_state_dict(load_file(str(checkpoint / "model.safetensors")))
        trainer = torch.load(checkpoint / "trainer.pt", weights_only=True)
        optimiser.load_state_dict(trainer["optimiser"])
        schedule.load_state_dict(trainer["schedule"])
        torch.set_rng_state(trainer["torch_rng"])
        rng.bit_generator.state = state["numpy_rng"]
        step, losses = state["step"], state["losses"]
    model.train()
    bar = tqdm(
        total=settings.steps, initial=step, desc="teacher", unit="step", disable=not progress
    )
    last = min(settings.steps, stop_at or settings.steps)
    while step < last:
        picks = rng.choice(len(clips), settings.batch_size, replace=False)
        video, true = stack([clips[i] for i in picks])
        parts = teacher_losses(model(video).maps, true)
        loss = sum(settings.weights[k] * v for k, v in parts.items())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        optimiser.zero_grad()
        step += 1
        losses.append({k: round(v.item(), 5) for k, v in parts.items()})
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % settings.checkpoint_every == 0 or step == last:
            _save_checkpoint(out, model, optimiser, schedule, step, rng, losses)
    bar.close()
    if step < settings.steps:
        return {"stopped_at": step}
    model.save_pretrained(out / "teacher")
    summary = {"settings": asdict(settings), "clips": len(clips), "losses": losses}
    write_text(out / "train.json", json.dumps(summary, indent=1) + "\n")
    return summary
