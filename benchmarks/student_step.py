"""The tiny student on the CPU: training step time and peak memory, and what TPE costs.

    python benchmarks/student_step.py [--batch 8] [--frames 16] [--steps 5] [--repeats 30]

Step: forward + backward + AdamW at batch 8 with 16 frames (plus a SoM image) per question,
prompts of R4D-Bench length. Memory: the process's peak resident set (ru_maxrss) after the
steps, and its growth over the steps. Inference: one question's forward pass with TPE on and off
(same weights, alternating runs, best of `repeats` as timeit does, medians beside); the
ratio is the target (<= 1.02).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
import torch

from r4d.model import build_student
from r4d.model.processor import StudentProcessor
from r4d.model.tokenizer import train_tokenizer

QUESTION = (
    "From 2.00 sec to 9.50 sec, what is the displacement (straight-line distance) of "
    "<obj_1>? (unit: m)"
)
OPTIONS = ["1.12 m", "1.55 m", "2.16 m", "3.01 m", "4.19 m"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = train_tokenizer([QUESTION, *OPTIONS] * 50, vocab_size=2048)
    model = build_student("tiny", tokenizer, time_cues=["tpe"])
    processor = StudentProcessor(tokenizer, model.config)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (args.frames, 128, 128, 3), dtype=np.uint8)
    som = rng.integers(0, 256, (384, 384, 3), dtype=np.uint8)
    times = np.linspace(0, 12.0, args.frames)
    mask = np.zeros((128, 128), bool)
    mask[30:70, 40:90] = True
    sample = processor.build(
        QUESTION, frames, times, OPTIONS, som, {"<obj_1>": mask}, answer="(C) 2.16 m"
    )
    batch = processor.collate([sample] * args.batch)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"tiny student: {n_params / 1e6:.2f} M parameters, {len(sample.input_ids)} tokens a "
        f"question ({model.config.tokens_per_image} per image x {len(sample.pixels)} images)"
    )

    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        model(**batch).loss.backward()
        optimiser.step()
        optimiser.zero_grad()

    step()  # warm-up (allocations, optimiser state)
    rss_before = peak_rss_mb()
    durations = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        durations.append(time.perf_counter() - start)
    print(
        f"train step, batch {args.batch} x {args.frames} frames: median "
        f"{statistics.median(durations):.2f} s ({args.batch / statistics.median(durations):.1f} "
        f"questions/s); peak RSS {peak_rss_mb():.0f} MB (+{peak_rss_mb() - rss_before:.0f} MB "
        "over the timed steps)"
    )

    plain = build_student("tiny", tokenizer)
    plain.load_state_dict(model.state_dict())
    one = processor.collate([sample])
    model.eval()
    plain.eval()
    on, off = [], []
    with torch.no_grad():
        for _ in range(3):
            model(**one), plain(**one)
        for _ in range(args.repeats):
            for m, out in ((model, on), (plain, off)):
                start = time.perf_counter()
                m(**one)
                out.append(time.perf_counter() - start)
    ratio = statistics.median(on) / statistics.median(off)
    print(
        f"inference, 1 question: TPE on {1000 * statistics.median(on):.1f} ms, off "
        f"{1000 * statistics.median(off):.1f} ms: ratio {ratio:.3f} (target <= 1.02)"
    )


if __name__ == "__main__":
    main()
