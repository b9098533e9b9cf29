"""Protocol parity end to end: the released R4D-Bench file's quirks, parse rates and fallbacks in
the run logs, named scoring options, and VLM4D's judged mode."""

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
from typer.testing import CliRunner

from r4d.errors import InputError
from r4d.eval.adapters import OracleAdapter, RandomAdapter
from r4d.eval.benchmarks import get_benchmark
from r4d.eval.run import evaluate
from r4d.io.r4d_bench import load_items
from r4d.io.video import write_video

# Templates with the released test.json's quirks: integer ids, Counting's integer 0 answer,
# integer and null options (and a null answer), clipped video paths, 4- and 5-option items.
TEMPLATES = [
    {
        "benchmark": "vlm4d",
        "task": "Counting",
        "question": "How many times does <obj_1> jump?",
        "options": [0, 1, 2, 3],
        "answer": 0,
    },
    {
        "benchmark": "vlm4d",
        "task": "Translational",
        "question": "Which way does <obj_1> move?",
        "options": ["left", "right", None, "towards the camera"],
        "answer": "right",
    },
    {
        "benchmark": "vlm4d",
        "task": "False Positives",
        "question": "Which way does <obj_2> turn?",
        "options": ["clockwise", "counter-clockwise", "both", None],
        "answer": None,
    },
    {
        "benchmark": "stibench",
        "task": "Dimensional Measurement",
        "question": "How long is <obj_1>?",
        "options": ["1.2 m", "2.4 m", "3.6 m", "4.8 m", "6.0 m"],
        "answer": "3.6 m",
    },
    {
        "benchmark": "stibench",
        "task": "Displacement & Path Length",
        "question": "How many metres does <obj_1> travel?",
        "options": [1, 2, 3, 4, 5],
        "answer": 3,
    },
]


