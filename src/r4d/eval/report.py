"""Runs side by side: one markdown table per benchmark, a row per run (its model, its folder
and how many of its items failed, when any did).

Each run folder is checked first (`read_run`): its summary.json must be a JSON object with the
fields a table reads, of a known benchmark, and its samples.jsonl (when there) one JSON object
per line covering at least the items the summary counts. Anything else is an InputError naming
the file, the key or line, and what was expected.

A folder may also be an lmms-eval `--output_path` folder (`read_lmms`): each
`<model>/<timestamp>_results.json` under it (at any depth) gives a row per r4d task it holds
(`r4d.eval.lmms_results.BENCHMARKS` maps the task to its benchmark), in that benchmark's table.
Categories are pooled into the table's columns by their item counts, read from the run's
`--log_samples` files (`<timestamp>_samples_<task>.jsonl`); without them, equally. lmms-eval
reports only the categories its task lists, so a column of other categories shows "-".
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

from r4d.errors import InputError
from r4d.eval.benchmarks import get_benchmark
from r4d.eval.lmms_results import BENCHMARKS
from r4d.eval.run import table


def _require(data: dict, key: str, kind: type | tuple, path: Path, prefix: str = "") -> object:
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
        got = "missing" if key not in data else f"got {value!r}"
        raise InputError(f"expected {names}, {got}", where=path, field=prefix + key)
    return value


def read_samples(path: Path) -> set[str]:
    """The item ids samples.jsonl logs; a line that is not a JSON object with an id (one cut
    short by a kill included) is refused, naming its number."""
    ids = set()
    with open(path, "rb") as lines:
        for n, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                cut = "" if raw.endswith(b"\n") else " (cut short: the run was interrupted)"
                raise InputError(
                    f"not a JSON row ({err}){cut}; rerun `r4d eval` on this folder",
                    where=f"{path} line {n}",
                ) from None
            if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                raise InputError("expected a JSON object with an id", where=f"{path} line {n}")
            ids.add(row["id"])
    return ids


def read_run(run: str | Path) -> dict:
    """A run folder's summary, checked (see the module's docstring)."""
    run = Path(run)
    if not run.is_dir():
        raise InputError("no such run folder", where=run)
    path = run / "summary.json"
    if not path.is_file():
        raise InputError("no summary.json: not an evaluation run", where=run)
    summary = _load_json(path)
    _require(summary, "model", str, path)
    protocol = _require(summary, "protocol", dict, path)
    name = _require(protocol, "benchmark", str, path, "protocol.")
    _require(protocol, "frames", int, path, "protocol.")
    _require(protocol, "prompt", str, path, "protocol.")
    try:
        bench = get_benchmark(name)
    except InputError as err:
        raise InputError(err.reason, where=path, field="protocol.benchmark") from None
    results = _require(_require(summary, "results", dict, path), name, dict, path, "results.")
    _require(results, f"{name}_{bench.metric},none", (int, float), path, f"results.{name}.")
    categories = _require(summary, "categories", dict, path)
    for category, count in categories.items():
        _require(categories, category, int, path, "categories.")
        if f"{name}_{bench.metric}_{category},none" not in results:
            raise InputError(
                f"category {category!r} ({count} items) has no result",
                where=path,
                field=f"results.{name}",
            )
    counted = _require(_require(summary, "n_samples", dict, path), name, int, path, "n_samples.")
    if "failed" in summary:
        _require(summary, "failed", int, path)
    samples = run / "samples.jsonl"
    if samples.is_file():
        logged = len(read_samples(samples))
        if logged < counted:
            raise InputError(
                f"logs {logged} items, its summary.json counts {counted}: the files are of "
                "different runs; rerun `r4d eval` on this folder",
                where=samples,
            )
    return summary


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"not valid JSON ({err})", where=path) from None
    if not isinstance(data, dict):
        raise InputError(f"expected a JSON object, got {type(data).__name__}", where=path)
    return data


def _dict(data: dict, key: str) -> dict:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _category_counts(path: Path, key: str, categories: list[str]) -> dict[str, int] | None:
    """How many logged samples carry each category's metric; None when none was logged."""
    stem = path.name.removesuffix("_results.json")
    logs = sorted(path.parent.glob(f"{stem}_samples_*.jsonl"))
    counts = dict.fromkeys(categories, 0)
    found = False
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            try:
                sample = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(sample, dict) and key in sample:
                found = True
                for c in categories:
                    counts[c] += f"{key}_{c}" in sample
    return counts if found else None


def read_lmms(path: Path) -> list[dict]:
    """An lmms-eval `<timestamp>_results.json`: one r4d-shaped summary per r4d task in it."""
    data = _load_json(path)
    results = _require(data, "results", dict, path)
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    model = str(config.get("model") or data.get("model_name") or path.parent.name)
    summaries = []
    for task, metrics in results.items():
        if task not in BENCHMARKS or not isinstance(metrics, dict):
            continue
        bench = get_benchmark(BENCHMARKS[task])
        key = f"{bench.name}_{bench.metric}"
        _require(metrics, f"{key},none", (int, float), path, f"results.{task}.")
        prefix = f"{key}_"
        categories = [
            k.removeprefix(prefix).removesuffix(",none")
            for k in metrics
            if k.startswith(prefix) and k.endswith(",none")
        ]
        categories = [
            c
            for c in categories
            if "stderr" not in c and c != "parse_rate" and not c.startswith("split_")
        ]
        counts = _category_counts(path, key, categories) or dict.fromkeys(categories, 1)
        counts = {c: n for c, n in counts.items() if n}
        protocol = _dict(_dict(_dict(data, "configs"), task), "protocol")
        if not protocol:
            protocol = {"benchmark": bench.name, **asdict(bench.default_options())}
        n = _dict(_dict(data, "n-samples"), task).get("effective", 0)
        summaries.append(
            {
                "model": f"lmms-eval:{model} ({path.parent.name}/{path.name})",
                "results": {bench.name: metrics},
                "categories": counts,
                "protocol": {**protocol, "benchmark": bench.name},
                "n_samples": {bench.name: n},
                "failed": 0,
            }
        )
    if not summaries:
        known = ", ".join(BENCHMARKS)
        raise InputError(f"lmms-eval results of no r4d task ({known})", where=path)
    return summaries


def read_folder(run: str | Path) -> list[dict]:
    """The summaries of a folder: an r4d run (its summary.json) or an lmms-eval output folder
    (every `*_results.json` under it)."""
    run = Path(run)
    if not run.is_dir():
        raise InputError("no such run folder", where=run)
    if (run / "summary.json").is_file():
        summary = read_run(run)
        failed = f", {summary['failed']} failed" if summary.get("failed") else ""
        summary["model"] = f"{summary['model']} ({run.name}{failed})"
        return [summary]
    found = sorted(run.rglob("*_results.json"))
    if not found:
        raise InputError(
            "no summary.json: not an evaluation run, and no <model>/<timestamp>_results.json "
            "under it: not an lmms-eval output folder either",
            where=run,
        )
    return [s for path in found for s in read_lmms(path)]


def side_by_side(runs: list[Path]) -> str:
    by_bench: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        for summary in read_folder(run):
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
