"""The procedural 4D world: scenes from a seed, an exact analytic renderer, and scene files.

Conventions (every module in this package keeps them):

- World frame: right-handed, metres, z up, the ground is the plane z = 0. Headings and yaw
  angles are measured counter-clockwise from +x as seen from above (about +z).
- Camera frame: OpenCV axes, x right, y down, z forward. Pixel (col, row) = (u, v) has its
  centre at (u + 0.5, v + 0.5); the principal point is the image centre.
- Time in seconds from the first video frame; frame k of a video is at k / fps.
"""

from r4d.world.sample import sample_scene
from r4d.world.scene import Camera, Hop, Scene, SceneObject, Spin, Translation

__all__ = ["Camera", "Hop", "Scene", "SceneObject", "Spin", "Translation", "sample_scene"]
