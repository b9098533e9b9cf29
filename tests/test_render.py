"""The renderer's physics: every check compares with geometry computed here, not by the renderer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import make_scene, obj
from r4d.io.video import uniform_indices
from r4d.world import sample_scene
from r4d.world.kinematics import camera_pose, focal_px, intrinsics, object_pose, project
from r4d.world.render import SKY, cast_rays, euler_yxz, render
from r4d.world.scene import Camera, Hop, Spin, Translation

H = W = 64


def level_rotation(pitch_down: float) -> np.ndarray:
    """Camera-to-world rotation of a camera looking along +y, pitched down by `pitch_down` rad,
    written out by hand in OpenCV axes (x right, y down, z forward)."""
    c, s = math.cos(pitch_down), math.sin(pitch_down)
    x = np.array([1.0, 0.0, 0.0])
    z = np.array([0.0, c, -s])
    y = np.array([0.0, -s, -c])
    return np.stack([x, y, z], axis=1)


def ray_cam(u: float, v: float, f: float, cx: float, cy: float) -> np.ndarray:
    d = np.array([(u - cx) / f, (v - cy) / f, 1.0])
    return d / np.linalg.norm(d)


def test_ground_depth_is_the_analytic_distance():
    scene = make_scene()  # camera at (0, -6, 3) looking at the origin
    out = render(scene, [0.0], H, W, signals=("depth", "ids"))
    f = focal_px(60.0, W)
    R = level_rotation(math.atan2(3.0, 6.0))
    checked = 0
    for v in range(H // 2 + 2, H, 5):
        for u in range(0, W, 7):
            d_cam = ray_cam(u + 0.5, v + 0.5, f, W / 2, H / 2)
            d_world = R @ d_cam
            ray_length = 3.0 / -d_world[2]
            assert out["depth"][0, v, u] == pytest.approx(ray_length * d_cam[2], rel=2e-6)
            checked += 1
    assert checked > 50
    assert (out["depth"][0, :4] == 0).all()  # sky rows are invalid
    assert (out["ids"][0] == 0).all()


@pytest.mark.parametrize(
    ("shape", "size", "top"),
    [
        ("sphere", (1.0, 1.0, 1.0), 1.0),
        ("box", (0.8, 1.2, 0.6), 0.6),
        ("cylinder", (0.9, 0.9, 1.4), 1.4),
    ],
)
def test_object_depth_at_probes(shape, size, top):
    # Camera straight above-and-behind looking at the object's centre.
    camera = Camera("static", (0.0, -5.0, 0.5 * top), (0.0, 0.0, 0.5 * top), 50.0)
    scene = make_scene([obj(shape, size)], camera)
    uv, _ = project(
        intrinsics(camera, H, W),
        *camera_pose(camera, np.float64(0)),
        np.array([0.0, 0.0, 0.5 * top]),
    )
    hit = cast_rays(scene, 0.0, uv[None], H, W)
    front = 0.5 * size[1]  # the facing surface is at y = -front (sphere: radius)
    assert hit["kind"][0] == 1
    assert hit["depth"][0] == pytest.approx(5.0 - front, abs=1e-5)
    # Off-centre probes on the sphere: depth from the ray-sphere quadratic, solved here.
    if shape == "sphere":
        f = focal_px(50.0, W)
        for du, dv in [(3.0, 0.0), (-2.5, 4.0), (0.0, -5.5)]:
            d = ray_cam(W / 2 + du, H / 2 + dv, f, W / 2, H / 2)
            d_world = np.array([d[0], d[2], -d[1]])  # level camera looking along +y
            o = np.array([0.0, -5.0, 0.5]) - np.array([0.0, 0.0, 0.5])
            b = o @ d_world
            t = -b - math.sqrt(b * b - (o @ o - 0.25))
            probe = cast_rays(scene, 0.0, np.array([[W / 2 + du, H / 2 + dv]]), H, W)
            assert probe["depth"][0] == pytest.approx(t * d[2], rel=1e-6)


def _interior(ids: np.ndarray, v: int, u: int, r: int = 2) -> bool:
    patch = ids[max(v - r, 0) : v + r + 1, max(u - r, 0) : u + r + 1]
    return patch.size == (2 * r + 1) ** 2 and (patch == ids[v, u]).all()


def _true_previous_pixel(scene, hit, kind, t_prev, K):
    """Where the surface point `hit` (object-local, or world for the ground) truly was at t_prev:
    the object's rigid motion and a pinhole projection, written out here in float64."""
    point = hit
    if kind > 0:
        centre, yaw = object_pose(scene.objects[kind - 1], np.float64(t_prev))
        c, s = math.cos(yaw), math.sin(yaw)
        point = np.array([c * hit[0] - s * hit[1], s * hit[0] + c * hit[1], hit[2]]) + centre
    R, C = camera_pose(scene.camera, np.float64(t_prev))
    x, y, z = R.T @ (point - C)
    return np.array([K[0, 0] * x / z + K[0, 2], K[1, 1] * y / z + K[1, 2]])


