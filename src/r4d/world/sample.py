"""Scene sampling: one seed -> one scene, the same on every run and machine.

All draws come from one `numpy.random.Generator(PCG64(seed))` in a fixed order, and every
sampled number is rounded (mm, centi-degrees) before any check, so the JSON is short, exact and
identical across machines. Rejection loops keep scenes well-posed: objects start in view, never
overlap along their paths, stay near the camera's target, and their motions are perceivable in
the default 16 uniformly sampled frames (spin under 80 degrees and hops of at least 2.6 sample
intervals in the air and 1.6 on the ground between jumps).
"""

from __future__ import annotations

import math

import numpy as np

from r4d.world.kinematics import camera_pose, object_pose
from r4d.world.scene import COLORS, SHAPES, Camera, Hop, Scene, SceneObject, Spin, Translation

FPS_CHOICES = (10, 12, 24, 30)
DURATION_RANGE = (2.0, 20.0)  # s
OBJECT_COUNT_RANGE = (2, 6)
SIZE_RANGE = (0.25, 1.5)  # m, every extent (the world allows 0.2-2)
ARENA_RADIUS = 1.6  # m around the camera target where objects start
MAX_TRAVEL = 4.0  # m an object may translate over a video
DEFAULT_SAMPLED_FRAMES = 16
MOTION_KINDS = (
    ((), 0.30),
    (("translation",), 0.25),
    (("spin",), 0.12),
    (("hop",), 0.10),
    (("translation", "spin"), 0.08),
    (("translation", "hop"), 0.07),
    (("spin", "hop"), 0.05),
    (("translation", "spin", "hop"), 0.03),
)
AXIS_ALIGNED_SHARE = 0.7  # of translations, headed near one of the camera's four directions
CAMERA_WEIGHTS = {"static": 0.4, "translate": 0.2, "pan": 0.2, "orbit": 0.2}


def _r(x: float, nd: int = 3) -> float:
    return round(float(x), nd)


def sample_interval(fps: float, num_frames: int, n: int = DEFAULT_SAMPLED_FRAMES) -> float:
    """Mean time (s) between n frames sampled uniformly over the video."""
    return (num_frames - 1) / fps / max(n - 1, 1)


def sample_scene(seed: int) -> Scene:
    """The scene of `seed`: 2-6 objects with motions, a static or moving camera, fps and length."""
    rng = np.random.default_rng(seed)
    fps = int(rng.choice(FPS_CHOICES))
    num_frames = max(2, round(rng.uniform(*DURATION_RANGE) * fps))
    duration = num_frames / fps
    camera = _sample_camera(rng, duration)
    count = int(rng.integers(OBJECT_COUNT_RANGE[0], OBJECT_COUNT_RANGE[1] + 1))
    objects: list[SceneObject] = []
    used: set[tuple[str, str]] = set()
    times = np.linspace(0.0, duration, 120)
    cam_R, cam_C = camera_pose(camera, times)
    for _ in range(count):
        for _attempt in range(200):
            obj = _sample_object(rng, camera, fps, num_frames, used)
            if _fits(obj, objects, times, camera, cam_R, cam_C):
                objects.append(obj)
                used.add((obj.shape, obj.color))
                break
    return Scene(fps=fps, num_frames=num_frames, camera=camera, objects=tuple(objects), seed=seed)


def _sample_camera(rng: np.random.Generator, duration: float) -> Camera:
    target = (_r(rng.uniform(-0.5, 0.5)), _r(rng.uniform(-0.5, 0.5)), _r(rng.uniform(0.0, 0.4)))
    azimuth = rng.uniform(0, 2 * math.pi)
    distance = rng.uniform(4.0, 5.5)
    position = (
        _r(target[0] + distance * math.cos(azimuth)),
        _r(target[1] + distance * math.sin(azimuth)),
        _r(rng.uniform(1.8, 3.2)),
    )
    fov = _r(rng.uniform(38.0, 48.0), 2)
    motion = str(rng.choice(list(CAMERA_WEIGHTS), p=list(CAMERA_WEIGHTS.values())))
    sign = 1.0 if rng.uniform() < 0.5 else -1.0
    velocity, rate = (0.0, 0.0, 0.0), 0.0
    if motion == "translate":
        heading = azimuth + math.pi / 2 + rng.uniform(-0.6, 0.6)  # mostly sideways
        speed = min(rng.uniform(0.1, 0.4), 3.0 / duration)
        velocity = (_r(speed * math.cos(heading)), _r(speed * math.sin(heading)), 0.0)
    elif motion == "pan":
        rate = _r(sign * min(rng.uniform(1.5, 4.0), 20.0 / duration), 2)
    elif motion == "orbit":
        rate = _r(sign * min(rng.uniform(3.0, 10.0), 40.0 / duration), 2)
    if motion != "static" and rate == 0.0 and velocity == (0.0, 0.0, 0.0):
        motion = "static"
    return Camera(motion, position, target, fov, velocity, rate)


