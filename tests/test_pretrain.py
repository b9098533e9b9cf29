"""The base student's pretraining: 2D-only targets, labels from the world, resume."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from conftest import make_scene, obj
from r4d.model.modeling import R4DStudent
from r4d.train.pretrain import TARGETS, PretrainSettings, patch_labels, pretrain
from r4d.world.questions.generic import build_generic

FOUR_D = ("depth", "flow", "motion", "camray", "ray", "time", "speed", "velocity", "moving")


def test_vision_targets_hold_no_4d_content():
    assert TARGETS == ("colour", "shape", "boundary")
    assert not [t for t in TARGETS for word in FOUR_D if word in t]


def test_patch_labels_from_instance_ids():
    scene = make_scene([obj("box", color="blue"), obj("sphere", color="red", position=(2.0, 0.0))])
    ids = np.zeros((6, 6), np.uint8)
    ids[:2, :2] = 1  # the blue box fills the top-left 2x2 pixels
    ids[4:, 3:] = 2  # the red sphere the bottom right
    labels = patch_labels(ids, scene, grid=3)  # 2x2-pixel patches
    colour, shape, boundary = (labels[t].reshape(3, 3) for t in TARGETS)
    blue, red = 1 + ["red", "green", "blue"].index("blue"), 1
    # patch centres are pixels 1, 3, 5: (2, 1) and (2, 2) fall on the sphere
    assert colour.tolist() == [[blue, 0, 0], [0, 0, 0], [0, red, red]]
    assert shape.tolist() == [[1, 0, 0], [0, 0, 0], [0, 2, 2]]  # box = 1, sphere = 2
    assert boundary.tolist() == [[0, 0, 0], [0, 0, 0], [0, 1, 0]]  # (2, 1) holds 0 and 2


@pytest.mark.slow
def test_pretraining_resumes_to_identical_weights(small_world, small_bench, tmp_path):
    bench = tmp_path / "bench"
    shutil.copytree(small_bench, bench)
    build_generic(small_world, bench, "train")
    build_generic(small_world, bench, "val")
    settings = PretrainSettings(
        vision_steps=4, vision_batch=8, align_steps=4, align_batch=2, val_items=8, workers=0
    )
    straight = pretrain(small_world, bench, tmp_path / "straight", settings, progress=False)
    killed = pretrain(small_world, bench, tmp_path / "resumed", settings, False, stop_at=2)
    assert killed == {"stopped_at": ("vision", 2)}  # as if killed after step 2's checkpoint
    resumed = pretrain(small_world, bench, tmp_path / "resumed", settings, progress=False)
    assert straight["targets"] == list(TARGETS) and straight["generic_val"]["n"] == 8
    assert resumed["generic_val"] == straight["generic_val"]
    a = R4DStudent.from_pretrained(tmp_path / "straight" / "student")
    b = R4DStudent.from_pretrained(tmp_path / "resumed" / "student")
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
