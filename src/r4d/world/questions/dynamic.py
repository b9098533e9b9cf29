"""Dynamic questions: Translational, Rotational, Counting, False Positives, Speed & Acceleration,
Displacement & Path Length.

Directions are read in the camera's horizontal axes (right, and forward flattened onto the
ground) and must agree at the first and last sampled frames, so a moving camera cannot change
the answer. False Positives share the Translational and Rotational templates and options: they
ask about a motion the object does not make, so the text never reveals that nothing moves.
"""

from __future__ import annotations

import numpy as np

from r4d.world.kinematics import speed, travelled
from r4d.world.questions.options import numeric_options
from r4d.world.questions.question import Question
from r4d.world.questions.view import SceneView

T_TEMPLATES = (
    "What direction is {r1} moving?",
    "In which direction does {r1} move during the video?",
    "Which way is {r1} heading?",
)
T_OPTIONS = ["left", "right", "towards the camera", "away from the camera", "not moving"]
T_MIN_DISTANCE = 0.5  # m of horizontal displacement over the video
T_DOMINANCE = 2.0

R_TEMPLATES = (
    "Is {r1} spinning clockwise or counter-clockwise, seen from above?",
    "Which way does {r1} rotate when viewed from above?",
    "What is the spinning direction of {r1}, seen from above?",
)
R_OPTIONS = ["clockwise", "counter-clockwise", "not spinning", "spinning back and forth"]

HOP_TEMPLATES = (
    "How many times does {r1} jump?",
    "How many jumps does {r1} make in the video?",
    "Count the number of times {r1} hops.",
)
MOVING_TEMPLATES = (
    "How many of {list} change position during the video?",
    "Among {list}, how many move from where they started?",
)
COUNT_OPTIONS = ["0", "1", "2", "3"]

AVG_SPEED_TEMPLATES = (
    "What is the average speed of {r1} from {t0} sec to {t1} sec? (unit: m/s)",
    "From {t0} sec to {t1} sec, how fast does {r1} move on average? (unit: m/s)",
)
SPEED_TEMPLATES = (
    "At {t} sec, what is the speed of {r1}? (unit: m/s)",
    "At {t} sec, what is the most appropriate instantaneous speed of {r1}? (unit: m/s)",
)
ACCEL_TEMPLATES = (
    "From {t0} sec to {t1} sec, what is the magnitude of the acceleration of {r1}? (unit: m/s^2)",
    "How quickly does the speed of {r1} change between {t0} sec and {t1} sec? (unit: m/s^2)",
)
DISPLACEMENT_TEMPLATES = (
    "From {t0} sec to {t1} sec, what is the displacement (straight-line distance) of {r1}? "
    "(unit: m)",
    "How far is {r1} at {t1} sec from where it was at {t0} sec, in a straight line? (unit: m)",
)
PATH_TEMPLATES = (
    "From {t0} sec to {t1} sec, what is the total path length travelled by {r1}? (unit: m)",
    "How long is the path {r1} travels from {t0} sec to {t1} sec? (unit: m)",
)
MIN_SPEED = 0.2  # m/s
MIN_ACCELERATION = 0.05  # m/s^2
MIN_DISTANCE = 0.3  # m
MIN_INTERVAL_FRAMES = 4  # sampled frames between t0 and t1
PATH_STEPS = 4096


def _pick(rng, items):
    return items[int(rng.integers(len(items)))]


def direction_label(displacement: np.ndarray, R_wc: np.ndarray) -> str | None:
    """The T_OPTIONS word for a world displacement seen from a camera (R_wc: camera-to-world)."""
    right = R_wc[:, 0]
    forward = R_wc[:, 2] * np.array([1.0, 1.0, 0.0])
    forward /= np.linalg.norm(forward)
    dx, dz = float(displacement @ right), float(displacement @ forward)
    if np.hypot(dx, dz) < T_MIN_DISTANCE:
        return None
    if abs(dx) >= T_DOMINANCE * abs(dz):
        return "right" if dx > 0 else "left"
    if abs(dz) >= T_DOMINANCE * abs(dx):
        return "away from the camera" if dz > 0 else "towards the camera"
    return None