def _sample_object(rng, camera: Camera, fps: int, num_frames: int, used) -> SceneObject:
    duration = num_frames / fps
    while True:
        shape = str(rng.choice(SHAPES))
        color = str(rng.choice(list(COLORS)))
        if (shape, color) not in used:
            break
    lo, hi = SIZE_RANGE
    if shape == "sphere":
        d = _r(rng.uniform(lo + 0.05, 1.1))
        size = (d, d, d)
    elif shape == "cylinder":
        d = _r(rng.uniform(lo + 0.05, 1.0))
        size = (d, d, _r(rng.uniform(lo + 0.05, hi)))
    else:
        size = (_r(rng.uniform(lo, 1.2)), _r(rng.uniform(lo, 1.2)), _r(rng.uniform(lo, 1.2)))
    radius = rng.uniform(0, ARENA_RADIUS)
    angle = rng.uniform(0, 2 * math.pi)
    position = (
        _r(camera.target[0] + radius * math.cos(angle)),
        _r(camera.target[1] + radius * math.sin(angle)),
    )
    kinds = [k for k, _ in MOTION_KINDS]
    weights = [w for _, w in MOTION_KINDS]
    kind = kinds[int(rng.choice(len(kinds), p=weights))]
    step = sample_interval(fps, num_frames)
    return SceneObject(
        shape=shape,
        color=color,
        size=size,
        position=position,
        yaw_deg=_r(rng.uniform(0, 360), 2),
        translation=_sample_translation(rng, camera, duration) if "translation" in kind else None,
        spin=_sample_spin(rng, step) if "spin" in kind else None,
        hop=_sample_hop(rng, duration, step) if "hop" in kind else None,
    )


def _sample_translation(rng, camera: Camera, duration: float) -> Translation:
    """Most headings lie within 20 degrees of the camera's left, right, forward or backward
    (clear directions to ask about); the rest are uniform."""
    profile = str(rng.choice(["constant", "accelerating", "decelerating"]))
    view = math.degrees(
        math.atan2(camera.target[1] - camera.position[1], camera.target[0] - camera.position[0])
    )
    if rng.uniform() < AXIS_ALIGNED_SHARE:
        heading = _r((view + 90.0 * rng.integers(4) + rng.uniform(-20, 20)) % 360.0, 2)
    else:
        heading = _r(rng.uniform(0, 360), 2)
    speed = rng.uniform(0.3, 1.2)
    if profile == "constant":
        speed = min(speed, MAX_TRAVEL / duration)
        return Translation(profile, heading, max(_r(speed), 0.05), 0.0)
    if profile == "accelerating":
        accel = rng.uniform(0.05, 0.3)
        scale = min(1.0, MAX_TRAVEL / (speed * duration + 0.5 * accel * duration**2))
        return Translation(
            profile, heading, max(_r(speed * scale), 0.05), max(_r(accel * scale), 0.01)
        )
    t_stop = rng.uniform(0.3, 0.8) * duration
    speed = min(speed, 2 * MAX_TRAVEL / t_stop)
    return Translation(profile, heading, _r(speed), max(_r(speed / t_stop), 0.001))


def _sample_spin(rng, step: float) -> Spin:
    direction = "cw" if rng.uniform() < 0.5 else "ccw"
    rate = min(rng.uniform(20.0, 80.0) / step, 270.0)
    return Spin(direction, _r(rate, 2))


def _sample_hop(rng, duration: float, step: float) -> Hop | None:
    min_period = max(4.4 * step, 0.8)
    count = int(rng.integers(1, 4))
    while count > 1 and count * min_period > duration - step:
        count -= 1
    period = rng.uniform(min_period, max(min_period, (duration - step) / count))
    lo = max(2.6 * step / period, 0.3)
    hi = min(1.0 - 1.6 * step / period, 0.85)
    air = rng.uniform(lo, max(lo, hi))
    last_landing = (count - 1) * period + air * period
    start = rng.uniform(0.5 * step, max(0.5 * step, duration - 0.5 * step - last_landing))
    height = rng.uniform(0.3, 1.0)
    return Hop(count, _r(height), _r(start), _r(period), _r(air))


def _fits(obj: SceneObject, placed, times, camera: Camera, cam_R, cam_C) -> bool:
    """Start in view, stay within reach, never overlap another object or the camera."""
    centre, _ = object_pose(obj, times)
    target_xy = np.asarray(camera.target[:2])
    if np.any(np.linalg.norm(centre[:, :2] - target_xy, axis=-1) > 2.5 * ARENA_RADIUS):
        return False
    radius = 0.5 * math.hypot(obj.size[0], obj.size[1])
    if np.any(np.linalg.norm(centre - cam_C, axis=-1) < 0.5 * np.linalg.norm(obj.size) + 1.5):
        return False
    cam0 = cam_R[0].T @ (centre[0] - cam_C[0])
    half = math.tan(math.radians(camera.fov_deg) / 2) * 0.8
    if cam0[2] < 2.0 or abs(cam0[0] / cam0[2]) > half or abs(cam0[1] / cam0[2]) > half:
        return False
    for other in placed:
        other_centre, _ = object_pose(other, times)
        gap = np.linalg.norm(centre[:, :2] - other_centre[:, :2], axis=-1)
        if np.any(gap < radius + 0.5 * math.hypot(other.size[0], other.size[1]) + 0.15):
            return False
    return True
