"""R4D-Sim questions: every answer recomputed here, from the scene description, by independent
formulas; no emitted question has a second correct option."""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter

import numpy as np
import pytest

from r4d.io.r4d_bench import TASKS, TIMEBENCH
from r4d.world.files import load_signals
from r4d.world.questions import SceneView, generate
from r4d.world.questions.options import MIN_RATIO, PositionBalancer, place_answer
from r4d.world.questions.timebench import timebench
from r4d.world.scene import Scene

NUMBER = re.compile(r"-?\d+\.\d+|-?\d+")


# --- an independent model of the world, from the scene JSON's definitions -------------------


def base_distance(tr, t):
    if tr is None:
        return 0.0
    if tr.profile == "constant":
        return tr.speed * t
    if tr.profile == "accelerating":
        return tr.speed * t + tr.acceleration * t * t / 2
    stop = tr.speed / tr.acceleration
    t = min(t, stop)
    return tr.speed * t - tr.acceleration * t * t / 2


def ground_speed(tr, t):
    if tr.profile == "constant":
        return tr.speed
    if tr.profile == "accelerating":
        return tr.speed + tr.acceleration * t
    return max(tr.speed - tr.acceleration * t, 0.0)


def lift(hop, t):
    if hop is None:
        return 0.0
    air = hop.air_fraction * hop.period
    for k in range(hop.count):
        u = (t - hop.start - k * hop.period) / air
        if 0 < u < 1:
            return 4 * hop.height * u * (1 - u)
    return 0.0


def centre(o, t):
    s = base_distance(o.translation, t)
    h = math.radians(o.translation.heading_deg) if o.translation else 0.0
    return np.array(
        [
            o.position[0] + s * math.cos(h),
            o.position[1] + s * math.sin(h),
            o.size[2] / 2 + lift(o.hop, t),
        ]
    )


def yaw(o, t):
    y = math.radians(o.yaw_deg)
    if o.spin:
        y += (1 if o.spin.direction == "ccw" else -1) * math.radians(o.spin.rate_deg_s) * t
    return y


def camera(cam, t):
    """(centre, right, down, forward) of the camera at t, from the scene's camera definition."""
    pos, tgt = np.array(cam.position, float), np.array(cam.target, float)
    a = math.radians(cam.rate_deg_s) * t
    turn = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    if cam.motion == "translate":
        pos, tgt = pos + t * np.array(cam.velocity), tgt + t * np.array(cam.velocity)
    elif cam.motion == "pan":
        tgt = pos + turn @ (tgt - pos)
    elif cam.motion == "orbit":
        pos = tgt + turn @ (pos - tgt)
    fwd = (tgt - pos) / np.linalg.norm(tgt - pos)
    right = np.cross(fwd, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    return pos, right, np.cross(fwd, right), fwd


def in_camera(cam, t, point):
    pos, right, down, fwd = camera(cam, t)
    d = point - pos
    return np.array([d @ right, d @ down, d @ fwd])


def path(o, t0, t1, steps=20000):
    ts = np.linspace(t0, t1, steps + 1)
    pts = np.array([centre(o, t) for t in ts])
    return float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())


def expected(view: SceneView, q) -> object:
    """The answer of a question, recomputed from the scene alone."""
    sc, p, objs = view.scene, q.params, view.scene.objects
    o = objs[q.regions[0]] if q.regions else None
    if q.task == TIMEBENCH:
        return (p["stop"] - p["start"]) / sc.fps
    if q.kind == "box":
        t = p["t"]
        c = in_camera(sc.camera, t, centre(o, t))
        _, right, down, fwd = camera(sc.camera, t)
        axes = np.stack([right, down, fwd])  # world -> camera
        x_axis = axes @ [math.cos(yaw(o, t)), math.sin(yaw(o, t)), 0.0]
        return [o.size[0], o.size[2], o.size[1], *c, x_axis, axes @ [0, 0, -1.0]]
    if q.kind == "size.height":
        return 100 * o.size[2]
    if q.kind.startswith("size.extent"):
        return 100 * max(o.size[0], o.size[1])
    if q.kind == "distance.camera":
        return float(np.linalg.norm(centre(o, p["t"]) - camera(sc.camera, p["t"])[0]))
    if q.kind == "distance.pair":
        b = objs[q.regions[1]]
        return float(np.linalg.norm(centre(o, p["t"]) - centre(b, p["t"])))
    if q.kind == "relation":
        a, b = objs[p["subject"]], objs[p["reference"]]
        assert {p["subject"], p["reference"]} == set(q.regions)
        d = in_camera(sc.camera, p["t"], centre(a, p["t"]))
        d -= in_camera(sc.camera, p["t"], centre(b, p["t"]))
        if abs(d[0]) >= 0.5 and abs(d[0]) >= 1.5 * abs(d[2]):
            return "right" if d[0] > 0 else "left"
        if abs(d[2]) >= 0.8 and abs(d[2]) >= 1.5 * abs(d[0]):
            return "back" if d[2] > 0 else "front"
        return None
    if q.kind == "direction":
        if o.translation is None and o.hop is None and o.spin is None:
            return "not moving"
        t0, t1 = view.times[0], view.times[-1]
        d = centre(o, t1) - centre(o, t0)
        d[2] = 0
        labels = set()
        for t in (t0, t1):
            _, right, _, fwd = camera(sc.camera, t)
            fwd = fwd * [1, 1, 0] / np.linalg.norm(fwd[:2])
            x, z = d @ right, d @ fwd
            if math.hypot(x, z) < 0.5:
                return None
            if abs(x) >= 2 * abs(z):
                labels.add("right" if x > 0 else "left")
            elif abs(z) >= 2 * abs(x):
                labels.add("away from the camera" if z > 0 else "towards the camera")
            else:
                return None
        return labels.pop() if len(labels) == 1 else None
    if q.kind == "spin":
        if o.spin is None:
            return "not spinning"
        return "clockwise" if o.spin.direction == "cw" else "counter-clockwise"
    if q.kind == "hops":
        return str(o.hop.count if o.hop else 0)
    if q.kind == "moving":
        return str(
            sum(objs[k].translation is not None or objs[k].hop is not None for k in q.regions)
        )
    if q.kind == "speed.average":
        t0, t1 = p["t0"], p["t1"]
        return (base_distance(o.translation, t1) - base_distance(o.translation, t0)) / (t1 - t0)
    if q.kind == "speed.instant":
        return ground_speed(o.translation, p["t"])
    if q.kind == "acceleration":
        return o.translation.acceleration
    if q.kind == "displacement":
        return float(np.linalg.norm(centre(o, p["t1"]) - centre(o, p["t0"])))
    if q.kind == "path":
        return path(o, p["t0"], p["t1"])
    raise AssertionError(f"no check for {q.kind}")


