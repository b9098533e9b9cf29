"""A bad row in a batched eval fails alone: it is logged as failed with its reason and counted,
its batch-mates keep their answers, a rerun retries it, and `--strict` stops at it."""

from __future__ import annotations

import json
import sys

import pytest

from r4d import cli
from r4d.errors import InputError
from r4d.eval.adapters import OracleAdapter
from r4d.eval.benchmarks import get_benchmark
from r4d.eval.report import side_by_side
from r4d.eval.run import evaluate
from test_eval import _video, make_omnispatial, make_vlm4d  # small files, official layouts


def _broken_vlm4d(root):
    """Six VLM4D rows; the third's video (v2.mp4, item real_7) is not a video."""
    make_vlm4d(root)
    bad = root / "videos_real" / "davis" / "v2.mp4"
    bad.write_bytes(b"not a video")
    return bad


def _broken_omnispatial(root):
    """Six OmniSpatial rows; the third's image (2.png, item 2_0) is not an image."""
    make_omnispatial(root)
    bad = root / "dataset" / "Dynamic_Reasoning" / "2.png"
    bad.write_bytes(b"not a png")
    return bad


BROKEN = {
    "vlm4d": (_broken_vlm4d, "real_7", "unreadable video"),  # InputError from the decoder
    "omnispatial": (_broken_omnispatial, "2_0", "unreadable image"),
}


def _rows(out) -> dict[str, dict]:
    lines = (out / "samples.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len({r["id"] for r in rows}) == len(rows)  # one line per item
    return {r["id"]: r for r in rows}


class _Asked(OracleAdapter):
    """The oracle, remembering the ids of each batch it was asked."""

    name = "oracle"

    def __init__(self, refuse=()):
        self.batches, self.refuse = [], set(refuse)

    def answer(self, requests):
        ids = [r.item.id for r in requests]
        self.batches.append(ids)
        refused = [i for i in ids if i in self.refuse]
        if refused:
            raise InputError("refused by the server (400)", where=f"item {refused[0]}")
        return super().answer(requests)


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_bad_row_fails_alone_and_its_batch_mates_keep_their_answers(name, tmp_path):
    make, bad_id, words = BROKEN[name]
    bad_file = make(tmp_path / "data")
    bench = get_benchmark(name)
    summary = evaluate(
        OracleAdapter(), bench, tmp_path / "data", tmp_path / "run", batch=4, progress=False
    )
    rows = _rows(tmp_path / "run")
    good = {i.id for i in bench.load(tmp_path / "data")} - {bad_id}
    evaluate(
        OracleAdapter(),
        bench,
        tmp_path / "data",
        tmp_path / "without",
        batch=4,
        progress=False,
        item_ids=good,
    )
    assert {i: rows[i] for i in good} == _rows(tmp_path / "without")
    failed = rows[bad_id]
    assert words in failed["failed"] and str(bad_file) in failed["failed"]
    assert failed["raw"] == [] and failed["score"] == 0.0 and not failed["correct"]
    assert summary["failed"] == 1 and summary["n_samples"][name] == 6
    assert summary["results"][name][f"{name}_accuracy,none"] == pytest.approx(500 / 6)
    assert "oracle (run, 1 failed)" in side_by_side([tmp_path / "run"])


def test_an_item_the_adapter_refuses_fails_alone(tmp_path):
    make_vlm4d(tmp_path / "data")
    adapter = _Asked(refuse={"real_9"})
    summary = evaluate(
        adapter, get_benchmark("vlm4d"), tmp_path / "data", tmp_path, batch=3, progress=False
    )
    rows = _rows(tmp_path)
    assert rows["real_9"]["failed"] == "item real_9: refused by the server (400)"
    assert [i for i, r in rows.items() if r.get("failed")] == ["real_9"]
    assert all(r["correct"] for i, r in rows.items() if i != "real_9")
    # the first batch at once; the second at once, then its items one by one
    second = ["real_1003", "real_9", "real_1005"]
    assert adapter.batches[1:] == [second, *([i] for i in second)]
    assert summary["failed"] == 1


def test_an_adapter_that_refuses_every_item_of_a_batch_stops_the_run(tmp_path):
    make_vlm4d(tmp_path / "data")
    refuse_all = _Asked(refuse={"real_5", "real_1001"})
    with pytest.raises(InputError, match="item real_5: refused by the server"):
        evaluate(
            refuse_all, get_benchmark("vlm4d"), tmp_path / "data", tmp_path, batch=2, progress=False
        )
    assert (tmp_path / "samples.jsonl").read_text() == ""  # nothing logged as the items' fault


def test_a_rerun_retries_the_failed_rows(tmp_path):
    bad = _broken_vlm4d(tmp_path / "data")
    bench = get_benchmark("vlm4d")
    evaluate(OracleAdapter(), bench, tmp_path / "data", tmp_path / "run", progress=False)
    assert _rows(tmp_path / "run")["real_7"]["failed"]
    again = _Asked()
    evaluate(again, bench, tmp_path / "data", tmp_path / "run", progress=False)
    assert again.batches == []  # still broken: retried, failed again before the model
    assert _rows(tmp_path / "run")["real_7"]["failed"]
    _video(bad, 2)  # the video fixed
    summary = evaluate(again, bench, tmp_path / "data", tmp_path / "run", progress=False)
    assert again.batches == [["real_7"]]  # only the failed item is asked again
    rows = _rows(tmp_path / "run")
    assert len(rows) == 6 and not any(r.get("failed") for r in rows.values())
    assert summary["failed"] == 0 and rows["real_7"]["correct"]


def _eval_cli(tmp_path, monkeypatch, *extra):
    args = ["r4d", "eval", "--model", "oracle", "--bench", "vlm4d", "--batch", "4"]
    args += ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *extra]
    monkeypatch.setattr(sys, "argv", args)
    monkeypatch.delenv("R4D_DEBUG", raising=False)


def test_strict_stops_at_the_first_failure_naming_the_item(tmp_path, monkeypatch, capsys):
    bad = _broken_vlm4d(tmp_path / "data")
    _eval_cli(tmp_path, monkeypatch, "--strict")
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    [line] = [x for x in err.splitlines() if "error" in x]  # the rest is the progress bar
    assert line.startswith("error: item real_7: ") and str(bad) in line
    assert "unreadable video" in line and "Traceback" not in err
    _eval_cli(tmp_path, monkeypatch)  # without --strict: logged, counted, said
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 0
    captured = capsys.readouterr()
    assert "warning: 1 of 6 items failed" in captured.err and "samples.jsonl" in captured.err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["failed"] == 1
