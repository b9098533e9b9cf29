"""Running a benchmark: per-sample JSONL (resumable), a summary keyed like lmms-eval, a table.

`samples.jsonl` gets one line per item as soon as it is scored: its `doc_id` (its index in the
benchmark as loaded), the prompts the model saw (`prompt`, one per ask), the raw outputs, what was
extracted, whether each was read from the text (`read`) or drawn by the protocol's fallback
(`fallback`: "random", "A" or null), the target, the score and the item's category and split.
A rerun reads it, skips finished items and goes on (a line cut short by a kill is dropped
first).

A bad item fails alone: when its request cannot be built (its video, image or mask is missing
or unreadable: `ITEM_ERRORS`) or the adapter refuses it (`InputError`, found by asking the
batch's items one by one after the batch failed), it gets a row with `failed` (the reason,
naming the file or field) and no prediction, and its batch-mates keep their answers. A failed
row is scored as wrong (score 0, in the accuracy denominator: what the benchmarks' official
scripts and lmms-eval do with a question the model did not answer), and the summary counts the
failed rows (`failed`). A rerun retries them: an asked item's failed row is dropped from
`samples.jsonl` before the run and the item asked again. With `strict`, the first failure
stops the run instead, as an `InputError` naming the item. When the adapter fails on every
item of a batch of two or more, asked one by one, the adapter (or its server) is at fault and
the run stops with its error. A judge that cannot read an output stops the run as well.

`summary.json` holds `results[<benchmark>]` with keys `<metric>,none`,
`<metric>_stderr,none`, `<metric>_parse_rate,none` (the share of outputs whose answer was
read, not drawn) and `<metric>_<category>,none`, the scoring options used (the protocol block:
every named deviation from the official code that was on is listed in its `extras`), and the
counts (`n_samples`: the items asked, failed ones included; `failed`); `table.md` the
paper's layout for the benchmark. Each category and split also has its stderr (lmms-eval's:
"N/A" below two items; the parse rate's is "N/A").

The summary is in lmms-eval's shape as well (`r4d.eval.lmms_results`): `results[<task>]`, the
same metrics under the lmms-eval task's name (`r4d` -> `r4d_bench`, `mmsi` -> `r4d_mmsi_bench`,
...; one dict where the two names are the same) with its `alias`, and `configs`, `versions`,
`n-samples` ({"original": docs in the benchmark, "effective": docs asked}; a doc is an item and
option order, as the lmms-eval task's docs) and `higher_is_better`, keyed by the task.

`manifest.json` (`r4d.io.manifest`) names what made the rows: the model (`model`, an
`Identity` from `r4d.eval.spec.model_identity`: the files of a model folder, not its path), the
benchmark and the sha256 of its items as loaded (`items_sha256`), and the protocol (every
`ScoringOptions` field). A rerun that differs in any of them is refused, naming the fields;
`overwrite` starts fresh. Which items are asked (`limit`, `item_ids`), the batch size, the data
folder's path and the code version are only recorded: a larger `limit` extends a run (rows are
per item, and a summary counts only the items asked for).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from r4d.errors import InputError
from r4d.eval.adapters import OpenAIJudge
from r4d.eval.core import Benchmark, EvalItem, ScoringOptions
from r4d.eval.lmms_results import lmms_blocks
from r4d.eval.spec import parse_spec
from r4d.io.atomic import exclusive_lock, write_text
from r4d.io.manifest import Identity, check_or_write

EVAL_FILES = ("samples.jsonl", "summary.json", "table.md")  # what `overwrite` deletes

# What an item's own inputs raise while its request is built: r4d's InputError (a missing or
# unreadable video, a bad mask RLE) and Pillow's errors for a missing or undecodable image
# (OSError, UnidentifiedImageError among them; DecompressionBombError). Anything else is a bug
# and stops the run.
ITEM_ERRORS = (InputError, OSError, Image.DecompressionBombError)


def _variants(item: EvalItem, options: ScoringOptions) -> list[list[int] | None]:
    """Option orders to ask under: the original, or every rotation (circular evaluation)."""
    if not options.circular or not item.options:
        return [None]
    n = len(item.options)
    return [[(i + shift) % n for i in range(n)] for shift in range(n)]


def items_sha256(items: list[EvalItem], root: str | Path) -> str:
    """sha256 over the items as loaded (their text, options, answers, categories; media paths
    relative to `root`, embedded images by their sha256), so a changed benchmark file is
    another benchmark wherever it lies."""
    root = Path(root)

    def plain(value):
        if isinstance(value, Path):
            return str(value.relative_to(root)) if value.is_relative_to(root) else str(value)
        if isinstance(value, bytes | bytearray):
            return "sha256:" + hashlib.sha256(value).hexdigest()
        if isinstance(value, np.ndarray | np.generic):
            return value.tolist()
        return str(value)

    text = json.dumps([asdict(i) for i in items], default=plain, sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _load_done(path: Path, asked: set[str]) -> dict[str, dict]:
    """The rows logged so far, by id. A line cut short by a kill is dropped, and so is the
    failed row of an item asked again (in `asked`): it is retried, its new row in its place."""
    if not path.is_file():
        return {}
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):  # a line cut short by a kill
        data = data[: data.rfind(b"\n") + 1]
        path.write_bytes(data)
    lines = [line for line in data.decode(errors="replace").splitlines() if line.strip()]
    rows = []
    for n, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise InputError(
                f"line {n} is not JSON ({err.msg}); fix or delete it, or rerun with --overwrite",
                where=path,
            ) from None
        if not isinstance(rows[-1], dict) or "id" not in rows[-1]:
            raise InputError(f"line {n} is not a sample row with an id", where=path)
    keep = [not (r.get("failed") and r["id"] in asked) for r in rows]
    if not all(keep):
        write_text(path, "".join(f"{line}\n" for line, k in zip(lines, keep, strict=True) if k))
    return {r["id"]: r for r, k in zip(rows, keep, strict=True) if k}


def evaluate(
    adapter,
    bench: Benchmark,
    root: str | Path,
    out: str | Path,
    options: ScoringOptions | None = None,
    limit: int | None = None,
    batch: int = 4,
    progress: bool = True,
    item_ids: set[str] | None = None,
    judge=None,
    model: Identity | None = None,
    overwrite: bool = False,
    strict: bool = False,
) -> dict:
    """Evaluate `adapter` on `bench` from the files under `root` (only `item_ids`, if given);
    returns the summary. With `options.judge`, a judge model (`judge`, else an `OpenAIJudge`
    built from the spec) reads the outputs instead of the benchmark's rules. `model` is the
    model's identity (`model_identity`; default: the adapter's name only); a folder holding
    another run is refused unless `overwrite`, which deletes its results first. A bad item is
    logged as failed and scored as wrong; with `strict` it stops the run (InputError)."""
    options = options or bench.default_options()
    bench.check_options(options)
    if options.judge:
        spec = parse_spec(options.judge, ("openai",), field="judge")
        options = replace(options, judge=str(spec))
        judge = judge or OpenAIJudge(spec.url, spec.name)
    else:
        judge = None
    out = Path(out)
    everything = bench.load(root)
    model = model or Identity({"name": getattr(adapter, "name", type(adapter).__name__)})
    identity = Identity(
        {
            "kind": "eval",
            "model": model.compared,
            "benchmark": {"name": bench.name, "items": items_sha256(everything, root)},
            "protocol": asdict(options),
        },
        {
            "model": model.recorded,
            "data": str(root),
            "limit": limit,
            "item_ids": None if item_ids is None else len(item_ids),
            "batch": batch,
        },
    )
    with exclusive_lock(out, "eval"):
        check_or_write(out, identity, overwrite, EVAL_FILES)
        items = [i for i in everything if item_ids is None or i.id in item_ids][:limit]
        doc_ids = {i.id: n for n, i in enumerate(everything)}
        original = sum(len(_variants(i, options)) for i in everything)
        return _run(
            adapter, bench, items, out, options, batch, progress, judge, strict, doc_ids, original
        )


def _run(
    adapter, bench, items, out, options, batch, progress, judge, strict, doc_ids, original
) -> dict:
    samples = out / "samples.jsonl"
    done = _load_done(samples, {i.id for i in items})
    todo = [i for i in items if i.id not in done]
    with open(samples, "a") as log:
        for a in tqdm(
            range(0, len(todo), batch), desc=bench.name, unit="batch", disable=not progress
        ):
            chunk = todo[a : a + batch]
            for row in _answer_batch(adapter, bench, chunk, options, judge, strict):
                row = {"doc_id": doc_ids[row["id"]], **row}
                done[row["id"]] = row
                log.write(json.dumps(row) + "\n")
                log.flush()
    rows = [done[i.id] for i in items if i.id in done]
    name = getattr(adapter, "name", type(adapter).__name__)
    summary = aggregate(bench, rows, options, name, original)
    summary["mode"] = getattr(adapter, "mode", "generate")  # "score": an r4d student's scoring
    write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    write_text(out / "table.md", table(bench, summary) + "\n")
    return summary


def _failure(item: EvalItem, err: Exception, strict: bool) -> str:
    """The reason `item` failed (InputError's message names the file or field; another error
    is prefixed with its type); with `strict`, an InputError naming the item instead."""
    reason = str(err) if isinstance(err, InputError) else f"{type(err).__name__}: {err}"
    if strict:
        raise InputError(reason, where=f"item {item.id}") from err
    return reason


def _answer_batch(adapter, bench, chunk, options, judge, strict) -> list[dict]:
    """The rows of `chunk`, in its order: answered, or failed (see the module docstring)."""
    failed: dict[str, str] = {}
    built: dict[str, list] = {}
    for item in chunk:
        try:
            requests = [(o, bench.request(item, options, o)) for o in _variants(item, options)]
        except ITEM_ERRORS as err:
            failed[item.id] = _failure(item, err, strict)
            continue
        built[item.id] = [(o, rep, r) for o, r in requests for rep in range(options.repeats)]
    ready = [item for item in chunk if item.id in built]
    texts = _texts(adapter, ready, built, failed, strict)
    rows = []
    for item in chunk:
        if item.id in failed:
            rows.append(_failed_record(item, failed[item.id]))
            continue
        answers = []
        for (order, rep, request), text in zip(built[item.id], texts[item.id], strict=True):
            extracted = bench.extract(text, request, options, judge)
            score = bench.score(item, request, extracted.value, options)
            answers.append((order, rep, text, extracted, score, request.prompt))
        rows.append(_record(item, answers, options))
    return rows


def _texts(adapter, items, built, failed, strict) -> dict[str, list[str]]:
    """The adapter's texts per item id, one per ask in `built`'s order. When it refuses the
    batch, each item is asked alone and those it refuses go into `failed`; when it refuses
    every item of a batch of two or more, the batch's error is raised."""

    def ask(group: list[EvalItem]) -> dict[str, list[str]]:
        asks = [(item.id, request) for item in group for _, _, request in built[item.id]]
        texts: dict[str, list[str]] = defaultdict(list)
        for (item_id, _), text in zip(asks, adapter.answer([r for _, r in asks]), strict=True):
            texts[item_id].append(text)
        return texts

    if not items:
        return {}
    try:
        return ask(items)
    except InputError as err:
        if len(items) == 1:
            failed[items[0].id] = _failure(items[0], err, strict)
            return {}
        first = err
    texts: dict[str, list[str]] = {}
    for item in items:
        try:
            texts.update(ask([item]))
        except InputError as err:
            failed[item.id] = _failure(item, err, strict)
    if not texts:  # not one item answered: the adapter (or its server) is at fault
        raise first
    return texts