def box_rotation(yaw_deg, pitch_deg, roll_deg) -> np.ndarray:
    """R = R_y(yaw) R_x(pitch) R_z(roll), the convention the grounding options state."""
    a, b, c = (math.radians(v) for v in (yaw_deg, pitch_deg, roll_deg))
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return ry @ rx @ rz


def numbers(text: str) -> list[float]:
    return [float(x) for x in NUMBER.findall(text)]


def decimals_of(text: str) -> int:
    first = NUMBER.search(text).group(0)
    return len(first.split(".")[1]) if "." in first else 0


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def views(small_world):
    folders = sorted(small_world.glob("scene_*"))
    return [
        SceneView(Scene.load(f / "scene.json"), f.name, load_signals(f / "signals.safetensors"))
        for f in folders
    ]


@pytest.fixture(scope="session")
def questions(views):
    out = []
    for view in views:
        rng = np.random.default_rng(view.scene.seed)
        out += [(view, q) for q in generate(view, rng)]
        params = {"start": 0, "stop": view.scene.num_frames}
        tb = timebench(view.scene.duration, view.scene.fps, rng, params)
        out.append((view, tb))
    return out


# --- tests ----------------------------------------------------------------------------------


def test_every_category_is_generated(questions):
    tasks = Counter(q.task for _, q in questions)
    assert set(tasks) == {*TASKS, TIMEBENCH}
    assert all(n >= 5 for n in tasks.values()), tasks


def test_answers_agree_with_independent_recomputation(questions):
    checked = Counter()
    for view, q in questions:
        truth = expected(view, q)
        assert truth is not None, (view.name, q.kind, q.params)
        options = q.options
        if isinstance(truth, str):
            assert q.answer_text == truth, (view.name, q.text)
            assert options.count(truth) == 1
        elif isinstance(truth, list):  # a 3D box: (width, height, length), centre, axes
            got = numbers(q.answer_text)
            assert got[0:3] == pytest.approx(truth[0:3], abs=0.0051)
            assert got[3:6] == pytest.approx(truth[3:6], abs=0.0051)
            R = box_rotation(*got[6:9])
            assert R @ [1, 0, 0] == pytest.approx(truth[6], abs=2e-3)  # the object's local x
            assert R @ [0, 1, 0] == pytest.approx(truth[7], abs=2e-3)  # the box's y is down
            for j, other in enumerate(options):
                if j != q.answer:
                    dims = np.array(numbers(other)[0:3]) / np.array(got[0:3])
                    assert np.all(np.abs(np.log(dims)) >= math.log(MIN_RATIO) - 0.02)
        else:
            places = decimals_of(q.answer_text)
            assert numbers(q.answer_text)[0] == pytest.approx(truth, abs=0.51 * 10**-places), q.text
            values = sorted(numbers(o)[0] for o in options)
            assert all(b / a >= MIN_RATIO for a, b in itertools.pairwise(values))
        checked[q.task] += 1
    assert sum(checked.values()) == len(questions) > 500


def test_region_and_raw_wording(questions):
    for view, q in questions:
        text = q.with_tokens()
        raw = q.with_descriptions(view.describe)
        for i, k in enumerate(q.regions):
            assert f"<obj_{i + 1}>" in text and view.describe(k) in raw
            assert k in view.regions  # visible in the first frame
        assert "<obj_" not in raw
        assert 4 <= len(q.options) <= 5 and len(set(q.options)) == len(q.options)


def test_false_positive_text_never_says_nothing_moves(questions):
    by_text = {}
    for _, q in questions:
        if q.task in ("Translational", "Rotational", "False Positives"):
            by_text.setdefault((q.kind, q.text), set()).add(q.task)
            assert "not" not in q.text.lower()
    assert any(len(tasks) > 1 for tasks in by_text.values())  # shared templates


def test_several_phrasings_per_category(questions):
    templates = {}
    for _, q in questions:
        templates.setdefault(q.task, set()).add((q.kind, q.template))
    assert all(len(t) >= 2 for t in templates.values()), templates


def test_answer_positions_are_balanced():
    rng = np.random.default_rng(0)
    balancer = PositionBalancer(rng)
    positions = Counter()
    for i in range(1000):
        n = 4 if i % 3 == 0 else 5
        options = [f"option {j}" for j in range(n)]
        placed, answer = place_answer(options, int(rng.integers(n)), balancer.next(n), rng)
        assert placed[answer] in options and sorted(placed) == sorted(options)
        positions[(n, answer)] += 1
    for n in (4, 5):
        counts = np.array([positions[(n, j)] for j in range(n)])
        assert np.abs(counts / counts.sum() - 1 / n).max() <= 0.05
