"""The teacher-to-student data path: typed TeacherSignals, hook order, frame alignment, the
teacher's identity, and what a P4D checkpoint holds."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from r4d.errors import InputError
from r4d.teacher.cache import CacheWriter, TeacherCache
from r4d.teacher.config import tiny_config
from r4d.teacher.model import Teacher
from r4d.train.config import TrainConfig
from r4d.train.loop import latest_checkpoint
from r4d.train.trainer import train


def _config(small_bench, root, out, **over) -> TrainConfig:
    data = {
        "out": str(out),
        "data": [{"kind": "r4dsim", "root": str(small_bench)}],
        "teacher": {"cache": str(root / "cache"), "heads": str(root / "teacher")},
        "recipe": {"name": "paper", "overrides": {"decoder_hidden": 32}},
        "optim": {"steps": 2, "batch_size": 2},
        "checkpoint_every": 2,
        "png_every": 0,
    }
    data.update(over)
    return TrainConfig.from_dict(data)


def test_hooks_come_back_in_numeric_order(tmp_path):
    hooks = 12  # latent10 and latent11 sort before latent2 as strings
    fields = {f"latent{i}": torch.full((1, 2, 2, 3), float(i)) for i in range(hooks)}
    fields["depth"] = torch.zeros(1, 2, 4, 4)
    shapes = {k: list(v.shape) for k, v in fields.items()}
    writer = CacheWriter(tmp_path, shapes, {"source": "teacher"}, hooks)
    writer.add("clipA", fields, [0, 5])
    writer.flush()
    signals = TeacherCache(tmp_path).signals(["clipA", None])
    assert [int(x[0, 0, 0, 0, 0]) for x in signals.latents] == list(range(hooks))
    assert signals.has.tolist() == [True, False] and signals.frame_indices == [[0, 5]]
    assert signals.maps["depth"].shape == (1, 1, 2, 4, 4)


def test_signals_of_other_frames_are_refused_naming_the_clip(teacher_parts, small_world):
    cache = TeacherCache(teacher_parts / "cache")
    clip = cache.clips()[0]
    right = cache.frame_indices[clip]
    assert len(right) == 16
    assert cache.signals([clip], [right]).any
    with pytest.raises(InputError, match=clip) as info:
        cache.signals([clip], [right[::2]])
    assert info.value.field == "frames"


def test_an_8_frame_run_refuses_a_16_frame_cache(teacher_parts, small_bench, tmp_path):
    config = _config(small_bench, teacher_parts, tmp_path / "run", frames=8)
    with pytest.raises(InputError, match=r"clip 'scene_\d+': the run samples frames"):
        train(config, progress=False)


def test_heads_of_another_teacher_are_refused(teacher_parts, small_bench, tmp_path):
    torch.manual_seed(1)
    Teacher(tiny_config()).save_pretrained(tmp_path / "other")
    config = _config(
        small_bench,
        teacher_parts,
        tmp_path / "run",
        teacher={"cache": str(teacher_parts / "cache"), "heads": str(tmp_path / "other")},
    )
    with pytest.raises(InputError, match="not those of the teacher") as info:
        train(config, progress=False)
    assert info.value.field == "teacher.heads"


def test_a_p4d_checkpoint_holds_the_heads_but_no_e4d(teacher_parts, small_bench, tmp_path):
    train(_config(small_bench, teacher_parts, tmp_path / "run"), progress=False)
    weights = latest_checkpoint(tmp_path / "run") / "model.safetensors"
    with safe_open(str(weights), framework="pt") as f:
        keys = list(f.keys())
    teacher = Teacher.from_pretrained(teacher_parts / "teacher")
    encoder = {f"heads.{k}" for k in teacher.state_dict() if k.startswith("encoder.")}
    heads = {f"heads.{k}" for k in teacher.state_dict() if k.startswith("heads.")}
    assert heads <= set(keys)  # D_m, frozen, for L_ED
    assert encoder and not encoder & set(keys)
    assert {k for k in keys if k.startswith("heads.")} == heads  # nothing else of the teacher
    assert any(k.startswith("decoder.") for k in keys) and any(
        k.startswith("student.") for k in keys
    )
