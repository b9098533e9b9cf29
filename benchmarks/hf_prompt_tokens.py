"""Prompt tokens of one R4D-Bench item for Qwen2.5-VL: the clip as one video vs as 17 images.

    python benchmarks/hf_prompt_tokens.py [--width 854] [--height 480] [--frames 16]

One item as R4D-Bench asks it (the SoM image, then 16 frames of an 854x480 clip, the official
prompt) goes through `r4d.eval.adapters.hf_inputs` twice with Qwen2.5-VL's processor: as
`r4d eval --model hf:DIR` sends it (SoM image + one video with its timing) and as the frames
sent as images (SoM image + 16 images). Processor only, no weights: the processor is built as
the tests build it (`tests/hf_checkpoints.py`: a tokenizer trained there, Qwen2.5-VL's released
image and video settings: 56*56 to 14*14*4*16384 pixels, patch 14, merge 2, temporal patch 2),
so the visual token counts (image and video placeholders) are the real checkpoint's; the
text's count is the tokenizer's (the small one trained there splits text finer than Qwen's
151k-token vocabulary, so the totals here run a couple of hundred tokens above the real ones).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np

from r4d.eval.adapters import hf_inputs
from r4d.eval.core import EvalItem, Request
from r4d.io.r4d_bench import format_prompt

QUESTION = "Which way does <obj_1> move relative to <obj_2> while the camera turns?"
OPTIONS = ["left", "right", "towards the camera", "away from the camera"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--frames", type=int, default=16)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    processor = importlib.import_module("hf_checkpoints").qwen_processor()

    rng = np.random.default_rng(0)
    shape = (args.frames, args.height, args.width, 3)
    frames = rng.integers(0, 256, shape, dtype=np.uint8)
    duration, fps = 12.0, 30.0
    times = np.linspace(0, duration, args.frames, endpoint=False)
    item = EvalItem("item", "r4d", "Translational", QUESTION, OPTIONS, 0)
    prompt = format_prompt(QUESTION, OPTIONS, som=True)
    request = Request(item, prompt, [frames[0].copy()], frames, times, duration, fps, OPTIONS)

    placeholders = [processor.image_token_id, processor.video_token_id]
    counts = {}
    for video, label in ((True, "SoM image + one video"), (False, "SoM image + frames as images")):
        ids = hf_inputs(processor, [request], video=video)["input_ids"][0]
        visual = int(np.isin(ids.numpy(), placeholders).sum())
        counts[video] = (len(ids), visual)
        print(f"{label:30s}: {len(ids):6d} prompt tokens, {visual:6d} of them visual")
    total = counts[False][0] / counts[True][0]
    visual = counts[False][1] / counts[True][1]
    print(f"as images / as video: {total:.2f}x the prompt tokens, {visual:.2f}x the visual tokens")


if __name__ == "__main__":
    main()
