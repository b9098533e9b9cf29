"""A smoke SFT run of the tiny student on R4D-Sim: does the loss fall, does accuracy rise?

A minimal loop (AdamW, linear warm-up then cosine decay, gradient clipping) over random batches
of the train split; then option-scoring accuracy per task on a slice of the val split, beside
chance. The full trainer (Accelerate, checkpoints, P4D) is `r4d.train`'s job.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from r4d.io.atomic import write_text
from r4d.io.r4d_bench import BenchItem, format_prompt, load_split
from r4d.model import build_student
from r4d.model.answer import option_text, score_options
from r4d.model.data import item_sample
from r4d.model.processor import SYSTEM, StudentProcessor
from r4d.model.tokenizer import train_tokenizer
from r4d.world.questions import TASKS, TIMEBENCH


@dataclass
class SmokeSettings:
    steps: int = 300
    batch_size: int = 4
    lr: float = 5e-4
    warmup: int = 20
    num_frames: int = 16
    seed: int = 0
    time_cues: list[str] = field(default_factory=lambda: ["tpe"])
    region_tokens: bool = False
    val_per_task: int = 30
    vocab_size: int = 4096


def text_corpus(items: list[BenchItem]):
    """Every text the student will read or write for these items, for tokenizer training."""
    yield SYSTEM
    for item in items:
        yield format_prompt(item.question, item.options, item.som_image is not None)
        yield format_prompt(item.question_raw, item.options, False)
        yield option_text(item.answer_index, item.answer)


def validate(model, processor, items, root, num_frames, batch: int = 4) -> dict[str, dict]:
    """Option-scoring accuracy (%) and chance per task."""
    model.eval()
    hits, chance = defaultdict(list), defaultdict(list)
    for a in range(0, len(items), batch):
        chunk = items[a : a + batch]
        samples = [item_sample(i, root, processor, num_frames) for i in chunk]
        scores = score_options(model, processor, samples, [i.options for i in chunk])
        for item, s in zip(chunk, scores, strict=True):
            hits[item.task].append(int(s.argmax()) == item.answer_index)
            chance[item.task].append(1 / len(item.options))
    table = {
        t: {
            "n": len(h),
            "accuracy": 100 * float(np.mean(h)),
            "chance": 100 * float(np.mean(chance[t])),
        }
        for t, h in hits.items()
    }
    every = [h for t in hits for h in hits[t]]
    table["Overall"] = {
        "n": len(every),
        "accuracy": 100 * float(np.mean(every)),
        "chance": 100 * float(np.mean([c for t in chance for c in chance[t]])),
    }
    return table


def smoke_sft(
    bench: str | Path, out: str | Path, settings: SmokeSettings | None = None, progress: bool = True
) -> dict:
    settings = settings or SmokeSettings()
    bench, out = Path(bench), Path(out)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    train, val = load_split(bench, "train"), load_split(bench, "val")
    tokenizer = train_tokenizer(text_corpus(train), settings.vocab_size)
    model = build_student("tiny", tokenizer, settings.time_cues, settings.region_tokens)
    processor = StudentProcessor(tokenizer, model.config)

    by_task = defaultdict(list)
    for item in val:
        by_task[item.task].append(item)
    val_slice = [i for t in (*TASKS, TIMEBENCH) for i in by_task[t][: settings.val_per_task]]
    before = validate(model, processor, val_slice, bench, settings.num_frames)

    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.01)
    schedule = get_cosine_schedule_with_warmup(optimiser, settings.warmup, settings.steps)
    losses, start = [], time.perf_counter()
    model.train()
    for _ in tqdm(range(settings.steps), desc="sft", unit="step", disable=not progress):
        picks = rng.choice(len(train), settings.batch_size, replace=False)
        samples = [
            item_sample(train[i], bench, processor, settings.num_frames, True) for i in picks
        ]
        batch = processor.collate(samples)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        optimiser.zero_grad()
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    after = validate(model, processor, val_slice, bench, settings.num_frames)
    model.save_pretrained(out / "model", tokenizer)
    window = max(1, min(20, len(losses) // 5))
    report = {
        "settings": asdict(settings),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": seconds,
        "loss_first": float(np.mean(losses[:window])),
        "loss_last": float(np.mean(losses[-window:])),
        "losses": losses,
        "val_before": before,
        "val_after": after,
    }
    write_text(out / "report.json", json.dumps(report, indent=1) + "\n")
    return report


def report_markdown(report: dict) -> str:
    lines = [
        f"loss {report['loss_first']:.3f} -> {report['loss_last']:.3f} over "
        f"{len(report['losses'])} steps ({report['train_seconds']:.0f} s)",
        "",
        "| task | n | chance | before | after |",
        "|---|---:|---:|---:|---:|",
    ]
    for task, row in report["val_after"].items():
        b = report["val_before"][task]["accuracy"]
        lines.append(
            f"| {task} | {row['n']} | {row['chance']:.1f} | {b:.1f} | {row['accuracy']:.1f} |"
        )
    return "\n".join(lines)