@pytest.mark.parametrize("seed", [0, 5, 7, 12])
def test_backward_flow_sends_points_where_they_truly_were(seed):
    """Re-projection error of p + flow against the point's true position in the previous sampled
    frame, at probes away from occlusion boundaries; a ray cast at p + flow in the previous frame
    must hit the same surface point (else the point was occluded and the probe is skipped)."""
    scene = sample_scene(seed)
    times = uniform_indices(scene.num_frames, 16)[:5] / scene.fps
    out = render(scene, times, H, W, signals=("flow", "ids", "depth"))
    K = intrinsics(scene.camera, H, W)
    rng = np.random.default_rng(seed)
    errors, moving, occluded = [], [], 0
    moving_ids = [k for k, o in enumerate(scene.objects, start=1) if o.moves]
    for n in range(1, len(times)):
        on_moving = np.argwhere(np.isin(out["ids"][n], moving_ids))
        anywhere = rng.integers(0, [H, W], size=(80, 2))
        picks = on_moving[rng.integers(0, len(on_moving), 150)] if len(on_moving) else []
        for v, u in [*anywhere, *picks]:
            if out["depth"][n, v, u] == 0 or not _interior(out["ids"][n], v, u):
                continue
            p = np.array([u + 0.5, v + 0.5])
            now = cast_rays(scene, times[n], p[None], H, W)
            q = p + out["flow"][n, v, u]
            before = cast_rays(scene, times[n - 1], q[None], H, W)
            same = before["kind"][0] == now["kind"][0]
            if not same or np.linalg.norm(before["local"][0] - now["local"][0]) > 0.02:
                occluded += 1
                continue
            kind = int(now["kind"][0])
            truth = _true_previous_pixel(
                scene, now["local"][0].astype(np.float64), kind, times[n - 1], K
            )
            errors.append(np.linalg.norm(q - truth))
            if kind > 0 and scene.objects[kind - 1].moves:
                moving.append(np.linalg.norm(out["flow"][n, v, u]))
    assert len(errors) > 150 and occluded < 0.15 * len(errors)
    assert max(errors) < 0.05
    if moving_ids:
        assert len(moving) > 10 and np.median(moving) > 0.1


def test_static_scene_moving_camera_has_flow_but_no_motion():
    scene = sample_scene(3)
    scene = make_scene(
        scene.objects,
        Camera("orbit", (6.0, -4.0, 3.0), (0.0, 0.0, 0.3), 60.0, rate_deg_s=8.0),
        fps=10,
        num_frames=40,
    )
    out = render(scene, np.linspace(0, 3.9, 6), H, W, signals=("flow", "motion", "ids"))
    assert not out["motion"].any()
    assert np.abs(out["flow"][1:]).mean() > 0.5
    assert (out["flow"][0] == 0).all()


