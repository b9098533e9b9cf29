"""lmms-eval's entry point for r4d (pyproject.toml, group `lmms_eval.models`): the `r4d` model.

Kept apart from `r4d.eval.lmms` so that lmms-eval's start-up reads the manifest without
importing r4d's models; the class is imported when `--model r4d` is asked for.
"""

from __future__ import annotations

from lmms_eval.models.registry_v2 import ModelManifest

MODELS = [ModelManifest("r4d", simple_class_path="r4d.eval.lmms.R4DModel")]