def _categorical(task, kind, templates, options, label, k, rng, params=None) -> Question:
    template = int(rng.integers(len(templates)))
    return Question(
        task,
        kind,
        template,
        templates[template],
        list(options),
        options.index(label),
        [k],
        label,
        params=params or {},
    )


def translational(view: SceneView, rng) -> list[Question]:
    """Translational questions for translating objects; False Positives for still ones."""
    out = []
    R = view.signals["camera_rotation"]
    t_first, t_last = float(view.times[0]), float(view.times[-1])
    for k in view.regions:
        o = view.scene.objects[k]
        if not view.visible_throughout(k):
            continue
        if o.translation is not None:
            d = view.position(k, t_last) - view.position(k, t_first)
            d[2] = 0.0
            first, last = direction_label(d, R[0]), direction_label(d, R[-1])
            if first is not None and first == last:
                out.append(
                    _categorical(
                        "Translational", "direction", T_TEMPLATES, T_OPTIONS, first, k, rng
                    )
                )
        elif not o.moves:
            out.append(
                _categorical(
                    "False Positives", "direction", T_TEMPLATES, T_OPTIONS, "not moving", k, rng
                )
            )
    return out


def rotational(view: SceneView, rng) -> list[Question]:
    """Rotational questions for spinning objects; False Positives for objects that do not spin."""
    out = []
    for k in view.regions:
        o = view.scene.objects[k]
        if not view.visible_throughout(k):
            continue
        if o.spin is not None:
            label = "clockwise" if o.spin.direction == "cw" else "counter-clockwise"
            out.append(_categorical("Rotational", "spin", R_TEMPLATES, R_OPTIONS, label, k, rng))
        else:
            out.append(
                _categorical(
                    "False Positives", "spin", R_TEMPLATES, R_OPTIONS, "not spinning", k, rng
                )
            )
    return out


def _changes_position(view: SceneView, k: int) -> bool:
    o = view.scene.objects[k]
    return o.translation is not None or o.hop is not None


def counting(view: SceneView, rng) -> list[Question]:
    out = []
    seen = [k for k in view.regions if view.visible_throughout(k)]
    for k in seen:
        hop = view.scene.objects[k].hop
        count = hop.count if hop is not None else 0
        if count < len(COUNT_OPTIONS):
            q = _categorical("Counting", "hops", HOP_TEMPLATES, COUNT_OPTIONS, str(count), k, rng)
            q.truth = count
            out.append(q)
    if len(seen) >= 2:
        size = int(rng.integers(2, min(3, len(seen)) + 1))
        chosen = [seen[i] for i in rng.permutation(len(seen))[:size]]
        count = sum(_changes_position(view, k) for k in chosen)
        slots = [f"{{r{i + 1}}}" for i in range(size)]
        listing = ", ".join(slots[:-1]) + " and " + slots[-1]
        template = int(rng.integers(len(MOVING_TEMPLATES)))
        out.append(
            Question(
                "Counting",
                "moving",
                template,
                MOVING_TEMPLATES[template].replace("{list}", listing),
                list(COUNT_OPTIONS),
                count,
                chosen,
                count,
            )
        )
    return out


def _interval(view: SceneView, k: int, rng, latest: float | None = None):
    """Two sampled frames n0 < n1, at least MIN_INTERVAL_FRAMES apart, with k visible in both."""
    frames = [n for n in range(len(view.times)) if view.visible(k, n)]
    if latest is not None:
        frames = [n for n in frames if view.times[n] <= latest]
    pairs = [(a, b) for a in frames for b in frames if b - a >= MIN_INTERVAL_FRAMES]
    return _pick(rng, pairs) if pairs else None