def _failed_record(item: EvalItem, reason: str) -> dict:
    """The row of an item that got no answer: `failed` says why; it scores 0 (wrong)."""
    return {
        **_item_fields(item),
        "failed": reason,
        "prompt": [],
        "raw": [],
        "extracted": [],
        "read": [],
        "fallback": [],
        "score": 0.0,
        "correct": False,
    }


def _item_fields(item: EvalItem) -> dict:
    return {
        "id": item.id,
        "category": item.category,
        "split": item.split,
        "target": item.letter if item.answer_value is None else item.answer_value,
        "n_options": len(item.options) if item.options else None,
    }


def _record(item: EvalItem, answers: list, options: ScoringOptions) -> dict:
    """Scores combine over option orders within a repeat (circular: all right, or their mean
    under circular_rule "mean"), then average over repeats."""
    by_repeat: dict = defaultdict(list)
    for _, rep, _, _, score, _ in answers:
        by_repeat[rep].append(score)
    if options.circular and options.circular_rule == "all":
        per_repeat = [min(v) for v in by_repeat.values()]
    else:
        per_repeat = [float(np.mean(v)) for v in by_repeat.values()]
    score = float(np.mean(per_repeat))
    return {
        **_item_fields(item),
        "prompt": [a[5] for a in answers],
        "raw": [a[2] for a in answers],
        "extracted": [a[3].value for a in answers],
        "read": [a[3].read for a in answers],
        "fallback": [a[3].fallback for a in answers],
        "score": score,
        "correct": score == 1.0,
    }