def _png(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def released_bench(root, n=40):
    """An R4D-Bench folder in the released layout: ids alternate integers and strings."""
    rows = []
    for source in ("vlm4d", "stibench"):
        frames = np.random.default_rng(len(source)).integers(0, 255, (20, 32, 32, 3), np.uint8)
        (root / "clipped" / source).mkdir(parents=True, exist_ok=True)
        write_video(root / "clipped" / source / "clip.mp4", [frames], fps=10)
    for i in range(n):
        template = TEMPLATES[i % len(TEMPLATES)]
        row_id = 100 + i if i % 2 == 0 else f"{template['benchmark']}_{i:04d}"
        som = f"images/{template['benchmark']}/{row_id}.png"
        _png(root / som, i)
        rows.append(
            {
                "id": row_id,
                **template,
                "video": f"clipped/{template['benchmark']}/clip.mp4",
                "source": f"videos/{template['benchmark']}/clip.mp4",
                "som_image": som,
                "question_raw": template["question"].replace("<obj_1>", "the car"),
            }
        )
    (root / "test.json").write_text(json.dumps(rows))
    return rows


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("r4d_release")
    released_bench(root)
    return root


def test_the_released_types_load_as_the_official_loader_reads_them(release):
    items = {item.id: item for item in load_items(release / "test.json", check_files=True)}
    assert len(items) == 40 and "100" in items and "vlm4d_0001" in items
    counting, moving, null_answer, five = (
        items[k] for k in ("100", "vlm4d_0001", "102", "stibench_0003")
    )
    assert counting.options == ["0", "1", "2", "3"] and counting.answer_letter == "A"
    assert moving.options[2] == "None" and moving.answer_letter == "B"
    assert null_answer.answer == "None" and null_answer.answer_letter == "D"
    assert len(five.options) == 5 and five.answer_letter == "C"
    assert counting.video == "clipped/vlm4d/clip.mp4"


def test_oracle_scores_100_and_random_sits_near_chance_from_the_cli(release, tmp_path):
    from r4d.cli import app

    runner = CliRunner()
    for model in ("oracle", "random"):
        out = tmp_path / model
        args = ["eval", "--model", model, "--bench", "r4d", "--data", str(release)]
        result = runner.invoke(app, [*args, "--out", str(out)])
        assert result.exit_code == 0, result.output
        summary = json.loads((out / "summary.json").read_text())
        accuracy = summary["results"]["r4d"]["r4d_accuracy,none"]
        assert summary["n_samples"]["r4d"] == 40
        assert summary["results"]["r4d"]["r4d_accuracy_parse_rate,none"] == 100.0
        if model == "oracle":
            assert accuracy == 100.0
        else:
            assert abs(accuracy - summary["chance"]) < 15, (accuracy, summary["chance"])


def test_random_answers_sit_at_chance_over_many_draws(release, tmp_path):
    bench = get_benchmark("r4d")
    options = replace(bench.default_options(), repeats=20, frames=4)
    summary = evaluate(RandomAdapter(seed=3), bench, release, tmp_path, options, progress=False)
    assert abs(summary["results"]["r4d"]["r4d_accuracy,none"] - summary["chance"]) < 5


def test_both_r4d_evaluations_score_the_oracle_100(release, tmp_path):
    bench = get_benchmark("r4d")
    for prompt in ("official", "4d-rgpt"):
        options = replace(bench.default_options(), prompt=prompt, frames=4)
        summary = evaluate(
            OracleAdapter(), bench, release, tmp_path / prompt, options, limit=10, progress=False
        )
        assert summary["results"]["r4d"]["r4d_accuracy,none"] == 100.0
        assert summary["protocol"]["prompt"] == prompt


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (lambda r: r.update(id=True), "id", "non-empty string"),
        (lambda r: r.update(id=1.5), "id", "non-empty string"),
        (lambda r: r.update(id=""), "id", "non-empty string"),
        (lambda r: r.update(answer=None), "answer", "not among the options"),
        (lambda r: r.update(answer=7), "answer", "not among the options"),
        (lambda r: r.update(options=[0, "0", 1]), "options", "the same"),
        (lambda r: r.update(options=[0, {"x": 1}]), "options[1]", "text, a number or null"),
        (lambda r: r.update(options=[0]), "options", "a list of"),
        (lambda r: r.update(answer=[0]), "answer", "text, a number or null"),
    ],
)
def test_broken_rows_are_still_refused(tmp_path, edit, field, words):
    rows = released_bench(tmp_path, n=5)
    edit(rows[0])  # the Counting row, id 100
    (tmp_path / "test.json").write_text(json.dumps(rows))
    with pytest.raises(InputError) as info:
        load_items(tmp_path / "test.json")
    assert info.value.field == field and words in str(info.value)
    assert info.value.where.startswith(f"{tmp_path / 'test.json'} row ")


def test_an_integer_id_and_its_text_are_the_same_id(tmp_path):
    rows = released_bench(tmp_path, n=2)
    rows[1]["id"] = "100"
    (tmp_path / "test.json").write_text(json.dumps(rows))
    with pytest.raises(InputError, match="duplicate id"):
        load_items(tmp_path / "test.json")


class _Scripted:
    """Answers every request with the next of `texts`, in turn."""

    name = "scripted"

    def __init__(self, texts):
        self.texts, self.i = texts, 0

    def answer(self, requests):
        out = []
        for _ in requests:
            out.append(self.texts[self.i % len(self.texts)])
            self.i += 1
        return out


def test_samples_record_the_fallback_and_the_summary_the_parse_rate(release, tmp_path):
    bench = get_benchmark("r4d")
    options = replace(bench.default_options(), frames=4)
    adapter = _Scripted(["(B)", "no idea", "The answer is C", "b"])
    summary = evaluate(adapter, bench, release, tmp_path, options, limit=8, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [r["read"] for r in rows] == [[True], [False], [True], [False]] * 2
    assert [r["fallback"] for r in rows] == [[None], ["random"], [None], ["random"]] * 2
    assert all(r["extracted"][0] in "ABCDE" for r in rows)
    assert summary["parse"] == {"outputs": 8, "read": 4, "rate": 50.0, "fallback": {"random": 4}}
    assert summary["results"]["r4d"]["r4d_accuracy_parse_rate,none"] == 50.0


def test_unknown_scoring_options_and_judges_are_refused():
    bench = get_benchmark("r4d")
    with pytest.raises(InputError) as info:
        bench.check_options(replace(bench.default_options(), extras=("lenient",)))
    assert info.value.field == "scoring" and "lenient" in str(info.value)
    with pytest.raises(InputError) as info:
        bench.check_options(replace(bench.default_options(), judge="openai:x"))
    assert info.value.field == "judge"
    vlm4d = get_benchmark("vlm4d")
    vlm4d.check_options(replace(vlm4d.default_options(), extras=("option-text",), judge="x"))


def _sat(root):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="PNG")
    rows = [
        {
            "image_bytes": [buffer.getvalue()],
            "question": "Is the chair to the left or the right?",
            "answers": ["left", "right"],
            "question_type": "obj_movement",
            "correct_answer": "right",
        }
    ]
    pq.write_table(pa.Table.from_pylist(rows), root / "test.parquet")