def _numeric(task, kind, templates, rng, truth, unit, k, params) -> Question | None:
    made = numeric_options(truth, unit, rng)
    if made is None:
        return None
    options, answer = made
    template = int(rng.integers(len(templates)))
    text = templates[template]
    for name, value in params.items():
        if name in ("t", "t0", "t1"):
            text = text.replace("{" + name + "}", f"{value:.2f}")
    return Question(
        task, kind, template, text, options, answer, [k], float(truth), unit, params, decimals=2
    )


def path_length(view: SceneView, k: int, t0: float, t1: float) -> float:
    """Length (m) of the centre's 3D path from t0 to t1, summed over PATH_STEPS segments."""
    p = view.position(k, np.linspace(t0, t1, PATH_STEPS + 1))
    return float(np.linalg.norm(np.diff(p, axis=0), axis=-1).sum())


def speed_acceleration(view: SceneView, rng) -> list[Question]:
    """Speeds and accelerations of objects that slide without hopping (ground speed only)."""
    out = []
    task = "Speed & Acceleration"
    for k in view.regions:
        o = view.scene.objects[k]
        tr = o.translation
        if tr is None or o.hop is not None:
            continue
        pair = _interval(view, k, rng)
        if pair is not None:
            t0, t1 = (float(view.times[n]) for n in pair)
            average = float(travelled(tr, t1) - travelled(tr, t0)) / (t1 - t0)
            if average >= MIN_SPEED:
                out.append(
                    _numeric(
                        task,
                        "speed.average",
                        AVG_SPEED_TEMPLATES,
                        rng,
                        average,
                        "m/s",
                        k,
                        {"t0": t0, "t1": t1},
                    )
                )
        frames = [n for n in range(len(view.times)) if view.visible(k, n)]
        if frames:
            n = _pick(rng, frames)
            t = float(view.times[n])
            now = float(speed(tr, t))
            if now >= MIN_SPEED:
                out.append(
                    _numeric(
                        task,
                        "speed.instant",
                        SPEED_TEMPLATES,
                        rng,
                        now,
                        "m/s",
                        k,
                        {"t": t, "frame": n},
                    )
                )
        if tr.profile != "constant" and tr.acceleration >= MIN_ACCELERATION:
            stop = tr.speed / tr.acceleration if tr.profile == "decelerating" else None
            pair = _interval(view, k, rng, latest=stop)
            if pair is not None:
                t0, t1 = (float(view.times[n]) for n in pair)
                out.append(
                    _numeric(
                        task,
                        "acceleration",
                        ACCEL_TEMPLATES,
                        rng,
                        tr.acceleration,
                        "m/s^2",
                        k,
                        {"t0": t0, "t1": t1},
                    )
                )
    return [q for q in out if q is not None]


def displacement_path(view: SceneView, rng) -> list[Question]:
    out = []
    task = "Displacement & Path Length"
    for k in view.regions:
        if not _changes_position(view, k):
            continue
        pair = _interval(view, k, rng)
        if pair is None:
            continue
        t0, t1 = (float(view.times[n]) for n in pair)
        straight = float(np.linalg.norm(view.position(k, t1) - view.position(k, t0)))
        if straight >= MIN_DISTANCE:
            out.append(
                _numeric(
                    task,
                    "displacement",
                    DISPLACEMENT_TEMPLATES,
                    rng,
                    straight,
                    "m",
                    k,
                    {"t0": t0, "t1": t1},
                )
            )
        pair = _interval(view, k, rng)
        t0, t1 = (float(view.times[n]) for n in pair)
        path = path_length(view, k, t0, t1)
        if path >= MIN_DISTANCE:
            out.append(
                _numeric(task, "path", PATH_TEMPLATES, rng, path, "m", k, {"t0": t0, "t1": t1})
            )
    return [q for q in out if q is not None]