def _stderr(scores: list[float]) -> float | str:
    """lmms-eval's stderr of a mean, in percent: "N/A" below two scores."""
    return (
        100 * float(np.std(scores, ddof=1) / math.sqrt(len(scores))) if len(scores) > 1 else "N/A"
    )


def aggregate(
    bench: Benchmark,
    rows: list[dict],
    options: ScoringOptions,
    model: str,
    original: int | None = None,
) -> dict:
    """The summary of `rows` (see the module docstring); `original`: how many docs the
    benchmark has in all (lmms-eval's n-samples), default the rows'."""
    by_category: dict[str, list[float]] = defaultdict(list)
    by_split: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by_category[r["category"]].append(r["score"])
        if r["split"]:
            by_split[r["split"]].append(r["score"])
    scores = [r["score"] for r in rows]
    if options.per_type_average and by_category:
        overall = float(np.mean([np.mean(v) for v in by_category.values()]))
    else:
        overall = float(np.mean(scores)) if scores else float("nan")
    stderr = float(np.std(scores, ddof=1) / math.sqrt(len(scores))) if len(scores) > 1 else 0.0
    key = f"{bench.name}_{bench.metric}"
    parse = parse_stats(rows)
    results = {f"{key},none": 100 * overall, f"{key}_stderr,none": 100 * stderr}
    if parse["outputs"]:
        results[f"{key}_parse_rate,none"] = parse["rate"]
        results[f"{key}_parse_rate_stderr,none"] = "N/A"  # as lmms-eval: not a mean
    for cat, v in sorted(by_category.items()):
        results[f"{key}_{cat},none"] = 100 * float(np.mean(v))
        results[f"{key}_{cat}_stderr,none"] = _stderr(v)
    for split, v in sorted(by_split.items()):
        results[f"{key}_split_{split},none"] = 100 * float(np.mean(v))
        results[f"{key}_split_{split}_stderr,none"] = _stderr(v)
    chance = [1 / r["n_options"] for r in rows if r["n_options"]]
    docs = sum(r["n_options"] if options.circular and r["n_options"] else 1 for r in rows)
    lmms = lmms_blocks(bench, results, options, docs if original is None else original, docs)
    return {
        **lmms,
        "results": {bench.name: results, **lmms["results"]},
        "n_samples": {bench.name: len(rows)},
        "failed": sum(1 for r in rows if r.get("failed")),
        "categories": {c: len(v) for c, v in sorted(by_category.items())},
        "chance": 100 * float(np.mean(chance)) if chance else None,
        "parse": parse,
        "protocol": {"benchmark": bench.name, **asdict(options)},
        "model": model,
    }


