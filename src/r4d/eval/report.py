"""Runs side by side: one markdown table per benchmark, a row per run (its model, its folder
and how many of its items failed, when any did)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from r4d.errors import InputError
from r4d.eval.benchmarks import get_benchmark
from r4d.eval.run import table


def side_by_side(runs: list[Path]) -> str:
    by_bench: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        path = Path(run) / "summary.json"
        if not path.is_file():
            raise InputError("no summary.json: not an evaluation run", where=run)
        summary = json.loads(path.read_text())
        failed = f", {summary['failed']} failed" if summary.get("failed") else ""
        summary["model"] = f"{summary['model']} ({Path(run).name}{failed})"
        by_bench[summary["protocol"]["benchmark"]].append(summary)
    blocks = []
    for name, summaries in by_bench.items():
        bench = get_benchmark(name)
        rows = [table(bench, s).splitlines() for s in summaries]
        lines = rows[0][:2] + [r[2] for r in rows]
        protocol = summaries[0]["protocol"]
        notes = [f"frames {protocol['frames']}", f"prompt {protocol['prompt']}"]
        if protocol.get("extras"):
            notes.append("scoring " + "+".join(protocol["extras"]))
        if protocol.get("judge"):
            notes.append(f"judge {protocol['judge']}")
        blocks.append(f"### {name} ({', '.join(notes)})\n\n" + "\n".join(lines))
    return "\n\n".join(blocks)
