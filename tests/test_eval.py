"""The evaluation harness end to end on small files in each benchmark's official format."""

from __future__ import annotations

import io
import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from r4d.errors import InputError
from r4d.eval.adapters import OpenAIAdapter, OracleAdapter, RandomAdapter
from r4d.eval.benchmarks import get_benchmark
from r4d.eval.report import side_by_side
from r4d.eval.run import evaluate
from r4d.io.video import write_video


def _video(path, seed, n=20):
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.random.default_rng(seed).integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
    write_video(path, [frames], fps=10)


def _png(seed) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def make_stibench(root):
    rows = []
    for i in range(6):
        name = ["scene0001_00.mp4", "camera_3.mp4", "123456.mp4"][i % 3]
        _video(root / "video" / name, i)
        options = {k: f"{1.5 * (j + 1) + i:.1f} m" for j, k in enumerate("ABCDE")}
        rows.append(
            {
                "Video": name,
                "ID": str(100 + i),
                "time_start": 0.0,
                "time_end": 1.5,
                "Question": "How far does the red car move?",
                "Candidates": json.dumps(options),
                "Answer": "ABCDE"[i % 5],
                "Task": ["Displacement & Path Length", "Speed & Acceleration"][i % 2],
                "Source": "test",
            }
        )
    pq.write_table(pa.Table.from_pylist(rows), root / "qa.parquet")


def make_vlm4d(root):
    rows = []
    for i in range(6):
        _video(root / "videos_real" / "davis" / f"v{i}.mp4", i)
        choices = {"A": "left", "B": "right", "C": "towards", "D": "away"}
        rows.append(
            {
                "id": f"real_{[5, 1000][i % 2] + i}",
                "question_type": "multiple-choice",
                "video": f"https://huggingface.co/x/videos_real/davis/v{i}.mp4",
                "question": "Which way does the car move?",
                "choices": choices,
                "answer": choices["ABCD"[i % 4]],
            }
        )
    (root / "real_mc.json").write_text(json.dumps(rows))


def make_mmsi(root):
    rows = [
        {
            "id": i,
            "images": [_png(i), _png(i + 50)],
            "question_type": "Positional",
            "question": "Where is the cup? A: left B: right C: up D: down",
            "answer": "ABCD"[i % 4],
        }
        for i in range(6)
    ]
    pq.write_table(pa.Table.from_pylist(rows), root / "MMSI_Bench.parquet")


def make_omnispatial(root):
    rows = []
    for i in range(6):
        folder = root / "dataset" / "Dynamic_Reasoning"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.png").write_bytes(_png(i))
        rows.append(
            {
                "id": f"{i}_0",
                "question": "Which way will the ball go?",
                "options": ["up", "down", "left", "right"],
                "answer": i % 4,
                "task_type": "Dynamic_Reasoning",
                "sub_task_type": "Motion",
            }
        )
    (root / "data.json").write_text(json.dumps(rows))


def make_sat(root):
    rows = [
        {
            "image_bytes": [_png(i)],
            "question": "Is the chair to the left or the right?",
            "answers": ["left", "right"],
            "question_type": "obj_movement",
            "correct_answer": ["left", "right"][i % 2],
        }
        for i in range(6)
    ]
    pq.write_table(pa.Table.from_pylist(rows), root / "test.parquet")


