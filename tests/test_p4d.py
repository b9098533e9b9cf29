"""P4D: Rearrange, D_4DP, the losses against hand computations, gradient flow, the trainer's
resume, DDP, and export at zero inference cost."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoTokenizer

from r4d.errors import InputError
from r4d.model import build_student
from r4d.model.answer import option_text
from r4d.model.modeling import R4DStudent, count_parameters
from r4d.model.processor import StudentProcessor
from r4d.model.tokenizer import train_tokenizer
from r4d.p4d.decoder import PerceptionDecoder, frame_latents, rearrange
from r4d.p4d.losses import explicit_loss, latent_loss
from r4d.p4d.model import P4DModel
from r4d.p4d.recipes import recipe
from r4d.teacher.cache import TeacherCache
from r4d.teacher.model import TeacherHeads
from r4d.train.config import TrainConfig
from r4d.train.trainer import train


def test_recipes_and_variants():
    paper, official = recipe("paper"), recipe("official")
    assert (paper.alpha, paper.beta, paper.decoder, paper.ld_distance) == (
        0.5,
        0.1,
        "mlp",
        "smooth_l1",
    )
    assert paper.lambdas == {"depth": 1.0, "flow": 0.1, "motion": 0.05, "camray": 0.05}
    assert (official.alpha, official.beta, official.decoder, official.depth_space) == (
        0.01,
        1.0,
        "linear",
        "log",
    )
    assert official.lambdas == {"depth": 0.1, "flow": 0.001, "motion": 0.01, "camray": 1e-5}
    assert not recipe("paper", "4d-sft").distils and recipe("paper", "ld-only").beta == 0
    assert recipe("official", "ld+d+f").modalities == ("depth", "flow")
    assert recipe("paper", alpha=2.0).alpha == 2.0
    with pytest.raises(InputError, match="unknown variant"):
        recipe("paper", "4d-magic")
    with pytest.raises(InputError, match="unknown recipe field"):
        recipe("paper", gamma=1.0)


def test_rearrange_and_frame_latents():
    x = torch.arange(2 * 4 * 3 * 3 * 5, dtype=torch.float32).reshape(2, 4, 3, 3, 5)
    strided = rearrange(x, (2, 3, 3), "stride")
    assert torch.equal(strided, x[:, [0, 2]])
    mean = rearrange(x, (2, 3, 3), "mean")
    assert torch.equal(mean[:, 1], (x[:, 2] + x[:, 3]) / 2)
    resized = rearrange(x, (2, 8, 8), "stride")
    grid = x[:, 0].permute(0, 3, 1, 2)
    want = F.interpolate(grid, size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(resized[:, 0], want.permute(0, 2, 3, 1))
    # Two samples: one with a SoM image first (skipped), one without; 2 frames of 2x2 tokens.
    hidden = torch.randn(2, 16, 3)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, 1:13] = True  # 3 images x 4 tokens
    mask[1, 2:10] = True  # 2 images x 4 tokens
    got = frame_latents(hidden, mask, 2, (2, 2))
    assert torch.equal(got[0].reshape(8, 3), hidden[0, 5:13])
    assert torch.equal(got[1].reshape(8, 3), hidden[1, 2:10])


def test_decoder_initialisations():
    torch.manual_seed(0)
    mlp = PerceptionDecoder(recipe("paper", decoder_hidden=64), 32, 16, 4)
    assert all((m.bias == 0).all() for m in mlp.mlp if isinstance(m, torch.nn.Linear))
    w = mlp.mlp[0].weight
    assert w.abs().max() <= (6 / (w.shape[0] + w.shape[1])) ** 0.5  # Xavier uniform bound
    out = mlp(torch.randn(2, 3, 4, 4, 32))
    assert len(out) == 4 and out[0].shape == (2, 3, 4, 4, 16)
    linear = PerceptionDecoder(recipe("official"), 32, 16, 4)
    assert len(linear.per_hook) == 4
    assert linear.per_hook[0].weight.std().item() == pytest.approx(0.1, rel=0.2)


def test_losses_equal_hand_computations():
    torch.manual_seed(0)
    s = [torch.randn(1, 2, 1, 1, 2) for _ in range(2)]
    t = [torch.randn(1, 2, 1, 1, 2) * 3 for _ in range(2)]

    def smooth(a, b):
        d = abs(a - b)
        return 0.5 * d * d if d < 1 else d - 0.5

    # eq. 6: sum over frames of the mean over hooks and channels
    want = sum(
        sum(
            smooth(s[h][0, n, 0, 0, c].item(), t[h][0, n, 0, 0, c].item())
            for h in range(2)
            for c in range(2)
        )
        / 4
        for n in range(2)
    )
    assert latent_loss(s, t, "smooth_l1").item() == pytest.approx(want, rel=1e-6)
    want = sum(
        sum(
            (s[h][0, n, 0, 0, c] - t[h][0, n, 0, 0, c]).item() ** 2
            for h in range(2)
            for c in range(2)
        )
        / 4
        for n in range(2)
    )
    assert latent_loss(s, t, "mse").item() == pytest.approx(want, rel=1e-6)

    pred = {
        "depth": torch.tensor([2.0, 3.0, 5.0]).view(1, 1, 3, 1, 1),
        "motion": torch.tensor([0.0, 2.0, -2.0]).view(1, 1, 3, 1, 1),
    }
    true = {
        "depth": torch.tensor([1.0, 0.0, 6.0]).view(1, 1, 3, 1, 1),
        "motion": torch.tensor([1.0, 0.0, 0.0]).view(1, 1, 3, 1, 1),
    }
    r = recipe("paper", modalities=("depth", "motion"))
    total, parts = explicit_loss(pred, true, r, motion_is_mask=True)
    assert parts["depth"].item() == pytest.approx(smooth(2, 1) + smooth(5, 6))  # frame 2 is sky
    sig = [1 / (1 + math.exp(-v)) for v in (0.0, 2.0, -2.0)]
    assert parts["motion"].item() == pytest.approx(
        sum(smooth(p, q) for p, q in zip(sig, (1, 0, 0), strict=True))
    )
    assert total.item() == pytest.approx(parts["depth"].item() + 0.05 * parts["motion"].item())
    logged = explicit_loss(pred, true, recipe("official", modalities=("depth",)))[1]["depth"]
    assert logged.item() == pytest.approx(
        smooth(math.log(2), math.log(1)) + smooth(math.log(5), math.log(6)), rel=1e-5
    )


def _config(small_bench, teacher_parts, out, **over) -> TrainConfig:
    data = {
        "out": str(out),
        "data": [{"kind": "r4dsim", "root": str(small_bench)}],
        "teacher": {"cache": str(teacher_parts / "cache"), "heads": str(teacher_parts / "teacher")},
        "recipe": {"name": "paper", "overrides": {"decoder_hidden": 64}},
        "optim": {"steps": 4, "batch_size": 2},
        "checkpoint_every": 2,
        "png_every": 0,
        "log_every": 1,
    }
    data.update(over)
    return TrainConfig.from_dict(data)


def _toy(teacher_parts, small_bench):
    from r4d.io.r4d_bench import load_split
    from r4d.model.data import item_sample

    items = [i for i in load_split(small_bench, "train") if i.som_image][:2]
    tok = train_tokenizer([i.question for i in items] * 20, vocab_size=400)
    torch.manual_seed(0)
    student = build_student("tiny", tok)
    heads = TeacherHeads.from_pretrained(teacher_parts / "teacher")
    model = P4DModel(student, recipe("paper", decoder_hidden=64), heads.config, heads)
    proc = StudentProcessor(tok, student.config)
    samples = [item_sample(i, small_bench, proc, 16, True) for i in items]
    signals = TeacherCache(teacher_parts / "cache").signals(
        [i.extra["scene"] for i in items], [s.frame_indices for s in samples]
    )
    return model, proc.collate(samples), signals


def test_gradients_reach_the_llm_through_ld_and_ed_never_the_teacher(teacher_parts, small_bench):
    model, batch, signals = _toy(teacher_parts, small_bench)
    assert signals.has.all() and len(signals.latents) == 4
    for term in ("ld", "ed"):
        model.zero_grad()
        _, losses = model(batch, signals)
        losses[term].backward()
        for part in (model.student.llm.model, model.student.projector):
            grads = [p.grad for p in part.parameters() if p.grad is not None]
            assert grads and sum(g.abs().sum() for g in grads) > 0, term
        assert all(p.grad is None and not p.requires_grad for p in model.heads.parameters())
    assert (
        model.student.llm.lm_head.weight.grad is None
        or model.student.llm.lm_head.weight.grad.abs().sum() == 0
    )


def test_resume_export_and_zero_inference_cost(teacher_parts, small_bench, tmp_path):
    straight = _config(small_bench, teacher_parts, tmp_path / "straight")
    train(straight, progress=False)
    resumed = _config(small_bench, teacher_parts, tmp_path / "resumed")
    assert train(resumed, stop_at=2, progress=False) == {"stopped_at": 2}
    train(_config(small_bench, teacher_parts, tmp_path / "resumed"), progress=False)
    a = R4DStudent.from_pretrained(tmp_path / "straight" / "student")
    tok = AutoTokenizer.from_pretrained(tmp_path / "straight" / "student")
    b = R4DStudent.from_pretrained(tmp_path / "resumed" / "student")
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # Exported: exactly the base student's parameters; outputs as the trained inference path.
    base = build_student("tiny", tok, ["tpe"])
    assert count_parameters(a) == count_parameters(base)
    from r4d.train.export import export_checkpoint

    export_checkpoint(tmp_path / "straight", tmp_path / "again")
    c = R4DStudent.from_pretrained(tmp_path / "again")
    assert all(torch.equal(sa[k], v) for k, v in c.state_dict().items())
    rows = [
        json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all("ld" in r and "ed" in r for r in rows)


def test_lora_policy_trains_adapters_and_exports_merged(teacher_parts, small_bench, tmp_path):
    config = _config(
        small_bench,
        teacher_parts,
        tmp_path / "lora",
        trainable="tune-p+llm-lora",
        optim={"steps": 2, "batch_size": 2},
    )
    train(config, progress=False)
    student = R4DStudent.from_pretrained(tmp_path / "lora" / "student")
    tok = AutoTokenizer.from_pretrained(tmp_path / "lora" / "student")
    assert count_parameters(student) == count_parameters(build_student("tiny", tok, ["tpe"]))
    assert not any("lora" in k for k in student.state_dict())


def test_bad_config_names_the_field(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"out": "x", "data": [], "optim": {"lr": 1, "momentum": 0.9}}))
    with pytest.raises(InputError) as info:
        TrainConfig.load(path)
    assert info.value.field == "optim.momentum" and info.value.where == str(path)
    path.write_text(json.dumps({"out": "x", "data": [], "trainable": "tune-everything"}))
    with pytest.raises(InputError, match="unknown policy"):
        TrainConfig.load(path)


@pytest.mark.slow
def test_two_process_ddp_follows_the_single_process_curve(teacher_parts, small_bench, tmp_path):
    """Global batch 4 either way: one process x 4, or two gloo processes x 2 (same draws)."""
    single = _config(
        small_bench, teacher_parts, tmp_path / "single", optim={"steps": 3, "batch_size": 4}
    )
    train(single, progress=False)
    config = _config(
        small_bench, teacher_parts, tmp_path / "ddp", optim={"steps": 3, "batch_size": 2}
    )
    path = tmp_path / "ddp.json"
    path.write_text(json.dumps(config.to_dict()))
    # torchrun starts two processes (`accelerate launch --cpu` alone starts one); the trainer's
    # Accelerator joins them over gloo. Each logs that it is one of two.
    launcher = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [launcher, "--nproc_per_node", "2", "-m", "r4d.cli", "train", "--config", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    curves = []
    for run in ("single", "ddp"):
        rows = (tmp_path / run / "log.jsonl").read_text().splitlines()
        curves.append([json.loads(r)["sft"] for r in rows])
    assert len(curves[0]) == len(curves[1]) == 3
    for one, two in zip(*curves, strict=True):
        assert two == pytest.approx(one, rel=0.05)  # per-rank token means vs the global mean


def test_fusion_baselines_start_as_the_student_and_need_f4d(teacher_parts, small_bench, tmp_path):
    from r4d.model.modeling import fused_latents

    model, batch, signals = _toy(teacher_parts, small_bench)
    base = model.student
    images = base.images_per_sample(batch["input_ids"])
    fused = fused_latents(signals.latents[-1], images, 16, base.config.patch_side)
    assert fused.shape == (sum(images), base.config.patch_side**2, 128)
    assert (fused[0] == 0).all()  # the SoM image has no F_4D
    from dataclasses import replace

    for kind in ("concat", "pe"):
        config = replace(base.config, fusion=kind, fusion_width=128)
        fusion = R4DStudent(config)
        missing, _ = fusion.load_state_dict(base.state_dict(), strict=False)
        assert all(k.startswith("fusion.") for k in missing)
        with torch.no_grad():
            want = base(**{k: v for k, v in batch.items() if k != "labels"}).logits
            got = fusion(**{k: v for k, v in batch.items() if k != "labels"}, fused=fused).logits
        assert torch.allclose(want, got, atol=1e-5), kind  # identity / zero start
        with pytest.raises(InputError, match="needs the teacher's F_4D"):
            fusion(**{k: v for k, v in batch.items() if k != "labels"})
    config = _config(
        small_bench,
        teacher_parts,
        tmp_path / "pe",
        recipe={"name": "paper", "variant": "4d-pe"},
        trainable="tune-p+llm",  # the fusion layer learns under every policy
        optim={"steps": 2, "batch_size": 2},
    )
    train(config, progress=False)
    exported = R4DStudent.from_pretrained(tmp_path / "pe" / "student")
    assert exported.config.fusion == "pe" and exported.fusion is not None
    assert exported.fusion.weight.abs().sum() > 0  # it left its zero start


@pytest.mark.slow
def test_demo_then_reproduce_reuse_every_stage(tmp_path, capsys):
    """`make demo`'s job and then `r4d reproduce`, at the smoke preset (a few steps each)."""
    from r4d.demo import run_demo
    from r4d.reproduce import reproduce

    summary = run_demo(tmp_path, "smoke", progress=False)
    printed = capsys.readouterr().out
    assert "$ r4d ask" in printed and f"truth: {summary['ask']['answer']}" in printed
    assert set(summary["rows"]) == {"Zero-shot", "4D-SFT", "P4D+TPE"}
    Image.open(summary["figure"]).verify()  # a whole PNG
    asked = summary["ask"]
    options = asked["student"]["options"]
    assert asked["student"]["option"] in {option_text(i, o) for i, o in enumerate(options)}
    assert asked["correct"] == (asked["student"]["choice"] == options.index(asked["answer"]))
    assert json.loads((tmp_path / "demo.json").read_text())["scene"] == summary["scene"]

    rows = ["4D-SFT", "P4D+TPE", "4D-PE"]
    results = reproduce(tmp_path, "smoke", seeds=1, rows=rows, progress=False)
    assert set(results["stage_seconds"]) == {"4D-PE seed 0"}  # the demo's stages were reused
    names = {run["name"] for run in results["runs"].values()}
    assert names == {"Zero-shot", *rows}
    report = (tmp_path / "report.md").read_text()
    assert "## Zero-shot vs 4D-SFT vs P4D" in report and (tmp_path / "report.png").is_file()
    assert results["cost"]["parameters_base"] == results["cost"]["parameters_p4d"]
    again = reproduce(tmp_path, "smoke", seeds=1, rows=rows, progress=False)
    assert again["stage_seconds"] == {}  # every stage was reused
    assert again["runs"] == results["runs"]
    with pytest.raises(InputError, match="unknown rows"):
        reproduce(tmp_path, "smoke", rows=["P4D+TPE", "Tab. 9"])
