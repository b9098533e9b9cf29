"""A scene: the small, versioned JSON description from which every frame and signal is recomputed.

Units are metres, seconds and degrees. Axes are those of `r4d.world` (world z up; headings
counter-clockwise from +x seen from above). `Scene.from_json` validates every field and names
the file and the field at fault; `to_json` is canonical, so the same scene gives the same bytes.
Every value is bounded (the MAX_* / MIN_* constants), so a scene file that parses renders in
bounded time and with finite numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from r4d.errors import InputError

SCHEMA = "r4d.world.scene/1"

SHAPES = ("box", "sphere", "cylinder")
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.16, 0.14),
    "green": (0.20, 0.68, 0.24),
    "blue": (0.18, 0.34, 0.86),
    "yellow": (0.93, 0.84, 0.18),
    "purple": (0.56, 0.26, 0.72),
    "orange": (0.96, 0.54, 0.12),
    "cyan": (0.18, 0.80, 0.86),
    "white": (0.93, 0.93, 0.93),
    "gray": (0.50, 0.50, 0.50),
    "brown": (0.50, 0.31, 0.16),
}
PROFILES = ("constant", "accelerating", "decelerating")
SPIN_DIRECTIONS = ("cw", "ccw")
CAMERA_MOTIONS = ("static", "translate", "pan", "orbit")

# Bounds a scene file must keep; sampled scenes (`r4d.world.sample`) sit far inside them.
MIN_FPS, MAX_FPS = 1.0, 240.0  # frames per second
MAX_NUM_FRAMES = 4096  # frames per video (~3 min at 24 fps; sampled: at most 600)
MAX_OBJECTS = 64  # objects per scene (render ids are uint8; sampled: at most 6)
MAX_HOPS = 64  # jumps per object (each is a pass over the frames; sampled: at most 3)
MAX_COORDINATE = 1000.0  # m, |any coordinate| and every size extent
MAX_SPEED = 100.0  # m/s, object speed and |camera velocity| per axis
MAX_ACCELERATION = 100.0  # m/s^2
MAX_RATE_DEG_S = 3600.0  # |spin rate| and |camera pan / orbit rate|


@dataclass(frozen=True)
class Translation:
    """Straight-line motion of the object's base along a heading.

    Displacement s(t): constant v*t; accelerating v*t + a*t^2/2; decelerating the same with -a
    until it stops at t = v/a, then at rest. `speed` is the initial speed v (m/s), `acceleration`
    the magnitude a (m/s^2, 0 for constant).
    """

    profile: str
    heading_deg: float
    speed: float
    acceleration: float = 0.0


@dataclass(frozen=True)
class Spin:
    """Rotation about the object's vertical axis; cw / ccw as seen from above, at `rate_deg_s`."""

    direction: str
    rate_deg_s: float


@dataclass(frozen=True)
class Hop:
    """`count` parabolic jumps of apex `height` (m): jump k leaves the ground at start + k*period
    and lands air_fraction*period later; between jumps the object rests on the ground."""

    count: int
    height: float
    start: float
    period: float
    air_fraction: float


@dataclass(frozen=True)
class SceneObject:
    """A primitive resting on the ground. `size` = (extent along local x, along local y, height);
    a sphere has three equal entries, a cylinder equal x and y. `position` is the centre of its
    footprint at t = 0, `yaw_deg` its heading at t = 0."""

    shape: str
    color: str
    size: tuple[float, float, float]
    position: tuple[float, float]
    yaw_deg: float = 0.0
    translation: Translation | None = None
    spin: Spin | None = None
    hop: Hop | None = None

    @property
    def moves(self) -> bool:
        return self.translation is not None or self.spin is not None or self.hop is not None


@dataclass(frozen=True)
class Camera:
    """A pinhole camera looking from `position` at `target`, with horizontal field of view.

    static: fixed. translate: position and target move by `velocity` (m/s). pan: position fixed,
    the view turns about the vertical at `rate_deg_s` (ccw positive). orbit: the position circles
    the target about the vertical at `rate_deg_s`, still looking at it.
    """

    motion: str
    position: tuple[float, float, float]
    target: tuple[float, float, float]
    fov_deg: float = 60.0
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rate_deg_s: float = 0.0


