"""Analytic ray casting of a scene: exact RGB, depth, instance ids, flow, motion, camray, boxes.

Every pixel's ray leaves the camera centre through the pixel centre (u + 0.5, v + 0.5) and is
intersected in closed form with the ground square (z = 0, |x|, |y| <= GROUND_HALF_SIZE) and
each object in the object's local frame. Conventions (also in `r4d.world`):

- rgb: uint8 (N, H, W, 3), Lambertian shading under one directional light, no shadows.
- depth: float32 (N, H, W), z-depth in metres along the camera's optical axis (not the ray
  length); 0 marks the invalid background (sky).
- ids: uint8 (N, H, W), 0 = no object (ground or sky), k = scene.objects[k - 1].
- flow: float32 (N, H, W, 2), backward optical flow (dx, dy) in pixels from frame n to frame
  n - 1 of the given times (L4P's convention): the surface point seen at pixel centre p in frame
  n was at p + flow in frame n - 1. Sky pixels are points at infinity (only camera rotation
  moves them). flow[0] is all zeros (no previous frame).
- motion: bool (N, H, W), pixels of objects whose world pose (centre or yaw) differs between
  frame n - 1 and frame n; motion[0] uses the interval from frame 0 to frame 1.
- camray: float32 (N, H, W, 6), Plucker rays [d, o x d] of each pixel centre with unit
  direction d and camera centre o, both in the first given frame's camera coordinates.
- boxes: float64 (N, K, 9), per object per frame the 3D box in camera coordinates:
  centre (x, y, z) m, size (width, height, length) m, orientation (yaw, pitch, roll) degrees.
  The box frame is the object's frame in OpenCV style: x = local x, y = down, z = local y; its
  rotation in camera coordinates is R = R_y(yaw) R_x(pitch) R_z(roll) (camera y is down, so
  yaw turns about the vertical of a level camera). An upright object with local x along the
  camera's x, seen by a level camera, has yaw = pitch = roll = 0.
- visibility: int64 (N, K) pixel count of each object; world_position: float64 (N, K, 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from r4d.world.kinematics import camera_pose, intrinsics, object_pose, rot_z
from r4d.world.scene import COLORS, Scene, SceneObject

GROUND_HALF_SIZE = 25.0  # m; beyond the ground square is sky
CHECKER_SIZE = 1.0  # m
GROUND_COLORS = np.array([[0.78, 0.76, 0.70], [0.50, 0.48, 0.44]])
SKY_TOP = np.array([0.42, 0.62, 0.90])
SKY_HORIZON = np.array([0.86, 0.90, 0.96])
LIGHT = np.array([0.35, -0.5, 0.8]) / np.linalg.norm([0.35, -0.5, 0.8])
AMBIENT = 0.32
STRIPE_DARK = 0.62
MARKER_COLOR = np.array([0.07, 0.07, 0.07])
NEAR = 0.05  # m
LIT_LEVELS = 256  # steps of the lighting factor in the colour lookup
_LIGHT32 = LIGHT.astype(np.float32)
SKY_LEVELS = 128  # steps of the sky gradient

SKY, GROUND = -1, 0
CHUNK = 16  # frames traced together: one culling rectangle per object per chunk

# The box frame's axes (columns) in the object's local frame: x, down (-z), local y.
BOX_FROM_LOCAL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

ALL_SIGNALS = ("rgb", "depth", "ids", "flow", "motion", "camray", "boxes")


@dataclass
class Hits:
    """What each ray hit at n times. Per-pixel arrays are component-first float32:
    (n, H, W) or (3, n, H, W)."""

    dist: np.ndarray  # ray length to the hit (m); inf for sky
    kind: np.ndarray  # int16: SKY, GROUND, or k >= 1 for scene.objects[k - 1]
    local: np.ndarray  # hit point: object-local coordinates for objects, world for ground
    light: np.ndarray  # max(n . LIGHT, 0) of the world surface normal n (0 for sky)
    dirs_world: np.ndarray  # unit ray directions in world coordinates


def pixel_centres(height: int, width: int) -> np.ndarray:
    """(H, W, 2) coordinates (u + 0.5, v + 0.5) of every pixel centre."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([u + 0.5, v + 0.5], axis=-1)


