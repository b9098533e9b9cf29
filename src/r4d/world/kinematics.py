"""Where things are at time t: object poses and camera poses, analytic and vectorised over t.

Object pose: centre (world, m) and yaw (rad, ccw about +z). Object local axes: x and y
horizontal (rotated by yaw), z up. Camera pose: R_wc, the camera-to-world rotation whose
columns are the camera's OpenCV axes (x right, y down, z forward) in world coordinates, and
C, the camera centre in world coordinates; a world point X has camera coordinates
R_wc^T (X - C).
"""

from __future__ import annotations

import numpy as np

from r4d.world.scene import Camera, SceneObject, Translation

WORLD_UP = np.array([0.0, 0.0, 1.0])


def travelled(tr: Translation | None, t: np.ndarray) -> np.ndarray:
    """Distance s(t) (m) along the heading after t seconds (see `Translation`)."""
    t = np.asarray(t, dtype=np.float64)
    if tr is None:
        return np.zeros_like(t)
    if tr.profile == "constant":
        return tr.speed * t
    if tr.profile == "accelerating":
        return tr.speed * t + 0.5 * tr.acceleration * t**2
    tau = np.minimum(t, tr.speed / tr.acceleration)
    return tr.speed * tau - 0.5 * tr.acceleration * tau**2


def speed(tr: Translation | None, t: np.ndarray) -> np.ndarray:
    """Instantaneous ground speed (m/s) at t."""
    t = np.asarray(t, dtype=np.float64)
    if tr is None:
        return np.zeros_like(t)
    if tr.profile == "constant":
        return np.full_like(t, tr.speed)
    if tr.profile == "accelerating":
        return tr.speed + tr.acceleration * t
    return np.maximum(tr.speed - tr.acceleration * t, 0.0)


def hop_height(obj: SceneObject, t: np.ndarray) -> np.ndarray:
    """Height (m) of the object's base above the ground at t: parabolic arcs during each jump."""
    t = np.asarray(t, dtype=np.float64)
    z = np.zeros_like(t)
    hop = obj.hop
    if hop is None:
        return z
    air = hop.air_fraction * hop.period
    for k in range(hop.count):
        tau = (t - (hop.start + k * hop.period)) / air
        inside = (tau > 0) & (tau < 1)
        z = np.where(inside, 4.0 * hop.height * tau * (1.0 - tau), z)
    return z


def object_pose(obj: SceneObject, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre (..., 3) in world metres and yaw (...) in radians at times t (...)."""
    t = np.asarray(t, dtype=np.float64)
    x0, y0 = obj.position
    s = travelled(obj.translation, t)
    heading = np.deg2rad(obj.translation.heading_deg) if obj.translation else 0.0
    centre = np.stack(
        [
            x0 + s * np.cos(heading),
            y0 + s * np.sin(heading),
            0.5 * obj.size[2] + hop_height(obj, t),
        ],
        axis=-1,
    )
    yaw = np.full_like(t, np.deg2rad(obj.yaw_deg))
    if obj.spin is not None:
        sign = 1.0 if obj.spin.direction == "ccw" else -1.0
        yaw = yaw + sign * np.deg2rad(obj.spin.rate_deg_s) * t
    return centre, yaw


def rot_z(angle: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) about +z by `angle` radians (ccw seen from above)."""
    c, s = np.cos(angle), np.sin(angle)
    zero, one = np.zeros_like(c), np.ones_like(c)
    return np.stack(
        [np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1), np.stack([zero, zero, one], -1)],
        axis=-2,
    )


def look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera-to-world rotation (..., 3, 3), OpenCV axes: z towards target, y down (world -z)."""
    forward = target - position
    forward = forward / np.linalg.norm(forward, axis=-1, keepdims=True)
    right = np.cross(forward, WORLD_UP)
    right = right / np.linalg.norm(right, axis=-1, keepdims=True)
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=-1)


def camera_pose(cam: Camera, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R_wc (..., 3, 3) and camera centre C (..., 3) at times t (...)."""
    t = np.asarray(t, dtype=np.float64)
    position = np.broadcast_to(np.asarray(cam.position, dtype=np.float64), (*t.shape, 3))
    target = np.broadcast_to(np.asarray(cam.target, dtype=np.float64), (*t.shape, 3))
    if cam.motion == "translate":
        shift = t[..., None] * np.asarray(cam.velocity, dtype=np.float64)
        position, target = position + shift, target + shift
    elif cam.motion == "pan":
        turn = rot_z(np.deg2rad(cam.rate_deg_s) * t)
        target = position + np.einsum("...ij,...j->...i", turn, target - position)
    elif cam.motion == "orbit":
        turn = rot_z(np.deg2rad(cam.rate_deg_s) * t)
        position = target + np.einsum("...ij,...j->...i", turn, position - target)
    return look_at(position, target), np.array(position)


def focal_px(fov_deg: float, width: int) -> float:
    """Focal length in pixels for a horizontal field of view over `width` pixels (square pixels)."""
    return 0.5 * width / np.tan(0.5 * np.deg2rad(fov_deg))


def intrinsics(cam: Camera, height: int, width: int) -> np.ndarray:
    """K (3, 3): focal from the horizontal FOV, principal point at the image centre."""
    f = focal_px(cam.fov_deg, width)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def project(K: np.ndarray, R_wc: np.ndarray, C: np.ndarray, X: np.ndarray):
    """Project world points X (..., 3) with camera pose(s) R_wc (..., 3, 3), C (..., 3) that
    broadcast against them: pixel coordinates (..., 2) (the centre of pixel (u, v) is at
    (u + 0.5, v + 0.5)) and z-depth (...) in the camera."""
    Xc = np.einsum("...ji,...j->...i", R_wc, X - C)
    z = Xc[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([K[0, 0] * Xc[..., 0] / z + K[0, 2], K[1, 1] * Xc[..., 1] / z + K[1, 2]], -1)
    return uv, z
