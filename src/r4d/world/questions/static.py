"""Static questions: 3D Video Grounding, Dimensional Measurement, Spatial Relation.

Every answer comes from the scene at a sampled frame's time: boxes and positions in that
frame's camera coordinates (OpenCV axes, metres), sizes from the scene description.
"""

from __future__ import annotations

import itertools

import numpy as np

from r4d.world.questions.options import numeric_options
from r4d.world.questions.question import Question
from r4d.world.questions.view import SceneView

VG_TEMPLATES = (
    "At {t} sec, what is the 3D bounding box of {r1} in camera coordinates? (unit: m, °)",
    "At {t} sec, identify the correct 3D bounding box of {r1} from a single frame. (unit: m, °)",
    "At {t} sec, which 3D box (dimensions, central point, orientation) fits {r1}? (unit: m, °)",
)
HEIGHT_TEMPLATES = (
    "How tall is {r1}? (unit: cm)",
    "What is the height of {r1}? (unit: cm)",
    "Measure the height of {r1}. (unit: cm)",
)
EXTENT_TEMPLATES = {
    "box": (
        "What is the length of the longest horizontal side of {r1}? (unit: cm)",
        "How long is the longest side of the base of {r1}? (unit: cm)",
    ),
    "round": (
        "What is the diameter of {r1}? (unit: cm)",
        "How wide is {r1} across? (unit: cm)",
    ),
}
PAIR_TEMPLATES = (
    "At {t} sec, what is the distance between the centres of {r1} and {r2}? (unit: m)",
    "At {t} sec, how far apart are the centres of {r1} and {r2}? (unit: m)",
    "At {t} sec, what is the most likely distance from the centre of {r1} to the centre of "
    "{r2}? (unit: m)",
)
CAMERA_TEMPLATES = (
    "At {t} sec, how far is the centre of {r1} from the camera? (unit: m)",
    "At {t} sec, what is the distance between the camera and the centre of {r1}? (unit: m)",
)
SR_TEMPLATES = (
    "At {t} sec, where is {r1} relative to {r2}, as seen from the camera?",
    "At {t} sec, what is the positional relationship of {r1} relative to {r2}?",
    "At {t} sec, from the camera's point of view, which side of {r2} is {r1} on?",
)
SR_OPTIONS = ["left", "right", "front", "back"]
SR_MIN_LATERAL = 0.5  # m, camera x offset for left / right
SR_MIN_DEPTH = 0.8  # m, camera z offset for front / back
SR_DOMINANCE = 1.5  # the deciding offset is this many times the other one

BOX_YAW_STEP = 40.0  # degrees between the yaw of neighbouring grounding options


def _time(t: float) -> str:
    return f"{t:.2f}"


def _pick(rng, items):
    return items[int(rng.integers(len(items)))]


def box_text(box: np.ndarray) -> str:
    """A camera-frame box (centre xyz, size whl, yaw pitch roll) as the released JSON-like text."""
    d = ", ".join(f"{v:.2f}" for v in box[3:6])
    c = ", ".join(f"{v:.2f}" for v in box[0:3])
    yaw, pitch, roll = (f"{v:.2f}" for v in box[6:9])
    return (
        f"{{dimensions: [{d}], central_point: [{c}], "
        f"orientation: {{yaw: {yaw}, pitch: {pitch}, roll: {roll}}}}}"
    )


def _wrap_degrees(a: float) -> float:
    return (a + 180.0) % 360.0 - 180.0


def grounding_options(box: np.ndarray, rng, n: int = 5) -> tuple[list[str], int]:
    """n boxes: the true one and n - 1 that differ from it in size (>= 25%), in distance along
    the viewing ray (>= 25%) and in yaw (>= 40 degrees). Each attribute is a ladder with the truth
    at its own random rank, so no attribute's rank gives the answer away."""
    size_step, range_step = rng.uniform(1.3, 1.5), rng.uniform(1.25, 1.4)
    ranks = [int(rng.integers(n)) for _ in range(3)]
    size = [size_step ** (i - ranks[0]) for i in range(n)]
    dist = [range_step ** (i - ranks[1]) for i in range(n)]
    yaw = [BOX_YAW_STEP * (i - ranks[2]) for i in range(n)]
    others = [
        [v for i, v in enumerate(ladder) if i != r]
        for ladder, r in zip((size, dist, yaw), ranks, strict=True)
    ]
    for o in others:
        rng.shuffle(o)
    boxes = [box.copy()]
    for s, d, y in zip(*others, strict=True):
        b = box.copy()
        b[0:3] *= d
        b[3:6] *= s
        b[6] = _wrap_degrees(b[6] + y)
        boxes.append(b)
    return [box_text(b) for b in boxes], 0