def parse_stats(rows: list[dict]) -> dict:
    """Outputs, how many had their answer read (not drawn, not missing), the rate in percent,
    and how many each fallback drew. Rows logged before `read` was recorded are left out."""
    read = [r for row in rows for r in row.get("read", [])]
    drawn: dict[str, int] = defaultdict(int)
    for row in rows:
        for name in row.get("fallback", []):
            if name:
                drawn[name] += 1
    rate = 100 * sum(read) / len(read) if read else None
    return {"outputs": len(read), "read": int(sum(read)), "rate": rate, "fallback": dict(drawn)}


def table(bench: Benchmark, summary: dict) -> str:
    """One markdown row in the benchmark's layout (`Benchmark.table_columns`)."""
    results = summary["results"][bench.name]
    key = f"{bench.name}_{bench.metric}"
    columns = bench.table_columns() or [(c, [c]) for c in summary["categories"]]
    head = ["model", "Avg", *[name for name, _ in columns]]
    cells = [summary["model"], f"{results[f'{key},none']:.1f}"]
    counts = summary["categories"]
    for _, cats in columns:
        present = [c for c in cats if f"{key}_{c},none" in results]
        if not present:
            cells.append("-")
            continue
        total = sum(counts[c] for c in present)
        value = sum(results[f"{key}_{c},none"] * counts[c] for c in present) / total
        cells.append(f"{value:.1f}")
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        "| " + " | ".join(cells) + " |",
    ]
    return "\n".join(lines)