def test_motion_mask_marks_exactly_the_moving_objects():
    moving = obj("box", (0.6, 0.6, 0.6), (-1.0, 0.0), translation=Translation("constant", 0.0, 0.5))
    spinning = obj("cylinder", (0.6, 0.6, 0.8), (1.2, 0.5), color="blue", spin=Spin("cw", 90.0))
    still = obj("sphere", (0.7, 0.7, 0.7), (0.2, 1.5), color="green")
    scene = make_scene([moving, spinning, still])
    out = render(scene, [0.0, 0.5, 1.0], H, W, signals=("motion", "ids"))
    ids, motion = out["ids"], out["motion"]
    assert (motion == ((ids == 1) | (ids == 2))).all()
    assert (ids == 3).any()


def test_camray_moments_are_perpendicular_and_rays_reproject():
    scene = sample_scene(4)  # a translating camera
    assert scene.camera.motion == "translate"
    times = np.linspace(0, scene.duration * 0.9, 4)
    out = render(scene, times, H, W, signals=("camray",))
    ray = out["camray"].astype(np.float64)
    d, m = ray[..., :3], ray[..., 3:]
    assert np.allclose(np.linalg.norm(d, axis=-1), 1, atol=1e-6)
    assert np.abs((d * m).sum(-1)).max() < 1e-5
    K = intrinsics(scene.camera, H, W)
    R, C = camera_pose(scene.camera, times)
    v, u = np.mgrid[0:H:9, 0:W:9]
    for n in range(len(times)):
        dd, mm = d[n, v, u], m[n, v, u]
        point_first = np.cross(dd, mm) + 100.0 * dd  # on the ray, far in front
        point_world = point_first @ R[0].T + C[0]
        uv, z = project(K, R[n], C[n], point_world)
        assert (z > 0).all()
        assert np.abs(uv - np.stack([u + 0.5, v + 0.5], -1)).max() < 2e-3
    assert np.abs(m[-1]).max() > 0.1  # the camera did move


def _lowest_point_heights(scene, times):
    """Per frame, the lowest height (m) of object 1's visible surface, from depth and ids."""
    out = render(scene, times, H, W, signals=("depth", "ids"))
    K = intrinsics(scene.camera, H, W)
    R, C = camera_pose(scene.camera, times)
    heights = []
    for n in range(len(times)):
        v, u = np.nonzero(out["ids"][n] == 1)
        z = out["depth"][n, v, u]
        cam = np.stack([(u + 0.5 - K[0, 2]) / K[0, 0] * z, (v + 0.5 - K[1, 2]) / K[1, 1] * z, z])
        world = R[n] @ cam + C[n][:, None]
        heights.append(world[2].min())
    return np.array(heights)


def test_hop_count_agrees_with_rendered_frames():
    hop = Hop(count=3, height=0.6, start=0.4, period=1.2, air_fraction=0.6)
    scene = make_scene([obj("box", (0.6, 0.6, 0.6), hop=hop)], fps=30, num_frames=150)
    heights = _lowest_point_heights(scene, np.arange(150) / 30)
    rest = heights.min()  # the lowest visible pixel centre sits a little above the ground
    assert rest < 0.15
    airborne = heights > rest + 0.05
    jumps = int(np.sum(airborne[1:] & ~airborne[:-1]) + airborne[0])
    assert jumps == 3
    assert heights.max() - rest == pytest.approx(0.6, abs=0.1)


def test_sampled_hops_are_countable_in_the_default_sixteen_frames():
    seen = 0
    for seed in range(300):
        scene = sample_scene(seed)
        t = uniform_indices(scene.num_frames, 16) / scene.fps
        for o in scene.objects:
            if o.hop is None:
                continue
            z = object_pose(o, t)[0][:, 2] - 0.5 * o.size[2]
            airborne = z > 1e-6
            assert int(np.sum(airborne[1:] & ~airborne[:-1]) + airborne[0]) == o.hop.count, seed
            seen += 1
    assert seen > 30