def grounding(view: SceneView, rng) -> list[Question]:
    out = []
    for k in view.regions:
        frames = [n for n in range(len(view.times)) if view.visible(k, n)]
        if not frames:
            continue
        n = _pick(rng, frames)
        box = view.signals["boxes"][n, k].astype(np.float64)
        options, answer = grounding_options(box, rng)
        template = int(rng.integers(len(VG_TEMPLATES)))
        out.append(
            Question(
                task="3D Video Grounding",
                kind="box",
                template=template,
                text=VG_TEMPLATES[template].replace("{t}", _time(view.times[n])),
                options=options,
                answer=answer,
                regions=[k],
                truth=[round(float(v), 4) for v in box],
                unit="m, deg",
                params={"frame": n, "t": float(view.times[n])},
            )
        )
    return out


def _numeric(task, kind, templates, rng, truth, unit, regions, params):
    decimals = 1 if unit == "cm" else 2  # sizes are mm-exact: cm with 2 decimals would end in 0
    made = numeric_options(truth, unit, rng, decimals=decimals)
    if made is None:
        return None
    options, answer = made
    template = int(rng.integers(len(templates)))
    text = templates[template]
    if "t" in params:
        text = text.replace("{t}", _time(params["t"]))
    return Question(
        task, kind, template, text, options, answer, regions, float(truth), unit, params, decimals
    )


def measurement(view: SceneView, rng) -> list[Question]:
    out = []
    objects = view.scene.objects
    for k in view.regions:
        o = objects[k]
        out.append(
            _numeric(
                "Dimensional Measurement",
                "size.height",
                HEIGHT_TEMPLATES,
                rng,
                100.0 * o.size[2],
                "cm",
                [k],
                {},
            )
        )
        shape = "box" if o.shape == "box" else "round"
        out.append(
            _numeric(
                "Dimensional Measurement",
                f"size.extent.{shape}",
                EXTENT_TEMPLATES[shape],
                rng,
                100.0 * max(o.size[:2]),
                "cm",
                [k],
                {},
            )
        )
        frames = [n for n in range(len(view.times)) if view.visible(k, n)]
        if frames:
            n = _pick(rng, frames)
            t = float(view.times[n])
            camera = view.signals["camera_position"][n]
            truth = float(np.linalg.norm(view.position(k, t) - camera))
            out.append(
                _numeric(
                    "Dimensional Measurement",
                    "distance.camera",
                    CAMERA_TEMPLATES,
                    rng,
                    truth,
                    "m",
                    [k],
                    {"frame": n, "t": t},
                )
            )
    for a, b in itertools.combinations(view.regions, 2):
        frames = [n for n in range(len(view.times)) if view.visible(a, n) and view.visible(b, n)]
        if not frames:
            continue
        n = _pick(rng, frames)
        t = float(view.times[n])
        truth = float(np.linalg.norm(view.position(a, t) - view.position(b, t)))
        pair = [a, b] if rng.uniform() < 0.5 else [b, a]
        out.append(
            _numeric(
                "Dimensional Measurement",
                "distance.pair",
                PAIR_TEMPLATES,
                rng,
                truth,
                "m",
                pair,
                {"frame": n, "t": t},
            )
        )
    return [q for q in out if q is not None]


def relation_label(offset_cam: np.ndarray) -> str | None:
    """left / right / front / back of an offset (first minus second) in camera coordinates, or
    None when no direction clearly dominates."""
    dx, dz = float(offset_cam[0]), float(offset_cam[2])
    if abs(dx) >= SR_MIN_LATERAL and abs(dx) >= SR_DOMINANCE * abs(dz):
        return "right" if dx > 0 else "left"
    if abs(dz) >= SR_MIN_DEPTH and abs(dz) >= SR_DOMINANCE * abs(dx):
        return "back" if dz > 0 else "front"
    return None


def relation(view: SceneView, rng) -> list[Question]:
    out = []
    boxes = view.signals["boxes"]
    for a, b in itertools.combinations(view.regions, 2):
        if rng.uniform() < 0.5:
            a, b = b, a
        frames = [n for n in range(len(view.times)) if view.visible(a, n) and view.visible(b, n)]
        if not frames:
            continue
        n = _pick(rng, frames)
        label = relation_label(boxes[n, a, :3] - boxes[n, b, :3])
        if label is None:
            continue
        template = int(rng.integers(len(SR_TEMPLATES)))
        t = float(view.times[n])
        out.append(
            Question(
                task="Spatial Relation",
                kind="relation",
                template=template,
                text=SR_TEMPLATES[template].replace("{t}", _time(t)),
                options=list(SR_OPTIONS),
                answer=SR_OPTIONS.index(label),
                regions=[a, b],
                truth=label,
                params={"frame": n, "t": t, "subject": a, "reference": b},
            )
        )
    return out