def make_vsti(root):
    rows = []
    for i in range(6):
        _video(root / "videos" / f"s{i}.mp4", i, n=40)
        if i % 2:
            rows.append(
                {
                    "id": i,
                    "video_path": f"videos/s{i}.mp4",
                    "question_type": "camera_displacement",
                    "question": "How far did the camera move (m)?",
                    "ground_truth": 1.5 + i,
                }
            )
        else:
            rows.append(
                {
                    "id": i,
                    "video_path": f"videos/s{i}.mp4",
                    "question_type": "obj_obj_relative_pos_lr",
                    "question": "Is the lamp left of the bed?",
                    "options": ["A. yes", "B. no"],
                    "ground_truth": "yes",
                    "mc_answer": "AB"[i % 4 // 2],
                }
            )
    (root / "test.json").write_text(json.dumps(rows))


MAKERS = {
    "stibench": make_stibench,
    "vlm4d": make_vlm4d,
    "mmsi": make_mmsi,
    "omnispatial": make_omnispatial,
    "sat": make_sat,
    "vstibench": make_vsti,
}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    roots = {}
    for name, make in MAKERS.items():
        root = tmp_path_factory.mktemp(name)
        make(root)
        roots[name] = root
    return roots


def _root(name, fixtures, small_bench):
    return small_bench if name in ("r4dsim", "timebench") else fixtures[name]


@pytest.mark.parametrize("name", [*MAKERS, "r4dsim", "timebench"])
def test_oracle_scores_everything_and_random_sits_near_chance(
    name, fixtures, small_bench, tmp_path
):
    bench = get_benchmark(name)
    root = _root(name, fixtures, small_bench)
    limit = 12 if name == "r4dsim" else None
    summary = evaluate(
        OracleAdapter(), bench, root, tmp_path / "oracle", limit=limit, progress=False
    )
    results = summary["results"][name]
    assert results[f"{name}_accuracy,none"] == pytest.approx(100.0), name
    assert summary["protocol"]["benchmark"] == name and summary["n_samples"][name] > 0
    options = replace(bench.default_options(), repeats=40, frames=4)
    summary = evaluate(
        RandomAdapter(seed=1),
        bench,
        root,
        tmp_path / "random",
        options,
        limit=limit,
        progress=False,
    )
    rows = [
        json.loads(line)
        for line in (tmp_path / "random" / "samples.jsonl").read_text().splitlines()
    ]
    multiple_choice = [r for r in rows if r["n_options"]]
    chance = np.mean([1 / r["n_options"] for r in multiple_choice])
    if options.circular and options.circular_rule == "all":
        chance = np.mean([(1 / r["n_options"]) ** r["n_options"] for r in multiple_choice])
    got = np.mean([r["score"] for r in multiple_choice])
    assert abs(got - chance) < 0.12, (name, got, chance)


def test_released_r4d_bench_file_evaluates(small_bench, tmp_path):
    """Rows with only the released fields (no regions) through the R4D-Bench protocol."""
    rows = json.loads((small_bench / "test.json").read_text())
    released = [
        "id",
        "benchmark",
        "task",
        "video",
        "source",
        "som_image",
        "question",
        "question_raw",
        "options",
        "answer",
    ]
    trimmed = [{k: r[k] for k in released} for r in rows if r["som_image"]][:6]
    for name in ("videos", "clipped", "images"):
        (tmp_path / name).symlink_to(small_bench / name)
    (tmp_path / "test.json").write_text(json.dumps(trimmed))
    summary = evaluate(
        OracleAdapter(), get_benchmark("r4d"), tmp_path, tmp_path / "run", progress=False
    )
    assert summary["results"]["r4d"]["r4d_accuracy,none"] == 100.0
    table = (tmp_path / "run" / "table.md").read_text()
    assert table.splitlines()[0] == (
        "| model | Avg | Sta | Dyn | VG | DM | SR | R | C | T | FP | SA | DP |"
    )


class _Counting:
    name = "counting"

    def __init__(self):
        self.asked = []

    def answer(self, requests):
        self.asked += [r.item.id for r in requests]
        return OracleAdapter().answer(requests)


def test_interrupted_runs_resume(fixtures, tmp_path):
    bench = get_benchmark("vlm4d")
    first = _Counting()
    evaluate(first, bench, fixtures["vlm4d"], tmp_path, limit=3, progress=False)
    with open(tmp_path / "samples.jsonl", "a") as f:
        f.write('{"id": "real_9", "cut sh')  # a kill in the middle of a line
    second = _Counting()
    summary = evaluate(second, bench, fixtures["vlm4d"], tmp_path, progress=False)
    assert len(first.asked) == 3 and len(second.asked) == 3
    assert not set(first.asked) & set(second.asked)
    assert summary["n_samples"]["vlm4d"] == 6
    lines = (tmp_path / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(line) for line in lines)


def test_protocol_options_are_recorded_and_reported(fixtures, tmp_path):
    bench = get_benchmark("omnispatial")
    summary = evaluate(
        OracleAdapter(), bench, fixtures["omnispatial"], tmp_path / "a", progress=False
    )
    assert summary["protocol"]["repeats"] == 5 and summary["protocol"]["fallback"] == "A"
    assert "omnispatial_accuracy_stderr,none" in summary["results"]["omnispatial"]
    evaluate(RandomAdapter(), bench, fixtures["omnispatial"], tmp_path / "b", progress=False)
    text = side_by_side([tmp_path / "a", tmp_path / "b"])
    assert "oracle (a)" in text and "random (b)" in text and "prompt official" in text


@pytest.mark.parametrize(
    ("name", "edit", "field"),
    [
        ("vlm4d", lambda rows: rows[2].update(answer="sideways"), "answer"),
        ("vlm4d", lambda rows: rows[1].pop("question"), "question"),
        ("omnispatial", lambda rows: rows[0].update(answer=7), "answer"),
        ("vstibench", lambda rows: rows[1].update(ground_truth="far"), "ground_truth"),
    ],
)
def test_bad_rows_name_the_row_and_field(fixtures, tmp_path, name, edit, field):
    import shutil

    root = tmp_path / name
    shutil.copytree(fixtures[name], root)
    path = (
        root / {"vlm4d": "real_mc.json", "omnispatial": "data.json", "vstibench": "test.json"}[name]
    )
    rows = json.loads(path.read_text())
    edit(rows)
    path.write_text(json.dumps(rows))
    with pytest.raises(InputError) as info:
        get_benchmark(name).load(root)
    assert (
        info.value.field == field and str(path) in info.value.where and " row " in info.value.where
    )


def test_stibench_missing_column_is_named(tmp_path):
    make_stibench(tmp_path)
    table = pq.read_table(tmp_path / "qa.parquet").drop(["Question"])
    pq.write_table(table, tmp_path / "qa.parquet")
    with pytest.raises(InputError) as info:
        get_benchmark("stibench").load(tmp_path)
    assert info.value.field == "Question" and "row 100" in info.value.where


class _ChatServer(BaseHTTPRequestHandler):
    seen: ClassVar[list] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _ChatServer.seen.append(body)
        reply = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "The answer is (B)."},
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        return


