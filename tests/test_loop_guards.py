"""The training loop's guards: a non-finite loss stops the run before it reaches the weights
(naming the step and the batch's clips), and checkpoints are written with the user's umask."""

import os
import stat

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from r4d.errors import InputError
from r4d.train.loop import LoopSettings, fit, latest_checkpoint, make_accelerator


class _Points(torch.utils.data.Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        return torch.full((2,), float(i))


def _fit(out, loss_at, steps=4):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: 1.0)
    calls = []

    def collate(rows):
        return {"x": torch.stack(rows), "clips": [f"scene_{int(r[0]):06d}" for r in rows]}

    def loss_fn(model, batch):
        calls.append(1)
        loss = model(batch["x"]).pow(2).mean() * loss_at(len(calls))
        return loss, {"sft": loss.detach()}

    def draw(rng, n):
        return rng.choice(16, n, replace=False).tolist()

    settings = LoopSettings(steps=steps, batch_size=2, checkpoint_every=1, keep=10)
    return fit(
        make_accelerator(),
        model,
        optimiser,
        schedule,
        _Points(),
        draw,
        collate,
        loss_fn,
        out,
        settings,
        progress=False,
    )


def test_a_nan_loss_stops_before_the_weights_and_names_step_and_clips(tmp_path):
    with pytest.raises(InputError, match=r"nan at step 3 \(batch clips: scene_0000\d\d, scene_"):
        _fit(tmp_path, lambda call: float("nan") if call == 3 else 1.0)
    latest = latest_checkpoint(tmp_path)
    assert latest.name == "step-0000002"
    for path in latest.rglob("*.safetensors"):
        assert all(torch.isfinite(t).all() for t in load_file(path).values())


def test_an_infinite_loss_is_refused_too(tmp_path):
    with pytest.raises(InputError, match="inf at step 1"):
        _fit(tmp_path, lambda call: float("inf"))
    assert latest_checkpoint(tmp_path) is None


def test_checkpoints_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        assert _fit(tmp_path, lambda call: 1.0, steps=1) == 1
    finally:
        os.umask(old)
    files = [p for p in latest_checkpoint(tmp_path).rglob("*") if p.is_file()]
    assert files and {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o644}
    assert np.all(
        [stat.S_IMODE(p.stat().st_mode) == 0o755 for p in tmp_path.rglob("*") if p.is_dir()]
    )


def test_every_weight_and_signal_file_follows_the_umask(
    small_world, teacher_parts, student_and_video
):
    """safetensors writes its files 0600; r4d's scenes, teacher, caches and students are 0644
    under the usual umask (the suite runs under 0022), as a plain open would make them."""
    folders = [small_world, teacher_parts, student_and_video[0]]
    files = [p for f in folders for p in f.rglob("*.safetensors")]
    assert {"signals.safetensors", "model.safetensors"} <= {p.name for p in files}
    assert {
        p.name: stat.S_IMODE(p.stat().st_mode)
        for p in files
        if stat.S_IMODE(p.stat().st_mode) != 0o644
    } == {}