def pixel_dirs(K: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Unit ray directions (3, ...) float32 (camera frame) through image points uv (..., 2)."""
    x = (uv[..., 0] - K[0, 2]) / K[0, 0]
    y = (uv[..., 1] - K[1, 2]) / K[1, 1]
    d = np.stack([x, y, np.ones_like(x)])
    return (d / np.sqrt((d * d).sum(axis=0))).astype(np.float32)


def _rotate(R: np.ndarray, v) -> np.ndarray:
    """Apply rotations R (n, 3, 3) to component-first vectors v (3, ...) -> (3, n, ...).

    Written as elementwise products and sums (no BLAS), so results are bit-identical on every
    machine."""
    Rf = R.astype(np.float32)[..., None, None]  # Rf[:, i, j] broadcasts as (n, 1, 1)
    out = np.empty((3, len(R), *np.shape(v[0])[-2:]), np.float32)
    tmp = np.empty_like(out[0])
    for i in range(3):
        np.multiply(Rf[:, i, 0], v[0], out=out[i])
        out[i] += np.multiply(Rf[:, i, 1], v[1], out=tmp)
        out[i] += np.multiply(Rf[:, i, 2], v[2], out=tmp)
    return out


def _col(x: np.ndarray) -> np.ndarray:
    """(n,) per-frame values as float32 (n, 1, 1) to broadcast over (n, H, W)."""
    return np.asarray(x, dtype=np.float32).reshape(-1, 1, 1)


def _hit_sphere(o, d, size):
    r = np.float32(0.5 * size[0])
    b = o[0] * d[0] + o[1] * d[1] + o[2] * d[2]
    disc = b * b - (o[0] * o[0] + o[1] * o[1] + o[2] * o[2] - r * r)
    s = -b - np.sqrt(np.maximum(disc, 0))
    s = np.where((disc >= 0) & (s > NEAR), s, np.inf)
    sf = np.where(np.isfinite(s), s, 0)
    return s, [(o[i] + sf * d[i]) / r for i in range(3)]


def _hit_box(o, d, size):
    near, far = [], []
    for i in range(3):
        h = np.float32(0.5 * size[i])
        inv = 1 / d[i]
        t1, t2 = (-h - o[i]) * inv, (h - o[i]) * inv
        near.append(np.minimum(t1, t2))
        far.append(np.maximum(t1, t2))
    t_near = np.maximum(np.maximum(near[0], near[1]), near[2])
    t_far = np.minimum(np.minimum(far[0], far[1]), far[2])
    s = np.where((t_far >= t_near) & (t_near > NEAR), t_near, np.inf)
    taken = np.zeros(s.shape, bool)
    normal = []
    for i in range(3):
        face = (near[i] == t_near) & ~taken
        taken |= face
        normal.append(np.where(face, -np.sign(d[i]), 0).astype(np.float32))
    return s, normal


def _hit_cylinder(o, d, size):
    r, hh = np.float32(0.5 * size[0]), np.float32(0.5 * size[2])
    a = d[0] * d[0] + d[1] * d[1]
    b = o[0] * d[0] + o[1] * d[1]
    disc = b * b - a * (o[0] * o[0] + o[1] * o[1] - r * r)
    s_side = (-b - np.sqrt(np.maximum(disc, 0))) / a
    side_ok = (disc >= 0) & (a > 0) & (s_side > NEAR) & (np.abs(o[2] + s_side * d[2]) <= hh)
    s_side = np.where(side_ok, s_side, np.inf)
    cap_z = np.where(o[2] > 0, hh, -hh)  # the cap facing the camera
    s_cap = (cap_z - o[2]) / d[2]
    px, py = o[0] + s_cap * d[0], o[1] + s_cap * d[1]
    s_cap = np.where((s_cap > NEAR) & (px * px + py * py <= r * r), s_cap, np.inf)
    use_cap = s_cap < s_side
    s = np.minimum(s_side, s_cap)
    sf = np.where(np.isfinite(s), s, 0)
    normal = [
        np.where(use_cap, 0, (o[0] + sf * d[0]) / r),
        np.where(use_cap, 0, (o[1] + sf * d[1]) / r),
        np.where(use_cap, np.sign(cap_z), 0),
    ]
    return s, [n.astype(np.float32) for n in normal]


HITTERS = {"sphere": _hit_sphere, "box": _hit_box, "cylinder": _hit_cylinder}


def _screen_rect(obj: SceneObject, centres, K, R_wc, C, height, width):
    """Rows/cols (v0, v1, u0, u1) that can see the object at any of n poses: the union over
    frames of the projected corners of its bounding cube (in camera axes), or the whole image
    if the cube reaches the near plane."""
    r = 0.5 * float(np.linalg.norm(obj.size))
    x, y, z = np.einsum("nji,nj->in", R_wc, centres - C)
    if np.any(z - r <= NEAR):
        return 0, height, 0, width
    u = [(x + a) / (z + b) for a in (-r, r) for b in (-r, r)]
    v = [(y + a) / (z + b) for a in (-r, r) for b in (-r, r)]
    u0 = int(np.floor(K[0, 0] * min(map(np.min, u)) + K[0, 2]))
    u1 = int(np.ceil(K[0, 0] * max(map(np.max, u)) + K[0, 2]))
    v0 = int(np.floor(K[1, 1] * min(map(np.min, v)) + K[1, 2]))
    v1 = int(np.ceil(K[1, 1] * max(map(np.max, v)) + K[1, 2]))
    return max(v0, 0), min(v1, height), max(u0, 0), min(u1, width)


def trace(scene: Scene, times, dirs_cam: np.ndarray, K: np.ndarray | None = None) -> Hits:
    """Cast the rays `dirs_cam` (3, H, W) (camera coordinates) at each of `times` (n,).

    With K given, the rays are a full image's and each object is tested only inside the
    rectangle its bounding cube projects to over these times: the same result, much faster.
    """
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    R_wc, C = camera_pose(scene.camera, times)
    dirs = _rotate(R_wc, dirs_cam)
    n, height, width = dirs.shape[1:]
    cx, cy, cz = _col(C[:, 0]), _col(C[:, 1]), _col(C[:, 2])

    local = np.empty((3, n, height, width), np.float32)
    gx, gy = local[0], local[1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s_ground = -cz / dirs[2]
        np.add(cx, np.multiply(s_ground, dirs[0], out=gx), out=gx)
        np.add(cy, np.multiply(s_ground, dirs[1], out=gy), out=gy)
    local[2] = 0
    on_ground = (s_ground > NEAR) & (np.abs(gx) <= GROUND_HALF_SIZE)
    on_ground &= np.abs(gy) <= GROUND_HALF_SIZE
    dist = np.where(on_ground, s_ground, np.float32(np.inf))
    kind = np.where(on_ground, np.int16(GROUND), np.int16(SKY))
    light = np.where(on_ground, np.float32(LIGHT[2]), np.float32(0))

    for k, obj in enumerate(scene.objects, start=1):
        centre, yaw = object_pose(obj, times)
        v0, v1, u0, u1 = (
            _screen_rect(obj, centre, K, R_wc, C, height, width)
            if K is not None
            else (0, height, 0, width)
        )
        if v0 >= v1 or u0 >= u1:
            continue
        blk = (slice(None), slice(v0, v1), slice(u0, u1))
        c, s = _col(np.cos(yaw)), _col(np.sin(yaw))
        ow = C - centre
        o = [c * _col(ow[:, 0]) + s * _col(ow[:, 1]), -s * _col(ow[:, 0]) + c * _col(ow[:, 1])]
        o.append(_col(ow[:, 2]))
        dx, dy, dz = dirs[0][blk], dirs[1][blk], dirs[2][blk]
        d = [c * dx + s * dy, -s * dx + c * dy, dz]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            hit, nl = HITTERS[obj.shape](o, d, obj.size)
            closer = hit < dist[blk]
            if not closer.any():
                continue
            dist[blk] = np.where(closer, hit, dist[blk])
            kind[blk] = np.where(closer, k, kind[blk])
            for i in range(3):
                local[i][blk] = np.where(closer, o[i] + hit * d[i], local[i][blk])
        lx, ly, lz = _LIGHT32
        cos = (c * lx + s * ly) * nl[0] + (c * ly - s * lx) * nl[1] + lz * nl[2]  # n_world . L
        light[blk] = np.where(closer, np.maximum(cos, 0), light[blk])
    return Hits(dist, kind, local, light, dirs)


def surface_pattern(local) -> tuple[np.ndarray, np.ndarray]:
    """Stripe parity and marker of object-local points (3, ...): the 8 azimuthal sectors
    (octants) about the local vertical alternate light / dark, and the sector of azimuth
    [0, 45) degrees (from local +x towards +y) is the dark marker, so spin direction is visible."""
    right, front = local[0] >= 0, local[1] >= 0
    wide = np.abs(local[0]) >= np.abs(local[1])
    return ~(right ^ front ^ wide), right & front & wide


def shade(scene: Scene, hits: Hits) -> np.ndarray:
    """RGB uint8 (n, H, W, 3) of traced hits: patterned objects, checker ground, sky gradient.

    Every pixel gets a material (the sky gradient in SKY_LEVELS steps of sqrt(elevation), the
    two ground checker colours, the light and dark stripe of each object, the marker) and a
    lighting level AMBIENT + (1 - AMBIENT) max(n . L, 0) in LIT_LEVELS steps; one lookup in a
    (material x level) uint8 table gives the colour.
    """
    kind = hits.kind
    colours = np.concatenate(
        [_sky_table(), GROUND_COLORS, _object_table(scene), MARKER_COLOR[None]]
    )
    levels = AMBIENT + (1 - AMBIENT) * np.linspace(0.0, 1.0, LIT_LEVELS)
    table = (255 * colours[:, None, :] * levels[None, :, None] + 0.5).astype(np.uint8)
    table[:SKY_LEVELS] = (255 * colours[:SKY_LEVELS, None, :] + 0.5).astype(np.uint8)  # unlit
    first_ground, first_object = SKY_LEVELS, SKY_LEVELS + 2
    elevation = np.sqrt(np.clip(hits.dirs_world[2], 0, 1))
    material = (elevation * (SKY_LEVELS - 1) + 0.5).astype(np.int32)
    cells = np.floor(hits.local[0] / CHECKER_SIZE) + np.floor(hits.local[1] / CHECKER_SIZE)
    material = np.where(kind == GROUND, first_ground + (cells.astype(np.int32) & 1), material)
    dark, marker = surface_pattern(hits.local)
    obj = first_object - 2 + 2 * kind.astype(np.int32) + dark
    material = np.where(kind > 0, np.where(marker, len(colours) - 1, obj), material)
    level = (hits.light * (LIT_LEVELS - 1) + 0.5).astype(np.int32)
    packed = np.zeros((*table.shape[:2], 4), np.uint8)  # RGB + pad: one uint32 per entry
    packed[..., :3] = table
    rgba = packed.view(np.uint32).reshape(-1).take(material * LIT_LEVELS + level)
    return rgba.view(np.uint8).reshape(*material.shape, 4)[..., :3]


def _sky_table() -> np.ndarray:
    level = np.linspace(0.0, 1.0, SKY_LEVELS)[:, None]
    return SKY_HORIZON + (SKY_TOP - SKY_HORIZON) * level


def _object_table(scene: Scene) -> np.ndarray:
    """(2K, 3): the light and dark stripe colour of each object, in order."""
    rows = [(COLORS[o.color], STRIPE_DARK * np.asarray(COLORS[o.color])) for o in scene.objects]
    return np.array([c for pair in rows for c in pair]).reshape(-1, 3)


def euler_yxz(R: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) radians (..., 3) with R = R_y(yaw) R_x(pitch) R_z(roll)."""
    pitch = np.arcsin(np.clip(-R[..., 1, 2], -1.0, 1.0))
    yaw = np.arctan2(R[..., 0, 2], R[..., 2, 2])
    roll = np.arctan2(R[..., 1, 0], R[..., 1, 1])
    return np.stack([yaw, pitch, roll], axis=-1)


def object_boxes(scene: Scene, times) -> tuple[np.ndarray, np.ndarray]:
    """3D boxes (N, K, 9) in camera coordinates (module docstring) and world centres (N, K, 3)."""
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    R_wc, C = camera_pose(scene.camera, times)
    boxes = np.zeros((len(times), len(scene.objects), 9))
    world = np.zeros((len(times), len(scene.objects), 3))
    for k, obj in enumerate(scene.objects):
        centre, yaw = object_pose(obj, times)
        world[:, k] = centre
        boxes[:, k, 0:3] = np.einsum("nji,nj->ni", R_wc, centre - C)
        width, length, height = obj.size
        boxes[:, k, 3:6] = (width, height, length)
        R = np.swapaxes(R_wc, -1, -2) @ rot_z(yaw) @ BOX_FROM_LOCAL
        boxes[:, k, 6:9] = np.rad2deg(euler_yxz(R))
    return boxes, world


def _per_kind(scene: Scene, times: np.ndarray) -> np.ndarray:
    """(n, K + 2, 5) float32 pose table indexed by kind + 1: cos yaw, sin yaw, centre x, y, z.
    Ground (row 1) is the identity, so local points map to world points by one formula."""
    table = np.zeros((len(times), len(scene.objects) + 2, 5), np.float32)
    table[:, :2, 0] = 1.0
    for k, obj in enumerate(scene.objects, start=2):
        centre, yaw = object_pose(obj, times)
        table[:, k] = np.column_stack([np.cos(yaw), np.sin(yaw), centre])
    return table


def _backward_flow(scene: Scene, hits: Hits, K: np.ndarray, uv, t_prev: np.ndarray) -> np.ndarray:
    """(2, n, H, W): where each pixel's surface point was at t_prev, minus the pixel centre."""
    R_prev, C_prev = camera_pose(scene.camera, t_prev)
    frame = np.arange(len(t_prev))[:, None, None]
    pose = _per_kind(scene, t_prev)[frame, hits.kind + 1]  # (n, H, W, 5)
    c, s = pose[..., 0], pose[..., 1]
    lx, ly, lz = hits.local
    sky = hits.kind == SKY
    cp = [_col(C_prev[:, i]) for i in range(3)]
    # A point at infinity along d projects like C_prev + d.
    point = [
        np.where(sky, cp[0] + hits.dirs_world[0], c * lx - s * ly + pose[..., 2]),
        np.where(sky, cp[1] + hits.dirs_world[1], s * lx + c * ly + pose[..., 3]),
        np.where(sky, cp[2] + hits.dirs_world[2], lz + pose[..., 4]),
    ]
    xc = _rotate(np.swapaxes(R_prev, -1, -2), [point[i] - cp[i] for i in range(3)])
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.float32(K[0, 0]) * xc[0] / xc[2] + np.float32(K[0, 2])
        v = np.float32(K[1, 1]) * xc[1] / xc[2] + np.float32(K[1, 2])
    return np.stack([u - uv[..., 0], v - uv[..., 1]])


def _moving(scene: Scene, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """(n, K + 1) bool indexed by id: does object k's world pose differ between t0 and t1?"""
    moving = np.zeros((len(t0), len(scene.objects) + 1), dtype=bool)
    for k, obj in enumerate(scene.objects, start=1):
        (c0, y0), (c1, y1) = object_pose(obj, t0), object_pose(obj, t1)
        moving[:, k] = np.any(np.abs(c1 - c0) > 1e-9, axis=-1) | (np.abs(y1 - y0) > 1e-9)
    return moving


def camray(scene: Scene, times, dirs_cam: np.ndarray) -> np.ndarray:
    """Plucker rays [d, o x d] (n, H, W, 6) in the first time's camera coordinates."""
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    R_wc, C = camera_pose(scene.camera, times)
    to_first = np.swapaxes(R_wc[:1], -1, -2) @ R_wc  # (n, 3, 3)
    d = _rotate(to_first, dirs_cam)
    o = np.einsum("ji,nj->ni", R_wc[0], C - C[0])
    ox, oy, oz = (_col(o[:, i]) for i in range(3))
    m = [oy * d[2] - oz * d[1], oz * d[0] - ox * d[2], ox * d[1] - oy * d[0]]
    return np.stack([*d, *m], axis=-1)


def render(
    scene: Scene,
    times,
    height: int = 128,
    width: int = 128,
    signals: Sequence[str] = ALL_SIGNALS,
    chunk: int = CHUNK,
) -> dict[str, np.ndarray]:
    """Render the requested signals at `times` (seconds, any order); see the module docstring.

    Returns a dict with "times" and the requested signals; "boxes" also adds "visibility" and
    "world_position". Frames are traced `chunk` at a time (any chunk gives the same result).
    """
    unknown = sorted(set(signals) - set(ALL_SIGNALS))
    if unknown:
        raise ValueError(f"unknown signal(s) {unknown}; known: {list(ALL_SIGNALS)}")
    want = set(signals)
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    n = len(times)
    K = intrinsics(scene.camera, height, width)
    uv = pixel_centres(height, width).astype(np.float32)
    dirs_cam = pixel_dirs(K, uv)

    out: dict[str, np.ndarray] = {"times": times}
    if "rgb" in want:
        out["rgb"] = np.empty((n, height, width, 3), np.uint8)
    if "depth" in want:
        out["depth"] = np.empty((n, height, width), np.float32)
    ids = np.empty((n, height, width), np.uint8)
    if "flow" in want:
        out["flow"] = np.zeros((n, height, width, 2), np.float32)
    if "motion" in want:
        out["motion"] = np.zeros((n, height, width), bool)
    if "camray" in want:
        out["camray"] = camray(scene, times, dirs_cam)

    prev = np.concatenate([times[:1], times[:-1]])  # frame 0 pairs with itself (zero flow)
    if n > 1:
        motion_a = np.concatenate([times[:1], times[:-1]])
        motion_b = np.concatenate([times[1:2], times[1:]])  # frame 0 uses frames 0 -> 1
    if want & {"rgb", "depth", "ids", "flow", "motion", "boxes"}:
        for a in range(0, n, chunk):
            sl = slice(a, min(a + chunk, n))
            hits = trace(scene, times[sl], dirs_cam, K)
            ids[sl] = np.clip(hits.kind, 0, None)
            if "rgb" in want:
                out["rgb"][sl] = shade(scene, hits)
            if "depth" in want:
                out["depth"][sl] = np.where(hits.kind == SKY, 0, hits.dist * dirs_cam[2])
            if "flow" in want:
                flow = _backward_flow(scene, hits, K, uv, prev[sl])
                out["flow"][sl] = np.moveaxis(flow, 0, -1)
            if "motion" in want and n > 1:
                moving = _moving(scene, motion_a[sl], motion_b[sl])
                out["motion"][sl] = np.take_along_axis(
                    moving, ids[sl].reshape(len(moving), -1).astype(np.intp), axis=1
                ).reshape(ids[sl].shape)
        if "flow" in want:
            out["flow"][0] = 0.0
    if "ids" in want:
        out["ids"] = ids
    if "boxes" in want:
        out["boxes"], out["world_position"] = object_boxes(scene, times)
        counts = [np.bincount(f.ravel(), minlength=len(scene.objects) + 1) for f in ids]
        out["visibility"] = np.stack(counts)[:, 1:].astype(np.int64)
    return out


def cast_rays(scene: Scene, t: float, uv, height: int, width: int) -> dict[str, np.ndarray]:
    """Probe rays through arbitrary image points uv (M, 2) at time t, for checks and tools.

    Returns depth (M,) z-depth (0 for sky), ray length `dist`, `kind`, object-local or ground
    hit point `local` (M, 3) and the world hit point `world` (M, 3).
    """
    K = intrinsics(scene.camera, height, width)
    dirs_cam = pixel_dirs(K, np.asarray(uv, dtype=np.float64)[None])  # (3, 1, M)
    hits = trace(scene, [t], dirs_cam)
    kind = hits.kind[0, 0]
    pose = _per_kind(scene, np.array([t], dtype=np.float64))[0, kind + 1]
    lx, ly, lz = (hits.local[i, 0, 0] for i in range(3))
    world = np.stack(
        [
            pose[:, 0] * lx - pose[:, 1] * ly + pose[:, 2],
            pose[:, 1] * lx + pose[:, 0] * ly + pose[:, 3],
            lz + pose[:, 4],
        ],
        axis=-1,
    )
    return {
        "dist": hits.dist[0, 0],
        "depth": np.where(kind == SKY, 0, hits.dist[0, 0] * dirs_cam[2, 0]),
        "kind": kind,
        "local": np.stack([lx, ly, lz], axis=-1),
        "world": world,
    }
