"""Region-level 4D questions with exact answers, generated from the world's scenes.

One generator per R4D-Bench task (`static`, `dynamic`), TimeBench (`timebench`), and the option
rules that keep answers from leaking (`options`). `generate` runs all of them on one scene.
"""

from __future__ import annotations

from r4d.world.questions.dynamic import (
    counting,
    displacement_path,
    rotational,
    speed_acceleration,
    translational,
)
from r4d.world.questions.question import Question
from r4d.world.questions.static import grounding, measurement, relation
from r4d.world.questions.view import SceneView

GENERATORS = (
    grounding,
    measurement,
    relation,
    translational,
    rotational,
    counting,
    speed_acceleration,
    displacement_path,
)


def generate(view: SceneView, rng) -> list[Question]:
    """Every question the scene supports (False Positives come from the T and R generators)."""
    return [q for make in GENERATORS for q in make(view, rng)]


__all__ = [
    "Question",
    "SceneView",
    "generate",
]