@dataclass(frozen=True)
class Scene:
    """A whole scene: timing, camera and objects. `num_frames` frames at `fps`; frame k at k/fps."""

    fps: float
    num_frames: int
    camera: Camera
    objects: tuple[SceneObject, ...]
    seed: int | None = None
    schema: str = field(default=SCHEMA)

    @property
    def duration(self) -> float:
        """Length of the video in seconds (num_frames / fps)."""
        return self.num_frames / self.fps

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, where: str | Path | None = None) -> Scene:
        return _parse_scene(_Reader(data, where, ""))

    @classmethod
    def from_json(cls, text: str, where: str | Path | None = None) -> Scene:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"not valid JSON ({err})", where=where) from None
        return cls.from_dict(data, where)

    @classmethod
    def load(cls, path: str | Path) -> Scene:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise InputError(f"cannot read ({err.strerror})", where=path) from None
        return cls.from_json(text, path)


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so the JSON form is canonical."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class _Reader:
    """Typed access to one JSON object that names the file and dotted field on any error."""

    def __init__(self, data: Any, where: str | Path | None, path: str):
        self.where, self.path = where, path
        if not isinstance(data, dict):
            raise InputError("expected an object", where=where, field=path or None)
        self.data = data

    def error(self, name: str, message: str) -> InputError:
        return InputError(message, where=self.where, field=self._name(name))

    def _name(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def check_keys(self, allowed: set[str]) -> None:
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            raise self.error(unknown[0], "unknown field")

    def get(self, name: str, default: Any = ...) -> Any:
        if name not in self.data:
            if default is ...:
                raise self.error(name, "missing")
            return default
        return self.data[name]

    def number(
        self,
        name: str,
        default: Any = ...,
        *,
        min: float | None = None,
        positive: bool = False,
        max: float | None = None,
        limit: float | None = None,
    ) -> float:
        """A finite number; `limit` bounds its magnitude (|value| <= limit)."""
        value = self.get(name, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.error(name, f"expected a finite number, got {value!r}")
        if positive and value <= 0:
            raise self.error(name, f"must be > 0, got {value!r}")
        if min is not None and value < min:
            raise self.error(name, f"must be >= {min}, got {value!r}")
        if max is not None and value > max:
            raise self.error(name, f"{value!r} is above the maximum {max}")
        if limit is not None and abs(value) > limit:
            raise self.error(name, f"{value!r} is beyond the bound +-{limit}")
        return value

    def integer(
        self, name: str, default: Any = ..., *, min: int | None = None, max: int | None = None
    ) -> int:
        value = self.get(name, default)
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {value!r}")
        if min is not None and value < min:
            raise self.error(name, f"must be >= {min}, got {value!r}")
        if max is not None and value > max:
            raise self.error(name, f"{value!r} is above the maximum {max}")
        return value

    def choice(self, name: str, options: tuple[str, ...] | dict, default: Any = ...) -> str:
        value = self.get(name, default)
        if value not in options:
            raise self.error(name, f"unknown value {value!r}; expected one of {sorted(options)}")
        return value

    def vector(
        self,
        name: str,
        length: int,
        default: Any = ...,
        *,
        positive: bool = False,
        limit: float | None = None,
    ):
        """`length` finite numbers; `limit` bounds each one's magnitude."""
        value = self.get(name, default)
        if not isinstance(value, list | tuple) or len(value) != length:
            raise self.error(name, f"expected a list of {length} numbers, got {value!r}")
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise self.error(f"{name}[{i}]", f"expected a finite number, got {v!r}")
            if positive and v <= 0:
                raise self.error(f"{name}[{i}]", f"must be > 0, got {v!r}")
            if limit is not None and abs(v) > limit:
                raise self.error(f"{name}[{i}]", f"{v!r} is beyond the bound +-{limit}")
        return tuple(value)

    def child(self, name: str) -> _Reader | None:
        value = self.get(name, None)
        return None if value is None else _Reader(value, self.where, self._name(name))


def _parse_scene(r: _Reader) -> Scene:
    r.check_keys({"schema", "seed", "fps", "num_frames", "camera", "objects"})
    schema = r.get("schema")
    if schema != SCHEMA:
        raise r.error("schema", f"unsupported schema {schema!r}; this r4d reads {SCHEMA!r}")
    seed = r.integer("seed", None)
    fps = r.number("fps", positive=True, max=MAX_FPS)
    if fps < MIN_FPS:
        raise r.error("fps", f"{fps!r} is below the minimum {MIN_FPS}")
    num_frames = r.integer("num_frames", min=1, max=MAX_NUM_FRAMES)
    camera_reader = r.child("camera")
    if camera_reader is None:
        raise r.error("camera", "missing")
    objects = r.get("objects")
    if not isinstance(objects, list):
        raise r.error("objects", "expected a list")
    if len(objects) > MAX_OBJECTS:
        raise r.error("objects", f"{len(objects)} objects is above the maximum {MAX_OBJECTS}")
    return Scene(
        fps=fps,
        num_frames=num_frames,
        camera=_parse_camera(camera_reader),
        objects=tuple(
            _parse_object(_Reader(o, r.where, f"objects[{i}]")) for i, o in enumerate(objects)
        ),
        seed=seed,
    )


def _parse_camera(r: _Reader) -> Camera:
    r.check_keys({"motion", "position", "target", "fov_deg", "velocity", "rate_deg_s"})
    cam = Camera(
        motion=r.choice("motion", CAMERA_MOTIONS),
        position=r.vector("position", 3, limit=MAX_COORDINATE),
        target=r.vector("target", 3, limit=MAX_COORDINATE),
        fov_deg=r.number("fov_deg", 60.0, positive=True, max=170.0),
        velocity=r.vector("velocity", 3, (0.0, 0.0, 0.0), limit=MAX_SPEED),
        rate_deg_s=r.number("rate_deg_s", 0.0, limit=MAX_RATE_DEG_S),
    )
    view = [t - p for t, p in zip(cam.target, cam.position, strict=True)]
    norm = math.sqrt(sum(v * v for v in view))
    if norm == 0 or abs(view[2]) / norm > 0.99:
        raise r.error("target", "the view direction must be non-zero and not vertical")
    return cam


def _parse_object(r: _Reader) -> SceneObject:
    r.check_keys({"shape", "color", "size", "position", "yaw_deg", "translation", "spin", "hop"})
    shape = r.choice("shape", SHAPES)
    size = r.vector("size", 3, positive=True, limit=MAX_COORDINATE)
    if shape == "sphere" and not size[0] == size[1] == size[2]:
        raise r.error("size", f"a sphere needs three equal extents, got {list(size)}")
    if shape == "cylinder" and size[0] != size[1]:
        raise r.error("size", f"a cylinder needs equal x and y extents, got {list(size)}")
    return SceneObject(
        shape=shape,
        color=r.choice("color", COLORS),
        size=size,
        position=r.vector("position", 2, limit=MAX_COORDINATE),
        yaw_deg=r.number("yaw_deg", 0.0),
        translation=_parse_translation(r.child("translation")),
        spin=_parse_spin(r.child("spin")),
        hop=_parse_hop(r.child("hop")),
    )


def _parse_translation(r: _Reader | None) -> Translation | None:
    if r is None:
        return None
    r.check_keys({"profile", "heading_deg", "speed", "acceleration"})
    profile = r.choice("profile", PROFILES)
    acceleration = r.number("acceleration", 0.0, min=0.0, max=MAX_ACCELERATION)
    if profile != "constant" and acceleration <= 0:
        raise r.error("acceleration", f"must be > 0 for profile {profile!r}")
    if profile == "constant" and acceleration != 0:
        raise r.error("acceleration", "must be 0 for profile 'constant'")
    return Translation(
        profile=profile,
        heading_deg=r.number("heading_deg"),
        speed=r.number("speed", positive=True, max=MAX_SPEED),
        acceleration=acceleration,
    )


def _parse_spin(r: _Reader | None) -> Spin | None:
    if r is None:
        return None
    r.check_keys({"direction", "rate_deg_s"})
    return Spin(
        direction=r.choice("direction", SPIN_DIRECTIONS),
        rate_deg_s=r.number("rate_deg_s", positive=True, max=MAX_RATE_DEG_S),
    )


def _parse_hop(r: _Reader | None) -> Hop | None:
    if r is None:
        return None
    r.check_keys({"count", "height", "start", "period", "air_fraction"})
    air_fraction = r.number("air_fraction", positive=True, max=1.0)
    return Hop(
        count=r.integer("count", min=1, max=MAX_HOPS),
        height=r.number("height", positive=True, max=MAX_COORDINATE),
        start=r.number("start", min=0.0),
        period=r.number("period", positive=True),
        air_fraction=air_fraction,
    )