@pytest.mark.parametrize("direction", ["ccw", "cw"])
def test_spin_direction_agrees_with_rendered_frames(direction):
    """Seen from the front, the near surface of a body spinning ccw (from above) moves right.
    Track the dark marker stripe's image column while it crosses the front."""
    camera = Camera("static", (0.0, -4.0, 0.5), (0.0, 0.0, 0.5), 50.0)
    cyl = obj("cylinder", (1.2, 1.2, 1.0), spin=Spin(direction, 30.0))
    scene = make_scene([cyl], camera, fps=30, num_frames=360)
    times = np.arange(0, 12, 0.25)
    out = render(scene, times, 2 * H, 2 * W, signals=("rgb", "ids"))
    columns = []
    for rgb, ids in zip(out["rgb"], out["ids"], strict=True):
        body = ids == 1
        dark = body & (rgb.max(axis=-1) < 40)
        columns.append(np.nonzero(dark)[1].mean() if dark.sum() > 10 else np.nan)
    steps = np.diff(columns)
    steps = steps[np.isfinite(steps) & (np.abs(steps) < 10)]
    assert len(steps) > 10
    assert np.sign(np.median(steps)) == (1 if direction == "ccw" else -1)


def test_same_seed_gives_identical_frames():
    scene = sample_scene(9)
    t = np.linspace(0, scene.duration, 5)
    a, b = render(scene, t, H, W), render(sample_scene(9), t, H, W)
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key


def test_boxes_visibility_and_positions():
    box = obj("box", (0.8, 0.4, 0.6), (0.5, 1.0), yaw_deg=30.0)
    camera = Camera("static", (0.0, -6.0, 0.3), (0.0, 0.0, 0.3), 60.0)  # level camera
    scene = make_scene([box], camera)
    out = render(scene, [0.0], H, W, signals=("boxes", "ids"))
    centre, size, angles = out["boxes"][0, 0, :3], out["boxes"][0, 0, 3:6], out["boxes"][0, 0, 6:]
    # Camera coordinates of the world point (0.5, 1.0, 0.3): right 0.5, down 0, forward 7.
    assert centre == pytest.approx([0.5, 0.0, 7.0], abs=1e-9)
    assert size == pytest.approx([0.8, 0.6, 0.4])  # width, height, length
    # A level camera sees the object turned by -30 degrees about its (downward) y axis.
    assert angles == pytest.approx([-30.0, 0.0, 0.0], abs=1e-9)
    assert out["visibility"][0, 0] == (out["ids"][0] == 1).sum() > 0
    assert out["world_position"][0, 0] == pytest.approx([0.5, 1.0, 0.3])


def test_euler_angles_rebuild_the_rotation():
    rng = np.random.default_rng(0)
    for _ in range(20):
        yaw, pitch, roll = rng.uniform(-3, 3), rng.uniform(-1.5, 1.5), rng.uniform(-3, 3)
        Ry = np.array(
            [[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]]
        )
        Rx = np.array(
            [
                [1, 0, 0],
                [0, math.cos(pitch), -math.sin(pitch)],
                [0, math.sin(pitch), math.cos(pitch)],
            ]
        )
        Rz = np.array(
            [[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1]]
        )
        assert euler_yxz(Ry @ Rx @ Rz) == pytest.approx([yaw, pitch, roll], abs=1e-9)


def test_sky_is_background_and_unknown_signal_is_refused():
    out = render(make_scene(), [0.0], H, W, signals=("depth", "ids"))
    hit = cast_rays(make_scene(), 0.0, np.array([[W / 2, 0.5]]), H, W)
    assert hit["kind"][0] == SKY and hit["depth"][0] == 0
    assert out["depth"].dtype == np.float32
    with pytest.raises(ValueError, match="unknown signal"):
        render(make_scene(), [0.0], H, W, signals=("normals",))
