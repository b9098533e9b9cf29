"""What P4D costs over plain SFT, and what the exported model costs at inference.

    python benchmarks/p4d_overhead.py --bench DIR --cache DIR --heads DIR [--steps 5]

Training: the tiny student on the same R4D-Sim batches (batch 4, 16 frames + SoM image), one
optimiser step each, with the `paper` recipe (D_4DP hidden width scaled to the tiny LLM:
--decoder-hidden) and the teacher's F_4D / P_m read from the cache, against the `4d-sft` variant
(no distillation); medians and their ratio (target <= 1.25). Inference: the exported student
against a base student of the same configuration, one question's forward pass, best of
--repeats (target: ratio 1.00 within noise).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from r4d.io.r4d_bench import load_split
from r4d.model import build_student
from r4d.model.data import item_sample
from r4d.model.processor import StudentProcessor
from r4d.model.tokenizer import train_tokenizer
from r4d.p4d.model import P4DModel
from r4d.p4d.recipes import recipe
from r4d.teacher.cache import TeacherCache
from r4d.teacher.model import TeacherHeads
from r4d.train.export import export_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--heads", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--decoder-hidden", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    cache, heads = TeacherCache(args.cache), TeacherHeads.from_pretrained(args.heads)
    items = [
        i for i in load_split(args.bench, "train") if i.som_image and i.extra["scene"] in cache
    ][: args.batch * args.steps]
    tokenizer = train_tokenizer([i.question for i in items] * 10, vocab_size=2048)
    results = {}
    for variant in ("4d-sft", "p4d"):
        torch.manual_seed(0)
        student = build_student("tiny", tokenizer, ["tpe"])
        model = P4DModel(
            student,
            recipe("paper", variant, decoder_hidden=args.decoder_hidden),
            heads.config,
            heads,
        )
        processor = StudentProcessor(tokenizer, student.config)
        optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)
        model.train()
        times = []
        for s in range(args.steps + 1):
            chunk = items[(s % args.steps) * args.batch :][: args.batch]
            samples = [item_sample(i, args.bench, processor, 16, True) for i in chunk]
            batch = processor.collate(samples)
            start = time.perf_counter()
            signals = cache.signals(
                [i.extra["scene"] for i in chunk], [s.frame_indices for s in samples]
            )
            loss, _ = model(batch, signals)
            loss.backward()
            optimiser.step()
            optimiser.zero_grad()
            if s:  # the first step warms up
                times.append(time.perf_counter() - start)
        results[variant] = (statistics.median(times), model, processor)
        print(f"{variant:7s}: median step {results[variant][0]:.2f} s (batch {args.batch})")
    print(f"P4D / SFT step time: {results['p4d'][0] / results['4d-sft'][0]:.2f} (target <= 1.25)")

    model, processor = results["p4d"][1], results["p4d"][2]
    export_model(model, tokenizer, Path("/tmp/r4d-bench-export"))
    exported = type(model.student).from_pretrained("/tmp/r4d-bench-export")[0].eval()
    base = build_student("tiny", tokenizer, ["tpe"]).eval()
    one = processor.collate([item_sample(items[0], args.bench, processor, 16)])
    one.pop("labels")
    lat = {"base": [], "exported": []}
    with torch.no_grad():
        for _ in range(args.repeats):
            for name, m in (("base", base), ("exported", exported)):
                start = time.perf_counter()
                m(**one)
                lat[name].append(time.perf_counter() - start)
    n_base, n_exp = (sum(p.numel() for p in m.parameters()) for m in (base, exported))
    print(
        f"inference: base {1000 * min(lat['base']):.1f} ms, exported "
        f"{1000 * min(lat['exported']):.1f} ms (best of {args.repeats}): ratio "
        f"{min(lat['exported']) / min(lat['base']):.3f}; parameters {n_base} vs {n_exp}"
    )


if __name__ == "__main__":
    main()
