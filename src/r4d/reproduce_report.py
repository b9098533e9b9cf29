"""The replication report: the paper's tables from `r4d reproduce`'s runs, mean +- std over seeds.

Scores are R4D-Sim test accuracy (%) in R4D-Bench's layout and TimeBench accuracy. Paired
differences between two rows use the per-seed differences: mean, std and a 95% t-interval
(n - 1 degrees of freedom), so "P4D - 4D-SFT" is judged against the seed-to-seed spread.
A second, question-level comparison pairs the two rows' answers to the same R4D-Sim questions,
pooled over seeds, so it also counts how often the rows disagree.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from r4d.eval.benchmarks.r4d import ABBREVIATIONS
from r4d.io.atomic import atomic_path, write_text
from r4d.io.r4d_bench import DYNAMIC_TASKS, STATIC_TASKS, TASKS

COLUMNS = ["Avg", "Sta", "Dyn", *ABBREVIATIONS.values(), "TimeBench"]
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}  # two-sided 95% t, by dof


def run_folder(name: str) -> str:
    """The folder a row's runs and evaluations live in (seed<k>/<folder>, eval/seed<k>/<folder>)."""
    return name.replace(" ", "_").replace("(", "").replace(")", "")


def scores(run: dict) -> dict[str, float]:
    """One run's row: overall, static, dynamic, per task, TimeBench (%)."""
    summary = run["r4dsim"]
    res = summary["results"]["r4dsim"]
    counts = summary["categories"]

    def pooled(tasks):
        present = [t for t in tasks if t in counts]
        total = sum(counts[t] for t in present)
        return sum(res[f"r4dsim_accuracy_{t},none"] * counts[t] for t in present) / total

    row = {
        "Avg": res["r4dsim_accuracy,none"],
        "Sta": pooled(STATIC_TASKS),
        "Dyn": pooled(DYNAMIC_TASKS),
    }
    for task in TASKS:
        if task in counts:
            row[ABBREVIATIONS[task]] = res[f"r4dsim_accuracy_{task},none"]
    row["TimeBench"] = run["timebench"]["results"]["timebench"]["timebench_accuracy,none"]
    return row


def by_row(results: dict) -> dict[str, list[dict]]:
    rows = defaultdict(list)
    for run in results["runs"].values():
        rows[run["name"]].append(scores(run))
    return rows


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"


def table(rows: dict[str, list[dict]], names: list[str]) -> str:
    lines = ["| row | seeds | " + " | ".join(COLUMNS) + " |", "|---|---:|" + "---:|" * len(COLUMNS)]
    for name in names:
        if name not in rows:
            continue
        runs = rows[name]
        cells = [
            _cell([r[c] for r in runs if c in r]) if any(c in r for r in runs) else "-"
            for c in COLUMNS
        ]
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired(rows, a: str, b: str, column: str) -> dict | None:
    """a - b per seed (seeds in order): mean, std, 95% t-interval."""
    if a not in rows or b not in rows:
        return None
    diffs = [x[column] - y[column] for x, y in zip(rows[a], rows[b], strict=False)]
    mean = float(np.mean(diffs))
    if len(diffs) < 2:
        return {"mean": mean, "n": len(diffs)}
    std = float(np.std(diffs, ddof=1))
    half = T95[len(diffs) - 1] * std / np.sqrt(len(diffs))
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": len(diffs)}


def paired_questions(out: Path, a: str, b: str, seeds: int) -> dict | None:
    """a - b on the same R4D-Sim test questions, pooled over seeds (pp): a normal 95% interval
    of the mean per-question difference, and the counts of questions only a / only b got."""
    diffs = []
    for seed in range(seeds):
        answers = []
        for name in (a, b):
            path = out / "eval" / f"seed{seed}" / run_folder(name) / "r4dsim" / "samples.jsonl"
            if not path.is_file():
                break
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            answers.append({r["id"]: bool(r["correct"]) for r in rows})
        if len(answers) < 2:
            continue
        diffs += [int(answers[0][i]) - int(answers[1][i]) for i in answers[0] if i in answers[1]]
    if not diffs:
        return None
    d = np.asarray(diffs, dtype=float)
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    mean = 100 * float(d.mean())
    return {
        "mean": mean,
        "ci95": [mean - 100 * half, mean + 100 * half],
        "only_a": int((d > 0).sum()),
        "only_b": int((d < 0).sum()),
        "questions": len(d),
    }


