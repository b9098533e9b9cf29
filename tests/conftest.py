"""Shared helpers: hand-made scenes whose answers a test can compute on paper."""

from __future__ import annotations

import pytest

from r4d.world.scene import Camera, Scene, SceneObject


def make_scene(objects=(), camera=None, fps=10, num_frames=20, seed=None) -> Scene:
    camera = camera or Camera("static", (0.0, -6.0, 3.0), (0.0, 0.0, 0.0), 60.0)
    return Scene(fps=fps, num_frames=num_frames, camera=camera, objects=tuple(objects), seed=seed)


def obj(shape="sphere", size=(1.0, 1.0, 1.0), position=(0.0, 0.0), color="red", **motion):
    return SceneObject(shape=shape, color=color, size=size, position=position, **motion)


@pytest.fixture
def scene_factory():
    return make_scene
