"""The base student's pretraining: 2D-only targets, labels from the world, resume."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import make_scene, obj
from r4d import cli
from r4d.errors import InputError
from r4d.io.masks import decode_mask
from r4d.model import build_student
from r4d.model.modeling import R4DStudent
from r4d.model.processor import StudentProcessor
from r4d.model.tokenizer import train_tokenizer
from r4d.train.data import example_sample, load_source
from r4d.train.pretrain import (
    INSTANCE_SLOTS,
    TARGETS,
    PretrainSettings,
    instance_labels,
    patch_labels,
    pretrain,
)
from r4d.world.bench import scene_view_of
from r4d.world.questions.generic import KINDS, build_generic

FOUR_D = ("depth", "flow", "motion", "camray", "ray", "time", "speed", "velocity", "moving")


def test_vision_targets_hold_no_4d_content():
    assert TARGETS == ("colour", "shape", "boundary", "instance_colour", "instance_shape")
    assert not [t for t in TARGETS for word in FOUR_D if word in t]


def test_patch_labels_from_instance_ids():
    scene = make_scene([obj("box", color="blue"), obj("sphere", color="red", position=(2.0, 0.0))])
    ids = np.zeros((6, 6), np.uint8)
    ids[:2, :2] = 1  # the blue box fills the top-left 2x2 pixels
    ids[4:, 3:] = 2  # the red sphere the bottom right
    labels = patch_labels(ids, scene, grid=3)  # 2x2-pixel patches
    colour, shape, boundary = (labels[t].reshape(3, 3) for t in TARGETS[:3])
    blue, red = 1 + ["red", "green", "blue"].index("blue"), 1
    # patch centres are pixels 1, 3, 5: (2, 1) and (2, 2) fall on the sphere
    assert colour.tolist() == [[blue, 0, 0], [0, 0, 0], [0, red, red]]
    assert shape.tolist() == [[1, 0, 0], [0, 0, 0], [0, 2, 2]]  # box = 1, sphere = 2
    assert boundary.tolist() == [[0, 0, 0], [0, 0, 0], [0, 1, 0]]  # (2, 1) holds 0 and 2


def test_instance_labels_pool_each_visible_mask():
    scene = make_scene(
        [obj("box", color="blue"), obj("sphere", color="red"), obj("cylinder", color="green")]
    )
    ids = np.zeros((6, 6), np.uint8)
    ids[:2, :2] = 1  # the box fills the top-left patch
    ids[4:, 3:] = 2  # the sphere: half of patch (2, 1), all of (2, 2)
    ids[3, 3] = 3  # the cylinder shows one pixel: too little to ask about
    labels = instance_labels(ids, scene, grid=3)
    weights = labels["weights"].reshape(INSTANCE_SLOTS, 3, 3)
    assert weights[0].tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert weights[1].tolist() == [[0, 0, 0], [0, 0, 0], [0, 0.5, 1]]
    assert not weights[2:].any()
    assert labels["instance_colour"].tolist()[:3] == [2, 0, -100]  # blue, red, ignored
    assert labels["instance_shape"].tolist() == [0, 1] + [-100] * (INSTANCE_SLOTS - 2)


@pytest.mark.slow
def test_pretraining_resumes_to_identical_weights(small_world, small_bench, tmp_path):
    bench = tmp_path / "bench"
    shutil.copytree(small_bench, bench)
    build_generic(small_world, bench, "train")
    build_generic(small_world, bench, "val")
    settings = PretrainSettings(
        vision_steps=4,
        vision_batch=8,
        align_curriculum=((("region_shape",), 2),),
        align_steps=4,
        align_batch=2,
        val_items=8,
        workers=0,
    )
    straight = pretrain(small_world, bench, tmp_path / "straight", settings, progress=False)
    killed = pretrain(small_world, bench, tmp_path / "resumed", settings, False, stop_at=2)
    assert killed == {"stopped_at": ("vision", 2)}  # as if killed after step 2's checkpoint
    resumed = pretrain(small_world, bench, tmp_path / "resumed", settings, progress=False)
    # killed inside the curriculum's first phase (stage 1 done, as the straight run left it)
    shutil.copytree(tmp_path / "straight" / "vision", tmp_path / "phase" / "vision")
    killed = pretrain(small_world, bench, tmp_path / "phase", settings, False, stop_at=1)
    assert killed == {"stopped_at": ("align_0", 1)}
    phase = pretrain(small_world, bench, tmp_path / "phase", settings, progress=False)
    assert phase["generic_val"] == straight["generic_val"]
    assert straight["targets"] == list(TARGETS) and straight["generic_val"]["n"] == 8
    kinds = straight["generic_val"]["kinds"]
    assert set(kinds) <= set(KINDS) and sum(k["n"] for k in kinds.values()) == 8
    assert resumed["generic_val"] == straight["generic_val"]
    a = R4DStudent.from_pretrained(tmp_path / "straight" / "student").state_dict()
    for other in ("resumed", "phase"):
        b = R4DStudent.from_pretrained(tmp_path / other / "student").state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), other


def test_a_curriculum_phase_trains_on_its_kinds_only(small_world, small_bench, tmp_path):
    """A llava source with `kinds` keeps the rows of those kinds (a curriculum phase); a
    kind no row has, or one no generic question has, is refused before any training."""
    bench = tmp_path / "bench"
    shutil.copytree(small_bench, bench)
    path = build_generic(small_world, bench, "train")
    build_generic(small_world, bench, "val")
    rows = json.loads(path.read_text())
    kept = load_source({"kind": "llava", "path": str(path), "kinds": ["region_shape", "count"]})
    assert [ex.item["id"] for ex in kept] == [
        r["id"] for r in rows if r["kind"] in ("region_shape", "count")
    ]
    with pytest.raises(InputError, match="no row of kind spin") as err:
        load_source({"kind": "llava", "path": str(path), "kinds": ["spin"]})
    assert str(path) in str(err.value)
    bad = PretrainSettings(align_curriculum=((("region_spin",), 2),))
    with pytest.raises(InputError, match="unknown question kind 'region_spin'"):
        pretrain(small_world, bench, tmp_path / "base", bad, progress=False)
    assert not (tmp_path / "base").exists()


def test_marked_region_rows_carry_their_mask_for_region_tokens(small_world, small_bench, tmp_path):
    """A generic `<obj_1>` row holds the key frame's mask of the object it asks about, so a
    student with region tokens trains on it (and the token pools under that mask)."""
    bench = tmp_path / "bench"
    shutil.copytree(small_bench, bench)
    rows = json.loads(build_generic(small_world, bench, "train").read_text())
    marked = [r for r in rows if "<obj_1>" in r["conversations"][0]["value"]]
    assert marked and all(r["regions"][0]["token"] == "<obj_1>" for r in marked)
    assert not [r for r in rows if "regions" in r and r not in marked]
    row = marked[0]
    view = scene_view_of(small_world / row["id"][len("generic_") : -3])
    mask = decode_mask(row["regions"][0]["mask"])
    (k,) = [k for k in view.regions if np.array_equal(mask, view.mask(k))]
    answer = row["options"][row["answer_index"]]
    obj = view.scene.objects[k]
    assert answer == {"region_colour": obj.color, "region_shape": obj.shape}[row["kind"]]
    assert {r["kind"] for r in rows} == set(KINDS)  # each row says what it asks
    examples = load_source({"kind": "llava", "path": str(bench / "generic_train.json")})
    tok = train_tokenizer([r["conversations"][0]["value"] for r in rows], vocab_size=400)
    student = build_student("tiny", tok, region_tokens=True)
    sample = example_sample(examples[rows.index(row)], StudentProcessor(tok, student.config), 4)
    ((token, visual, weights),) = sample.regions
    assert token == tok.convert_tokens_to_ids("<obj_1>") and visual == 1  # after the SoM tile
    assert weights.sum() > 0
    bad = dict(row, regions=[{"token": "<obj_1>"}])
    (tmp_path / "bad.json").write_text(json.dumps([bad]))
    (ex,) = load_source({"kind": "llava", "path": str(tmp_path / "bad.json"), "root": bench})
    with pytest.raises(InputError, match=row["id"]):
        example_sample(ex, StudentProcessor(tok, student.config), 4)


def test_the_cli_maps_its_options_onto_the_settings(monkeypatch, tmp_path):
    """`r4d pretrain` passes its steps through and `--no-curriculum` empties the curriculum."""
    seen = []

    def fake(world, bench, out, settings):
        seen.append(settings)
        return {"vision": {}, "generic_val": {}}

    monkeypatch.setattr("r4d.train.pretrain.pretrain", fake)
    args = ["pretrain", "--world", "w", "--bench", "b", "--out", str(tmp_path)]
    runner = CliRunner()
    assert runner.invoke(cli.app, [*args, "--align-steps", "7"]).exit_code == 0
    assert runner.invoke(cli.app, [*args, "--no-curriculum"]).exit_code == 0
    default = PretrainSettings()
    assert seen[0].align_steps == 7 and seen[0].align_curriculum == default.align_curriculum
    assert seen[1].align_curriculum == () and seen[1].align_steps == default.align_steps
