"""`r4d reproduce`'s rows and report: diagnosis rows edit the right fields, and the paired
differences equal hand computations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from r4d.errors import InputError
from r4d.p4d.recipes import recipe
from r4d.reproduce import (
    DIAGNOSIS,
    PRESETS,
    ROWS,
    TABLES,
    _row_config,
    choose_rows,
    report_groups,
    reproduce,
)
from r4d.reproduce_report import T95, paired, paired_questions, run_folder


def _config(name: str):
    row = next(r for r in ROWS + DIAGNOSIS if r.name == name)
    p = PRESETS["tiny"]
    steps = {"finetune_steps": p.finetune_steps}
    here = Path("/runs")
    return _row_config(row, here / "run", here / "base", here, here, here, p, steps, 0)


def test_diagnosis_rows_edit_steps_and_recipe_only():
    p = PRESETS["tiny"]
    p4d, longer = _config("P4D"), _config("P4D 3x steps")
    assert (p4d.optim.steps, longer.optim.steps) == (p.finetune_steps, 3 * p.finetune_steps)
    assert longer.recipe == p4d.recipe and longer.checkpoint_every == 3 * p.finetune_steps // 2
    assert _config("4D-SFT 3x steps").recipe.variant == "4d-sft"
    heavy = _config("P4D 10x weights").recipe
    built = recipe(heavy.name, heavy.variant, **heavy.overrides)
    assert (built.alpha, built.beta) == (10 * 0.5, 10 * 0.1)
    assert built.decoder_hidden == p.decoder_hidden
    mean = _config("P4D Rearrange mean").recipe
    assert recipe(mean.name, mean.variant, **mean.overrides).time_reduce == "mean"


def test_unknown_row_is_refused_before_any_work(tmp_path):
    with pytest.raises(InputError, match="unknown rows"):
        reproduce(tmp_path, "smoke", rows=["P4D 3x steps", "P4D 9x steps"])
    assert not any(tmp_path.iterdir())


def test_per_seed_paired_difference_is_a_t_interval():
    rows = {
        "A": [{"Avg": 40.0}, {"Avg": 44.0}, {"Avg": 39.0}],
        "B": [{"Avg": 38.0}, {"Avg": 40.0}, {"Avg": 40.0}],
    }
    diffs = np.array([2.0, 4.0, -1.0])
    got = paired(rows, "A", "B", "Avg")
    half = T95[2] * diffs.std(ddof=1) / np.sqrt(3)
    assert got["mean"] == pytest.approx(diffs.mean())
    assert got["ci95"] == pytest.approx([diffs.mean() - half, diffs.mean() + half])
    assert paired(rows, "A", "missing", "Avg") is None


def _samples(out: Path, seed: int, name: str, correct: list[bool]) -> None:
    folder = out / "eval" / f"seed{seed}" / run_folder(name) / "r4dsim"
    folder.mkdir(parents=True)
    lines = [json.dumps({"id": f"q{i}", "correct": c}) for i, c in enumerate(correct)]
    (folder / "samples.jsonl").write_text("\n".join(lines) + "\n")


def test_question_level_pairs_pool_seeds_and_count_disagreements(tmp_path):
    _samples(tmp_path, 0, "P4D (official recipe)", [True, True, False, False])
    _samples(tmp_path, 0, "4D-SFT", [True, False, True, False])
    _samples(tmp_path, 1, "P4D (official recipe)", [True, True, True, False])
    _samples(tmp_path, 1, "4D-SFT", [False, False, True, False])
    _samples(tmp_path, 2, "4D-SFT", [True, True, True, True])  # its pair is missing: skipped
    got = paired_questions(tmp_path, "P4D (official recipe)", "4D-SFT", seeds=3)
    d = np.array([0, 1, -1, 0, 1, 1, 0, 0], dtype=float)
    half = 100 * 1.96 * d.std(ddof=1) / np.sqrt(8)
    assert (got["only_a"], got["only_b"], got["questions"]) == (3, 1, 8)
    assert got["mean"] == pytest.approx(25.0)
    assert got["ci95"] == pytest.approx([25.0 - half, 25.0 + half])
    assert paired_questions(tmp_path, "P4D", "4D-SFT", seeds=3) is None


def names(rows) -> list[str]:
    return [r.name for r in rows]


def test_diagnosis_rows_run_only_when_asked():
    assert choose_rows(None, False) == ROWS
    assert names(choose_rows(None, True)) == names(ROWS) + names(DIAGNOSIS)
    assert names(choose_rows(["P4D 3x steps", "4D-SFT"], False)) == ["4D-SFT", "P4D 3x steps"]
    assert names(choose_rows(["P4D"], True)) == ["P4D", *names(DIAGNOSIS)]


def test_every_row_is_in_its_table_and_tables_name_only_known_rows():
    known = {"Zero-shot", *names(ROWS + DIAGNOSIS)}
    keys = [t.key for t in TABLES]
    assert len(keys) == len(set(keys))
    assert {r.table for r in ROWS + DIAGNOSIS} <= set(keys)  # a new table key needs a Table
    groups = dict(report_groups())
    assert list(groups) == [t.title for t in TABLES]
    for row in ROWS + DIAGNOSIS:
        table = next(t for t in TABLES if t.key == row.table)
        assert row.name in groups[table.title]
    for title, members in groups.items():
        assert set(members) <= known, title
        assert len(members) == len(set(members)), title
    core = report_groups()[0][1]  # the first table is the core comparison, also plotted
    assert core == ["Zero-shot", "4D-SFT", "P4D", "P4D+TPE"]
    assert groups["Time cues (Tab. 6, A3)"] == ["P4D", "P4D+marks", "P4D+prompt", "P4D+TPE"]
