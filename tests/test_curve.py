"""Learning curves: one run, a checkpoint and an evaluation per point, reused on a rerun."""

from __future__ import annotations

import json

from PIL import Image

from r4d.curve import learning_curve
from r4d.train.config import TrainConfig


def test_a_curve_evaluates_every_point_and_is_reused(small_bench, tmp_path):
    config = TrainConfig.from_dict(
        {
            "out": str(tmp_path / "run"),
            "data": [{"kind": "r4dsim", "root": str(small_bench)}],
            "student": {"preset": "tiny", "time_cues": [], "vocab_size": 600},
            "recipe": {"name": "paper", "variant": "4d-sft"},
            "optim": {"steps": 99, "batch_size": 2},
            "png_every": 0,
            "workers": 0,
        }
    )
    rows = learning_curve(config, small_bench, [1, 2], per_task=1, progress=False)
    assert [(r["step"], r["questions"]) for r in rows] == [(1, 2), (2, 4)]
    for r in rows:
        summary = json.loads(
            (
                tmp_path / "run" / "curve" / f"step-{r['step']:07d}" / "eval" / "summary.json"
            ).read_text()
        )
        assert summary["results"]["r4dsim"]["r4dsim_accuracy,none"] == r["Avg"]
        assert 0 <= r["Avg"] <= 100 and len(r) > 3  # per-category columns too
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["step-0000001", "step-0000002"]  # one kept per point
    Image.open(tmp_path / "run" / "curve.png").verify()
    again = learning_curve(config, small_bench, [1, 2], per_task=1, progress=False)
    assert again == rows