def test_sat_averages_the_two_orders_and_records_extras(tmp_path):
    _sat(tmp_path)
    bench = get_benchmark("sat")
    always_right = _Scripted(["right"])  # right under both orders
    summary = evaluate(always_right, bench, tmp_path, tmp_path / "a", progress=False)
    assert summary["results"]["sat"]["sat_accuracy,none"] == 100.0
    first_listed = _Scripted(["left", "right"])  # answers the first option shown each time
    summary = evaluate(first_listed, bench, tmp_path, tmp_path / "b", progress=False)
    assert summary["results"]["sat"]["sat_accuracy,none"] == 50.0  # the mean, not "all"
    options = replace(bench.default_options(), circular_rule="all")
    summary = evaluate(
        _Scripted(["left", "right"]), bench, tmp_path, tmp_path / "c", options, progress=False
    )
    assert summary["results"]["sat"]["sat_accuracy,none"] == 0.0
    options = replace(bench.default_options(), extras=("lenient",))
    summary = evaluate(
        _Scripted(["It is to the right."]), bench, tmp_path, tmp_path / "d", options, progress=False
    )
    assert summary["results"]["sat"]["sat_accuracy,none"] == 100.0
    written = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert written["protocol"]["extras"] == ["lenient"] and written["protocol"]["judge"] is None


class _Judge(BaseHTTPRequestHandler):
    seen: ClassVar[list] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Judge.seen.append(body)
        reply = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "C"},
                }
            ],
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        return


def make_vlm4d_pair(root):
    """Two VLM4D multiple-choice rows over one 12-frame video (answer: C, towards)."""
    frames = np.zeros((12, 16, 16, 3), np.uint8)
    (root / "videos_real" / "davis").mkdir(parents=True)
    write_video(root / "videos_real" / "davis" / "v.mp4", [frames], fps=10)
    choices = {"A": "left", "B": "right", "C": "towards", "D": "away"}
    rows = [
        {
            "id": f"real_{i}",
            "video": "https://x/videos_real/davis/v.mp4",
            "question_type": "multiple-choice",
            "question": "Which way does the car move?",
            "choices": choices,
            "answer": "towards",
        }
        for i in (1, 2)
    ]
    (root / "real_mc.json").write_text(json.dumps(rows))


def test_vlm4d_judged_mode_reads_with_the_judge_and_records_it(tmp_path):
    make_vlm4d_pair(tmp_path)
    server = HTTPServer(("127.0.0.1", 0), _Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    spec = f"openai:tiny-judge@http://127.0.0.1:{server.server_port}/v1"
    bench = get_benchmark("vlm4d")
    options = replace(bench.default_options(), judge=spec, frames=2)
    try:
        adapter = _Scripted(["I'd go with the third one"])
        summary = evaluate(adapter, bench, tmp_path, tmp_path / "j", options, progress=False)
    finally:
        server.shutdown()
    assert summary["results"]["vlm4d"]["vlm4d_accuracy,none"] == 100.0
    assert summary["protocol"]["judge"] == spec
    prompt = _Judge.seen[0]["messages"][0]["content"]
    assert "I'd go with the third one" in prompt and "C. towards" in prompt
    assert _Judge.seen[0]["model"] == "tiny-judge"
    rules = evaluate(
        _Scripted(["I'd go with the third one"]), bench, tmp_path, tmp_path / "r", progress=False
    )
    assert rules["results"]["vlm4d"]["vlm4d_accuracy,none"] == 0.0  # "I" is no option letter
    assert rules["protocol"]["judge"] is None
