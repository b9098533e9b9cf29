"""Scene sampling, the JSON schema, and bad-input errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from r4d.errors import InputError
from r4d.world import Scene, sample_scene
from r4d.world.kinematics import camera_pose, object_pose
from r4d.world.sample import FPS_CHOICES
from r4d.world.scene import COLORS, SHAPES


def test_same_seed_same_bytes_and_json_round_trip():
    for seed in range(40):
        text = sample_scene(seed).to_json()
        assert sample_scene(seed).to_json() == text
        again = Scene.from_json(text)
        assert again == sample_scene(seed)
        assert again.to_json() == text
    assert sample_scene(1).to_json() != sample_scene(2).to_json()


def test_sampled_scenes_follow_the_design():
    cameras, motions, fps_seen = set(), set(), set()
    for seed in range(150):
        scene = sample_scene(seed)
        assert 2 <= len(scene.objects) <= 6
        assert scene.fps in FPS_CHOICES
        assert 2.0 - 1 / scene.fps <= scene.duration <= 20.0 + 1 / scene.fps
        fps_seen.add(scene.fps)
        cameras.add(scene.camera.motion)
        R, C = camera_pose(scene.camera, np.float64(0.0))
        for o in scene.objects:
            assert o.shape in SHAPES and o.color in COLORS
            assert all(0.2 <= s <= 2.0 for s in o.size)
            motions.add(
                (
                    o.translation and o.translation.profile,
                    o.spin and o.spin.direction,
                    o.hop is not None,
                )
            )
            centre, _ = object_pose(o, np.float64(0.0))
            x, y, z = R.T @ (centre - C)
            half = math.tan(math.radians(scene.camera.fov_deg) / 2)
            assert z > 0 and abs(x / z) < half and abs(y / z) < half  # starts in view
        pairs = [(o.shape, o.color) for o in scene.objects]
        assert len(set(pairs)) == len(pairs)  # descriptions are unique
    assert cameras == {"static", "translate", "pan", "orbit"}
    assert fps_seen == set(FPS_CHOICES)
    profiles = {m[0] for m in motions}
    assert profiles == {None, "constant", "accelerating", "decelerating"}
    assert {m[1] for m in motions} == {None, "cw", "ccw"}
    assert any(m[0] and m[1] and m[2] for m in motions)  # a combination of all three


def test_sampled_objects_never_overlap():
    for seed in range(60):
        scene = sample_scene(seed)
        t = np.linspace(0, scene.duration, 200)
        paths = [object_pose(o, t)[0][:, :2] for o in scene.objects]
        radii = [0.5 * math.hypot(o.size[0], o.size[1]) for o in scene.objects]
        for i in range(len(paths)):
            for j in range(i):
                gap = np.linalg.norm(paths[i] - paths[j], axis=-1).min()
                assert gap >= radii[i] + radii[j], (seed, i, j)


def _write(tmp_path, data) -> str:
    path = tmp_path / "scene.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (lambda d: d["objects"][0].update(shape="pyramid"), "objects[0].shape", "unknown value"),
        (lambda d: d["objects"][1].update(color="mauve"), "objects[1].color", "unknown value"),
        (lambda d: d["objects"][0].update(size=[1.0, -0.5, 1.0]), "objects[0].size[1]", "> 0"),
        (lambda d: d.update(fps=0), "fps", "> 0"),
        (lambda d: d["camera"].update(motion="dolly"), "camera.motion", "unknown value"),
        (
            lambda d: d["objects"][0].update(
                translation={"profile": "teleport", "heading_deg": 0, "speed": 1}
            ),
            "objects[0].translation.profile",
            "unknown value",
        ),
        (
            lambda d: d["objects"][0].update(spin={"direction": "sideways", "rate_deg_s": 5}),
            "objects[0].spin.direction",
            "unknown value",
        ),
        (lambda d: d["objects"][0].update(wobble=True), "objects[0].wobble", "unknown field"),
        (lambda d: d.pop("num_frames"), "num_frames", "missing"),
        (lambda d: d.update(schema="r4d.world.scene/99"), "schema", "unsupported"),
        (lambda d: d["objects"][0].update(size=[1, 1]), "objects[0].size", "list of 3"),
        (
            lambda d: d["objects"][0].update(
                hop={"count": 0, "height": 1, "start": 0, "period": 1, "air_fraction": 0.5}
            ),
            "objects[0].hop.count",
            ">= 1",
        ),
    ],
)
def test_bad_scene_json_names_file_and_field(tmp_path, edit, field, words):
    data = sample_scene(4).to_dict()
    data["objects"][0]["shape"] = "box"
    edit(data)
    path = _write(tmp_path, data)
    with pytest.raises(InputError) as info:
        Scene.load(path)
    assert info.value.where == str(path)
    assert info.value.field == field
    assert words in str(info.value) and str(path) in str(info.value)


def test_not_json_and_missing_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match=r"broken\.json: not valid JSON"):
        Scene.load(path)
    with pytest.raises(InputError, match="cannot read"):
        Scene.load(tmp_path / "absent.json")
