"""What a question generator reads: a scene, its sampled frames' exact signals, and regions.

Regions are the objects visible in the first sampled frame (frame 0 of the video) with at least
MIN_REGION_FRACTION of the image; their masks are the visible pixels of that frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from r4d.world.kinematics import object_pose
from r4d.world.scene import Scene

MIN_REGION_FRACTION = 0.002  # of the image area, in the first frame
MIN_VISIBLE_FRACTION = 0.001  # of the image area, at the frame a question asks about


@dataclass
class SceneView:
    scene: Scene
    name: str  # the scene folder's name, e.g. scene_000123
    signals: dict[str, np.ndarray] = field(repr=False)

    @property
    def times(self) -> np.ndarray:
        """Timestamps (s) of the uniformly sampled frames."""
        return self.signals["times"]

    @property
    def image_area(self) -> int:
        return int(np.prod(self.signals["ids"].shape[1:]))

    def visible(self, k: int, n: int) -> bool:
        """Is object k (0-based) visible enough in sampled frame n?"""
        return self.signals["visibility"][n, k] >= MIN_VISIBLE_FRACTION * self.image_area

    def visible_throughout(self, k: int, share: float = 0.6) -> bool:
        frames = self.signals["visibility"][:, k] >= MIN_VISIBLE_FRACTION * self.image_area
        return frames.mean() >= share

    @cached_property
    def regions(self) -> list[int]:
        """Objects (0-based) that can be a region: visible enough in the first frame."""
        counts = self.signals["visibility"][0]
        return [k for k, c in enumerate(counts) if c >= MIN_REGION_FRACTION * self.image_area]

    def mask(self, k: int) -> np.ndarray:
        """Visible pixels (H, W) bool of object k in the first frame."""
        return self.signals["ids"][0] == k + 1

    def describe(self, k: int) -> str:
        o = self.scene.objects[k]
        return f"the {o.color} {o.shape}"

    def position(self, k: int, t) -> np.ndarray:
        """World centre (..., 3) of object k at times t (exact, from the scene)."""
        return object_pose(self.scene.objects[k], np.asarray(t, dtype=np.float64))[0]
