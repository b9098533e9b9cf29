"""Learning curves: R4D-Sim test accuracy against questions seen, per split and category.

`learning_curve` trains one run (any `TrainConfig`), keeps a checkpoint at every point of
`points` (optimisation steps), exports the student of each and evaluates it on the same
R4D-Sim test subset (`per_task` questions per category) with the official protocol; every
stage is reused when it exists, so a rerun resumes. `curve_png` draws several runs' curves,
one panel per group (Avg, Sta, Dyn, each category), with references drawn as horizontal lines
(chance, the question-only blind baseline, a ceiling such as an oracle-input student).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

from matplotlib.figure import Figure

from r4d.eval.adapters import R4DAdapter
from r4d.eval.benchmarks import get_benchmark
from r4d.eval.core import per_category_subset
from r4d.eval.run import evaluate
from r4d.eval.spec import model_identity
from r4d.io.atomic import atomic_path, write_text
from r4d.train.config import TrainConfig
from r4d.train.export import export_checkpoint
from r4d.train.trainer import train


def curve_row(summary: dict) -> dict[str, float]:
    """Accuracy (%) overall, static, dynamic and per category from an r4dsim summary.json."""
    res = summary["results"]["r4dsim"]
    row = {"Avg": res["r4dsim_accuracy,none"]}
    for key, value in res.items():
        name = key.removeprefix("r4dsim_accuracy_").removesuffix(",none")
        extra = ("stderr" in key) or ("parse" in key) or name.startswith("split_")
        if key.startswith("r4dsim_accuracy_") and not extra:
            row[name] = value
    return row


def learning_curve(
    config: TrainConfig,
    bench: str | Path,
    points: list[int],
    per_task: int = 100,
    progress: bool = True,
    cache: str | Path | None = None,
) -> list[dict]:
    """Train `config` to max(points) and evaluate the student at every point; returns one row
    per point ({"step", "questions", "Avg", <category>: %}), also written to
    `config.out/curve.json` and drawn in `config.out/curve.png`."""
    points = sorted(set(points))
    out = Path(config.out)
    every = math.gcd(*points)  # a checkpoint at every point, all of them kept
    config = replace(config, checkpoint_every=every, keep_checkpoints=points[-1] // every)
    config.optim = replace(config.optim, steps=points[-1])
    train(config, progress=progress)
    bench_ = get_benchmark("r4dsim")
    ids = per_category_subset(bench_.load(bench), per_task)
    per_step = config.optim.batch_size * config.optim.grad_accum
    rows = []
    for step in points:
        checkpoint = out / "checkpoints" / f"step-{step:07d}"
        target = out / "curve" / f"step-{step:07d}"
        if not (target / "eval" / "summary.json").is_file():
            if not (target / "student" / "config.json").is_file():
                export_checkpoint(out, target / "student", checkpoint)
            adapter = R4DAdapter(target / "student", "score", cache=cache)
            model = model_identity(str(target / "student"), "score", cache)
            eval_out = target / "eval"
            evaluate(adapter, bench_, bench, eval_out, item_ids=ids, progress=progress, model=model)
        summary = json.loads((target / "eval" / "summary.json").read_text())
        rows.append({"step": step, "questions": step * per_step, **curve_row(summary)})
    write_text(out / "curve.json", json.dumps(rows, indent=1) + "\n")
    panels = [k for k in rows[0] if k not in ("step", "questions")]
    curve_png({config.recipe.variant: rows}, {}, out / "curve.png", panels)
    return rows


def curve_png(
    curves: dict[str, list[dict]],
    references: dict[str, dict[str, float]],
    path: str | Path,
    panels: list[str],
) -> None:
    """One panel per name in `panels`; a line per curve, a dashed line per reference."""
    columns = 4
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(4 * columns, 3 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        for name, points in curves.items():
            xs = [p["questions"] for p in points if panel in p]
            ax.plot(xs, [p[panel] for p in points if panel in p], marker="o", label=name)
        for k, (name, values) in enumerate(references.items()):
            if panel in values:
                ax.axhline(values[panel], ls="--", color=f"C{k + len(curves)}", label=name)
        ax.set_title(panel)
        ax.set_xlabel("questions seen")
        ax.set_ylabel("accuracy (%)")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
