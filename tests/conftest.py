"""Shared helpers: hand-made scenes whose answers a test can compute on paper."""

from __future__ import annotations

import pytest

from r4d.world.scene import Camera, Scene, SceneObject


def make_scene(objects=(), camera=None, fps=10, num_frames=20, seed=None) -> Scene:
    camera = camera or Camera("static", (0.0, -6.0, 3.0), (0.0, 0.0, 0.0), 60.0)
    return Scene(fps=fps, num_frames=num_frames, camera=camera, objects=tuple(objects), seed=seed)


def obj(shape="sphere", size=(1.0, 1.0, 1.0), position=(0.0, 0.0), color="red", **motion):
    return SceneObject(shape=shape, color=color, size=size, position=position, **motion)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """36 scenes at 64x64 with 16 sampled frames (seeds 500-535), shared by the suite."""
    from r4d.world.files import RenderSettings, build_world

    out = tmp_path_factory.mktemp("world")
    build_world(out, 36, seed=500, workers=2, settings=RenderSettings(64, 64, 16), progress=False)
    return out


@pytest.fixture(scope="session")
def small_bench(small_world, tmp_path_factory):
    """R4D-Sim built from `small_world` with the default split rule."""
    from r4d.world.bench import BenchSettings, build_bench

    out = tmp_path_factory.mktemp("bench")
    per_task = {"train": 400, "val": 40, "test": 60}
    build_bench(small_world, out, BenchSettings(per_task=per_task), progress=False)
    return out


@pytest.fixture(scope="session")
def teacher_parts(small_world, tmp_path_factory):
    """A random tiny teacher (`teacher/`), its cache of the small world (`cache/`) and the
    oracle's (`oracle/`), shared by the suite; tests write only beside it."""
    import torch

    from r4d.teacher.cache import build_cache
    from r4d.teacher.config import tiny_config
    from r4d.teacher.data import load_clip, scene_folders
    from r4d.teacher.model import Teacher

    root = tmp_path_factory.mktemp("teacher_parts")
    torch.manual_seed(0)
    teacher = Teacher(tiny_config()).eval()
    teacher.save_pretrained(root / "teacher")
    clips = [load_clip(f, tiny_config()) for f in scene_folders(small_world)]
    build_cache("oracle", clips, root / "oracle", progress=False)
    build_cache(teacher, clips, root / "cache", progress=False)
    return root


QUESTION = "Which way does <obj_1> move?"  # what `student_and_video`'s tokenizer has read
OPTIONS = ["left", "right", "not moving"]


@pytest.fixture(scope="session")
def student_and_video(tmp_path_factory):
    """A tiny r4d student folder with region tokens (its tokenizer trained on QUESTION and
    OPTIONS) and a 20-frame 32x32 mp4, for `r4d ask`."""
    import numpy as np

    from r4d.io.video import write_video
    from r4d.model import build_student
    from r4d.model.answer import option_text
    from r4d.model.tokenizer import train_tokenizer

    folder = tmp_path_factory.mktemp("ask")
    texts = [QUESTION, *(option_text(i, o) for i, o in enumerate(OPTIONS))]
    texts += ["Options:\nAnswer with only the letter of the correct option. You are a helpful"]
    tokenizer = train_tokenizer(texts * 20, vocab_size=600)
    build_student("tiny", tokenizer, region_tokens=True).save_pretrained(
        folder / "student", tokenizer
    )
    frames = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    write_video(folder / "clip.mp4", list(frames), fps=10)
    return folder / "student", folder / "clip.mp4"