def write_report(out: Path, results: dict, groups: list[tuple[str, list[str]]]) -> None:
    """report.md, report.json and report.png in `out`. `groups`: (title, row names) per table
    (`r4d.reproduce.report_groups`), the first the core comparison that is also plotted."""
    rows = by_row(results)
    claims = {}
    for a, b in (
        ("P4D", "4D-SFT"),
        ("P4D+TPE", "4D-SFT"),
        ("P4D+TPE", "P4D"),
        ("4D-SFT", "Zero-shot"),
    ):
        for column in ("Avg", "Sta", "Dyn", "TimeBench"):
            claims[f"{a} - {b} ({column})"] = paired(rows, a, b, column)
    results["claims"] = claims
    question_pairs = [
        ("P4D", "4D-SFT"),
        ("P4D+TPE", "4D-SFT"),
        ("P4D+TPE", "P4D"),
        ("4D-SFT", "Zero-shot"),
        ("P4D 3x steps", "4D-SFT 3x steps"),
        ("P4D 10x weights", "4D-SFT"),
        ("P4D Rearrange mean", "4D-SFT"),
    ]
    by_question = {
        f"{a} - {b}": paired_questions(out, a, b, results["seeds"]) for a, b in question_pairs
    }
    results["claims_by_question"] = by_question
    lines = [
        f"# r4d reproduce: {results['preset']}",
        "",
        f"Seeds: {results['seeds']}; budget x{results['budget']}; wall time "
        f"{results['wall_seconds'] / 60:.1f} min (this invocation; finished stages are "
        "reused).",
        "",
    ]
    shown: set[str] = set()
    for title, names in groups:
        if any(name in rows and name not in shown for name in names):  # a row not yet shown
            lines += [f"## {title}", "", table(rows, names), ""]
        shown.update(names)
    lines += [
        "## Paired differences (per-seed), percentage points",
        "",
        "| difference | mean | std | 95% interval | seeds |",
        "|---|---:|---:|---|---:|",
    ]
    for name, c in claims.items():
        if c is None:
            continue
        ci = f"[{c['ci95'][0]:+.1f}, {c['ci95'][1]:+.1f}]" if "ci95" in c else "-"
        std = f"{c['std']:.1f}" if "std" in c else "-"
        lines.append(f"| {name} | {c['mean']:+.1f} | {std} | {ci} | {c['n']} |")
    lines += [
        "",
        "## Paired differences (same questions, pooled over seeds), percentage points",
        "",
        "| difference | mean | 95% interval | only first right | only second right | questions |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name, c in by_question.items():
        if c is None:
            continue
        ci = f"[{c['ci95'][0]:+.1f}, {c['ci95'][1]:+.1f}]"
        lines.append(
            f"| {name} | {c['mean']:+.1f} | {ci} | {c['only_a']} | {c['only_b']} | "
            f"{c['questions']} |"
        )
    cost = results["cost"]
    lines += [
        "",
        "## Inference cost of the exported P4D+TPE student",
        "",
        f"Parameters: base {cost['parameters_base']:,}, P4D {cost['parameters_p4d']:,}; "
        f"forward latency (best of 20, one question): base {cost['latency_ms_base']:.1f} ms, "
        f"P4D {cost['latency_ms_p4d']:.1f} ms, ratio {cost['ratio']:.3f}.",
        "",
        "## Teacher (held-out scenes)",
        "",
    ]
    t = results["teacher"]
    for key in t["teacher"]:
        lines.append(f"- {key}: teacher {t['teacher'][key]:.3f}, baseline {t['baseline'][key]:.3f}")
    write_text(out / "report.md", "\n".join(lines) + "\n")
    write_text(out / "report.json", json.dumps(results, indent=1, default=float) + "\n")
    _plot(out / "report.png", rows, groups[0][1])


def _plot(path: Path, rows, names) -> None:
    names = [n for n in names if n in rows]
    fig = Figure(figsize=(11, 3.5))
    ax = fig.subplots()
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        means = [np.mean([r.get(c, np.nan) for r in rows[name]]) for c in COLUMNS]
        stds = [np.std([r.get(c, np.nan) for r in rows[name]]) for c in COLUMNS]
        ax.bar(np.arange(len(COLUMNS)) + i * width, means, width, yerr=stds, label=name, capsize=2)
    ax.set_xticks(np.arange(len(COLUMNS)) + width * (len(names) - 1) / 2, COLUMNS)
    ax.set_ylabel("accuracy (%)")
    ax.legend(ncol=len(names), fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
