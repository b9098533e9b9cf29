"""The tiny student on the CPU: training step time and peak memory, what TPE costs, and what
E_v's feature cache saves under Tune-P+LLM.

    python benchmarks/student_step.py [--batch 8] [--frames 16] [--steps 5] [--repeats 30]
        [--only cache]

Step: forward + backward + AdamW at batch 8 with 16 frames (plus a SoM image) per question,
prompts of R4D-Bench length. Memory: the process's peak resident set (ru_maxrss) after the
steps, and its growth over the steps. Inference: one question's forward pass with TPE on and off
(same weights, alternating runs, best of `repeats` as timeit does, medians beside); the
ratio is the target (<= 1.02).

Cached vs live (Tune-P+LLM: E_v frozen, `r4d.model.features`): the frames are written as an mp4
and the SoM image as a PNG, E_v's features of both are cached, and the same questions are
batched from pixels (live) and from the cache; the training step (one model, the same batch,
alternating runs, medians) gives questions/s for each and their ratio. Preparing one question
(video decode + pixels, or cache read) is timed beside; in training it runs in DataLoader
workers, in parallel with the steps. E_v's forward pass alone on the live batch's images is
timed too: its share of the live step bounds what any cache can give (Amdahl).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from r4d.io.video import probe, sample_uniform, write_video
from r4d.model import build_student
from r4d.model.features import (
    FeatureCache,
    build_features,
    cache_header,
    som_visual,
    video_visual,
)
from r4d.model.processor import StudentProcessor
from r4d.model.tokenizer import train_tokenizer

QUESTION = (
    "From 2.00 sec to 9.50 sec, what is the displacement (straight-line distance) of "
    "<obj_1>? (unit: m)"
)
OPTIONS = ["1.12 m", "1.55 m", "2.16 m", "3.01 m", "4.19 m"]
ANSWER = "(C) 2.16 m"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--only", choices=["cache"], help="run only the cached-vs-live part")
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
    if args.only != "cache":
        tune_all_and_tpe(model, tokenizer, processor, sample, batch, args)
    cached_vs_live(model, processor, frames, som, mask, args)


def tune_all_and_tpe(model, tokenizer, processor, sample, batch, args) -> None:
    """Tune-All step time and memory; one question's inference with TPE on and off."""
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


def cached_vs_live(model, processor, frames, som, mask, args) -> None:
    """Tune-P+LLM training steps from pixels and from E_v's cached features, same batch."""
    model.requires_grad_(False)
    model.projector.requires_grad_(True)
    model.llm.requires_grad_(True)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    with tempfile.TemporaryDirectory() as tmp:
        write_video(Path(tmp) / "clip.mp4", frames, fps=args.frames / 12.0)
        Image.fromarray(som).save(Path(tmp) / "som.png")
        visuals = [som_visual(tmp, "som.png"), video_visual(tmp, "clip.mp4", args.frames)]
        start = time.perf_counter()
        build_features(model, processor, visuals, Path(tmp) / "features", progress=False)
        built = time.perf_counter() - start
        cache = FeatureCache(Path(tmp) / "features", cache_header(model))
        regions = {"<obj_1>": mask}

        def live_sample():
            clip, times, _ = sample_uniform(visuals[1].path, args.frames)
            info = probe(visuals[1].path)
            image = np.asarray(Image.open(visuals[0].path).convert("RGB"))
            return processor.build(
                QUESTION, clip, times, OPTIONS, image, regions, info.duration, info.fps, ANSWER
            )

        def cached_sample():
            clip = cache.clip(visuals[1])
            return processor.build_from_features(
                QUESTION,
                cache.features(visuals),
                clip.times,
                OPTIONS,
                True,
                regions,
                clip.duration,
                clip.fps,
                ANSWER,
            )

        prepare = {"live": [], "cached": []}
        samples = {}
        for _ in range(5):
            for name, make in (("live", live_sample), ("cached", cached_sample)):
                start = time.perf_counter()
                samples[name] = make()
                prepare[name].append(time.perf_counter() - start)
    batches = {name: processor.collate([s] * args.batch) for name, s in samples.items()}
    model.train()

    def step(batch) -> float:
        start = time.perf_counter()
        model(**batch).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        return time.perf_counter() - start

    for batch in batches.values():
        step(batch)  # warm-up
    durations = {"live": [], "cached": []}
    for _ in range(args.steps):
        for name, batch in batches.items():
            durations[name].append(step(batch))
    vision = []  # E_v alone on the live batch's images: what the cache can save at most
    with torch.no_grad():
        for _ in range(args.steps):
            start = time.perf_counter()
            model.vision_features(batches["live"]["pixel_values"])
            vision.append(time.perf_counter() - start)
    rate = {k: args.batch / statistics.median(v) for k, v in durations.items()}
    best = {k: args.batch / min(v) for k, v in durations.items()}
    images = len(samples["live"].times)
    print(f"feature cache of {len(visuals)} entries ({images} images): built in {built:.2f} s")
    for name in ("live", "cached"):
        print(
            f"Tune-P+LLM step, batch {args.batch}, {name:>6}: median "
            f"{statistics.median(durations[name]):.3f} s ({rate[name]:.2f} questions/s; best "
            f"{best[name]:.2f}); preparing a question "
            f"{1000 * statistics.median(prepare[name]):.1f} ms"
        )
    share = statistics.median(vision) / statistics.median(durations["live"])
    print(
        f"E_v forward on the live batch's {len(batches['live']['pixel_values'])} images: median "
        f"{statistics.median(vision):.3f} s, {100 * share:.0f} % of the live step; skipping it "
        f"can give at most {1 / max(1 - share, 1e-9):.2f}x"
    )
    print(
        f"cached / live: {rate['cached'] / rate['live']:.2f}x questions/s by medians, "
        f"{best['cached'] / best['live']:.2f}x by best runs (issue target: 4x)"
    )


if __name__ == "__main__":
    main()