def test_openai_compatible_client_against_a_loopback_server(fixtures, tmp_path):
    server = HTTPServer(("127.0.0.1", 0), _ChatServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        adapter = OpenAIAdapter(f"http://127.0.0.1:{server.server_port}/v1", "tiny-vlm")
        summary = evaluate(
            adapter, get_benchmark("vlm4d"), fixtures["vlm4d"], tmp_path, limit=2, progress=False
        )
    finally:
        server.shutdown()
    assert len(_ChatServer.seen) == 2
    content = _ChatServer.seen[0]["messages"][0]["content"]
    images = [c for c in content if c["type"] == "image_url"]
    assert len(images) == 10 and images[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert (
        content[-1]["type"] == "text"
        and "Answer directly with the option letter" in content[-1]["text"]
    )
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert all(r["extracted"] == ["B"] for r in rows)
    assert summary["model"] == "openai:tiny-vlm"


# lmms-eval task of each r4d benchmark (lmms_eval_tasks/r4d/*.yaml)
LMMS_TASK_NAMES = {
    "r4d": "r4d_bench",
    "r4dsim": "r4d_sim",
    "timebench": "timebench",
    "stibench": "sti_bench",
    "vlm4d": "vlm4d",
    "mmsi": "r4d_mmsi_bench",
    "omnispatial": "r4d_omni_spatial",
    "sat": "r4d_sat",
    "vstibench": "vstibench",
}


@pytest.mark.parametrize("name", [*MAKERS, "r4dsim", "timebench"])
def test_summary_is_also_in_lmms_evals_shape(name, fixtures, small_bench, tmp_path):
    """summary.json keeps r4d's keys and adds lmms-eval's, under the lmms-eval task's name:
    results (alias, `<metric>,none`, `<metric>_stderr,none`), configs, versions, n-samples,
    higher_is_better."""
    bench = get_benchmark(name)
    limit = 12 if name == "r4dsim" else None
    run = tmp_path / "run"
    root = _root(name, fixtures, small_bench)
    summary = evaluate(OracleAdapter(), bench, root, run, limit=limit, progress=False)
    assert json.loads((run / "summary.json").read_text()) == json.loads(json.dumps(summary))
    task = LMMS_TASK_NAMES[name]
    key = f"{name}_accuracy"
    mine, theirs = summary["results"][name], summary["results"][task]
    assert theirs["alias"] == task
    assert {k: v for k, v in theirs.items() if k != "alias"} == {
        k: v for k, v in mine.items() if k != "alias"
    }  # one dict where the names are the same (vlm4d, timebench, vstibench)
    assert theirs[f"{key},none"] == pytest.approx(100.0)
    assert f"{key}_stderr,none" in theirs and f"{key}_parse_rate,none" in theirs
    for metric in [k for k in theirs if k.endswith(",none") and "_stderr" not in k]:
        assert metric.replace(",none", "_stderr,none") in theirs, metric
    assert summary["configs"][task]["protocol"] == summary["protocol"]
    assert summary["configs"][task]["task"] == task
    assert summary["versions"][task] == 2.0
    n = summary["n_samples"][name]
    docs = summary["n-samples"][task]
    assert docs["effective"] == (2 * n if name == "sat" else n)  # SAT: both option orders
    assert docs["original"] >= docs["effective"]
    metrics = summary["higher_is_better"][task]
    assert metrics[key] is True and all(metrics.values())
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert [r["doc_id"] for r in rows] == sorted(r["doc_id"] for r in rows)
    for row in rows:
        assert {"doc_id", "prompt", "raw", "extracted", "read", "fallback"} <= row.keys()
        assert len(row["prompt"]) == len(row["raw"]) and all(row["prompt"])


def test_resume_reads_rows_without_doc_id_or_prompt(fixtures, tmp_path):
    """Rows logged before doc_id and prompt were recorded are read on a rerun."""
    bench = get_benchmark("vlm4d")
    run = tmp_path / "run"
    first = evaluate(OracleAdapter(), bench, fixtures["vlm4d"], run, limit=3, progress=False)
    samples = run / "samples.jsonl"
    old = [json.loads(line) for line in samples.read_text().splitlines()]
    for row in old:
        del row["doc_id"], row["prompt"]
    samples.write_text("".join(json.dumps(r) + "\n" for r in old))
    summary = evaluate(OracleAdapter(), bench, fixtures["vlm4d"], run, progress=False)
    assert summary["n_samples"]["vlm4d"] == 6
    assert summary["results"]["vlm4d"]["vlm4d_accuracy,none"] == 100.0
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert rows[:3] == old and all("prompt" in r for r in rows[3:])
    assert first["results"]["vlm4d"]["vlm4d_accuracy,none"] == 100.0


def test_report_refuses_a_folder_that_is_neither_run_nor_lmms_output(tmp_path):
    """A folder with neither summary.json nor lmms-eval's <model>/<timestamp>_results.json,
    or with lmms-eval results of no r4d task, is an InputError naming it."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not an lmms-eval output folder either"):
        side_by_side([tmp_path / "empty"])
    other = tmp_path / "other" / "model"
    other.mkdir(parents=True)
    (other / "2026-01-01T00-00-00_results.json").write_text(
        json.dumps({"results": {"mme": {"alias": "mme", "mme_cognition_score,none": 1.0}}})
    )
    with pytest.raises(InputError, match="lmms-eval results of no r4d task"):
        side_by_side([tmp_path / "other"])
    (other / "2026-01-01T00-00-00_results.json").write_text("[1]")
    with pytest.raises(InputError, match="expected a JSON object"):
        side_by_side([tmp_path / "other"])
