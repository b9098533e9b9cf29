"""`r4d eval --model hf:DIR` end to end on tiny random-weight checkpoints of three real video VLM
architectures (Qwen2.5-VL, LLaVA-OneVision, SmolVLM2; `hf_checkpoints`), on R4D-Sim and on
R4D-Bench in its released layout: every item reaches the model as one image (the SoM image)
plus one video of 16 frames with its timing, through the model's own processor and chat
template, and is answered by greedy generation.

What reached the model is read at `generate` (its keyword arguments: the processor's tensors),
so the assertions are about the tensors a real checkpoint would get.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
import torch
from transformers import AutoProcessor, GenerationMixin
from typer.testing import CliRunner

from hf_checkpoints import BUILDERS  # tiny checkpoints in the real hub layouts
from r4d.cli import app
from r4d.errors import InputError
from r4d.eval.adapters import HFOptions, video_metadata
from r4d.eval.benchmarks import get_benchmark
from test_eval import make_omnispatial  # small files in the official layout
from test_protocols import released_bench

FRAMES = 16
LIMIT = 3  # items per run, asked in batches of 2: one full batch and one of one


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_checkpoints")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("r4d_release_hf")
    released_bench(root, n=6)
    return root


@pytest.fixture
def calls(monkeypatch):
    """Each `generate` call's inputs and how many tokens it returned."""
    seen = []
    original = GenerationMixin.generate

    def recording(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        seen.append({"model": self, "inputs": kwargs, "out_len": out.shape[1]})
        return out

    monkeypatch.setattr(GenerationMixin, "generate", recording)
    return seen


def _eval(model_dir, bench, data, out, *extra):
    args = ["eval", "--model", f"hf:{model_dir}", "--bench", bench, "--data", str(data)]
    args += ["--out", str(out), "--limit", str(LIMIT), "--batch", "2", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return rows, json.loads((out / "summary.json").read_text())


def _requests(bench_name, data):
    bench = get_benchmark(bench_name)
    options = replace(bench.default_options(), frames=FRAMES)
    return [bench.request(item, options) for item in bench.load(data)[:LIMIT]]


def _check_qwen(call, requests, tokenizer):
    inputs = call["inputs"]
    n = len(requests)
    # one video per item: 16 frames in pairs (temporal patch 2), and one image per item
    assert inputs["video_grid_thw"].shape == (n, 3)
    assert (inputs["video_grid_thw"][:, 0] * 2 == FRAMES).all()
    assert inputs["image_grid_thw"].shape == (n, 3) and (inputs["image_grid_thw"][:, 0] == 1).all()
    # the clip's timing: seconds per temporal patch = 2 frames x (duration / 16 frames)
    expected = [2 * r.duration / FRAMES for r in requests]
    assert inputs["second_per_grid_ts"].tolist() == pytest.approx(expected, rel=0.02)
    for text in (tokenizer.decode(ids) for ids in inputs["input_ids"]):
        assert text.count("<|vision_start|><|image_pad|>") == 1
        assert text.count("<|vision_start|><|video_pad|>") == 1
        assert text.index("<|image_pad|>") < text.index("<|video_pad|>")  # SoM image first


def _check_llava(call, requests, tokenizer):
    inputs = call["inputs"]
    n = len(requests)
    assert inputs["pixel_values_videos"].shape[:2] == (n, FRAMES)
    assert inputs["pixel_values"].shape[0] == n  # one (anyres-tiled) image per item
    assert inputs["image_sizes"].tolist() == [list(r.images[0].shape[:2]) for r in requests]
    for text in (tokenizer.decode(ids) for ids in inputs["input_ids"]):
        assert text.index("<image>") < text.index("<video>")


def _check_smolvlm(call, requests, tokenizer):
    inputs = call["inputs"]
    pixels = inputs["pixel_values"]
    assert pixels.shape[0] == len(requests)
    for r, ids, sample in zip(requests, inputs["input_ids"], pixels, strict=True):
        text = tokenizer.decode(ids)
        # the video: 16 frames, each after its timestamp (the processor's prompt), then the
        # SoM image's tiles and global view before them; one global view per frame
        stamps = [f"{int(t) // 60:02d}:{int(t) % 60:02d}" for t in r.timestamps]
        assert re.findall(r"Frame from (\d\d:\d\d):", text) == stamps
        assert "series of sixteen frames" in text
        tiles = text.count("<row_")
        assert text.count("<global-img>") == 1 + FRAMES
        assert text.index("<global-img>") < text.index("Frame from")
        real = (sample.flatten(1) != 0).any(dim=1).sum().item()  # padding images are zeros
        assert real == tiles + 1 + FRAMES


CHECKS = {"qwen2_5_vl": _check_qwen, "llava_onevision": _check_llava, "smolvlm": _check_smolvlm}


@pytest.mark.parametrize("arch", list(BUILDERS))
@pytest.mark.parametrize("bench_name", ["r4dsim", "r4d"])
def test_each_item_reaches_the_model_as_one_image_and_one_video(
    arch, bench_name, checkpoints, small_bench, release, calls, tmp_path
):
    data = small_bench if bench_name == "r4dsim" else release
    rows, summary = _eval(checkpoints[arch], bench_name, data, tmp_path / "run")
    requests = _requests(bench_name, data)
    assert [len(c["inputs"]["input_ids"]) for c in calls] == [2, 1]  # batches of --batch 2
    tokenizer = AutoProcessor.from_pretrained(checkpoints[arch]).tokenizer
    for call, batch in zip(calls, (requests[:2], requests[2:]), strict=True):
        CHECKS[arch](call, batch, tokenizer)
        assert call["out_len"] > call["inputs"]["input_ids"].shape[1]  # generation ran
        assert call["inputs"]["attention_mask"][:, -1].all()  # left padding
    assert [r["id"] for r in rows] == [r.item.id for r in requests]
    assert all(len(r["raw"]) == 1 and isinstance(r["raw"][0], str) for r in rows)
    assert not any(r.get("failed") for r in rows)
    assert summary["model"] == f"hf:{arch}:float32"  # auto on a CPU


def test_images_only_benchmarks_send_images_only_in_the_asked_dtype(checkpoints, calls, tmp_path):
    make_omnispatial(tmp_path / "omni")
    model = checkpoints["qwen2_5_vl"]
    out = tmp_path / "run"
    rows, summary = _eval(model, "omnispatial", tmp_path / "omni", out, "--dtype", "bfloat16")
    for call in calls:  # OmniSpatial asks each item 5 times: one image per ask
        inputs = call["inputs"]
        assert "pixel_values_videos" not in inputs and "video_grid_thw" not in inputs
        assert inputs["image_grid_thw"].shape[0] == len(inputs["input_ids"])
        assert inputs["pixel_values"].dtype == torch.bfloat16
    assert calls[0]["model"].dtype == torch.bfloat16
    assert summary["model"] == "hf:qwen2_5_vl:bfloat16" and len(rows) == LIMIT
    manifest = json.loads((out / "manifest.json").read_text())
    assert '"dtype": "bfloat16"' in json.dumps(manifest)
    # another dtype is another model: the rerun in the same folder is refused
    args = ["eval", "--model", f"hf:{model}", "--bench", "omnispatial"]
    args += ["--data", str(tmp_path / "omni"), "--out", str(out), "--limit", str(LIMIT)]
    result = CliRunner().invoke(app, [*args, "--dtype", "float32"])
    assert isinstance(result.exception, InputError) and "dtype" in str(result.exception)


def test_video_metadata_keeps_the_sampled_timing():
    """16 of a 10 s clip's 300 frames at 30 fps: the processors' sampled rate is 1.6 fps and the
    frames' timestamps are r4d's."""
    import numpy as np

    from r4d.eval.core import EvalItem, Request

    times = np.linspace(0, 9.5, FRAMES)
    frames = np.zeros((FRAMES, 8, 12, 3), np.uint8)
    item = EvalItem("x", "b", "c", "q")
    meta = video_metadata(Request(item, "q", [], frames, times, 10.0, 30.0))
    from transformers.video_utils import VideoMetadata

    got = VideoMetadata(**meta)
    assert got.total_num_frames == 300 and got.sampled_fps == pytest.approx(1.6)
    assert got.timestamps == pytest.approx(times, abs=1 / 60)
    assert (got.height, got.width) == (8, 12)
    # a request without an fps (e.g. a clip given by its duration only): frames / duration
    bare = VideoMetadata(**video_metadata(Request(item, "q", [], frames, times, 10.0, None)))
    assert bare.sampled_fps == pytest.approx(FRAMES / 10.0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dtype", "float8"], "is not one of"),
        (["--device", "gpu"], "is not auto, cpu, cuda"),
        (["--device-map", "everywhere"], "is not one of"),
    ],
)
def test_bad_device_options_are_refused_by_name(extra, message, tmp_path):
    args = ["eval", "--model", "hf:x", "--bench", "r4d", "--data", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o"), *extra])
    assert result.exit_code == 2 and message in result.output


def test_device_choices_are_checked_before_anything_loads(monkeypatch):
    with pytest.raises(InputError, match="give one of them"):
        HFOptions(device="cpu", device_map="auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert HFOptions().resolved() == ("cpu", "float32")
    with pytest.raises(InputError, match="no CUDA device"):
        HFOptions(device="cuda:1").resolved()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert HFOptions().resolved() == ("cuda", "bfloat16")
    assert HFOptions(dtype="float16", device_map="auto").resolved() == ("cuda", "float16")
