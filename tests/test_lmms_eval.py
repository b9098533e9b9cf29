"""lmms-eval both ways: the real lmms-eval runs r4d's tasks (`lmms_eval_tasks/`) with its own
`dummy` model and with the `r4d` model on a tiny student, and every task scores as `r4d eval`
scores the same benchmark files: the same metrics (overall, per category, per split, parse rate,
stderr) and, item by item, the same outputs, extractions and scores."""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from lmms_eval import __main__ as lmms_main
from lmms_eval import tasks as lmms_tasks
from lmms_eval.api.instance import Instance
from lmms_eval.evaluator import simple_evaluate
from lmms_eval.tasks import TaskManager
from PIL import Image

from r4d.errors import InputError
from r4d.eval import lmms
from r4d.eval.adapters import R4DAdapter
from r4d.eval.benchmarks import get_benchmark
from r4d.eval.core import Request
from r4d.eval.report import side_by_side
from r4d.eval.run import evaluate
from r4d.io.r4d_bench import TASKS, TIMEBENCH
from r4d.io.video import read_frames, uniform_indices, write_video
from r4d.model import build_student
from r4d.model.answer import option_text, score_options
from r4d.model.tokenizer import train_tokenizer
from test_eval import MAKERS

TASK_DIR = Path(__file__).parents[1] / "lmms_eval_tasks"
# lmms-eval task -> (r4d benchmark, the variable naming its folder, the fixture folder)
TASK_FILES = {
    "r4d_bench": ("r4d", "R4D_BENCH_ROOT", "r4d"),
    "r4d_sim": ("r4dsim", "R4D_SIM_ROOT", "r4d"),
    "timebench": ("timebench", "TIMEBENCH_ROOT", "r4d"),
    "sti_bench": ("stibench", "STI_BENCH_ROOT", "stibench"),
    "vlm4d": ("vlm4d", "VLM4D_ROOT", "vlm4d"),
    "r4d_mmsi_bench": ("mmsi", "R4D_MMSI_BENCH_ROOT", "mmsi"),
    "r4d_omni_spatial": ("omnispatial", "R4D_OMNI_SPATIAL_ROOT", "omnispatial"),
    "r4d_sat": ("sat", "R4D_SAT_ROOT", "sat"),
    "vstibench": ("vstibench", "VSTIBENCH_ROOT", "vstibench"),
}
OPTIONS = ["left", "right", "up", "down"]


def make_r4d(root: Path) -> None:
    """R4D-Sim's layout: one item per task and two TimeBench items (which `r4d_sim` leaves
    out), some with a SoM image; 20-frame videos, so 16 rounded indices differ from truncated
    ones."""
    rows = []
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    for i, task in enumerate([*TASKS, TIMEBENCH, TIMEBENCH]):
        write_video(
            root / "videos" / f"c{i}.mp4", [rng.integers(0, 255, (20, 32, 32, 3), np.uint8)], 10
        )
        som = None
        if i % 3 == 0:
            som = f"images/c{i}.png"
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), np.uint8)).save(root / som)
        options = OPTIONS[: 3 + i % 2]
        rows.append(
            {
                "id": f"sim_{i:03d}",
                "benchmark": "r4dsim",
                "task": task,
                "video": f"videos/c{i}.mp4",
                "source": "test",
                "som_image": som,
                "question": "Where does the cube go?",
                "question_raw": "Where does the cube go?",
                "options": options,
                "answer": options[i % len(options)],
            }
        )
    (root / "test.json").write_text(json.dumps(rows))


def keep_first(root: Path, n: int) -> None:
    """Cut a benchmark's table (parquet or JSON list) to its first n rows."""
    for path in [*root.glob("*.parquet"), *root.glob("*.json")]:
        if path.suffix == ".parquet":
            pq.write_table(pq.read_table(path).slice(0, n), path)
        else:
            path.write_text(json.dumps(json.loads(path.read_text())[:n]))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Every benchmark's files (test_eval's makers, R4D-Sim's here) and a tiny student."""
    root = tmp_path_factory.mktemp("lmms")
    for name, make in MAKERS.items():
        (root / name).mkdir()
        make(root / name)
        keep_first(root / name, 4)
    make_r4d(root / "r4d")
    texts = [
        "Where does the cube go? Options:",
        *(option_text(j, o) for j, o in enumerate(OPTIONS)),
    ]
    tokenizer = train_tokenizer(texts * 20, vocab_size=600)
    torch.manual_seed(0)
    build_student("tiny", tokenizer).save_pretrained(root / "student", tokenizer)
    return root


@pytest.fixture
def lmms_env(data, tmp_path, monkeypatch):
    """The task folders' variables pointed at the files; lmms-eval offline, caching in tmp."""
    for _, variable, folder in TASK_FILES.values():
        monkeypatch.setenv(variable, str(data / folder))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return data


class AnswersA:
    """What lmms-eval's `dummy` model answers, as an r4d adapter."""

    name = "answers-a"

    def answer(self, requests):
        return ["A"] * len(requests)


def r4d_runs(adapter, data, out: Path) -> dict[str, tuple[dict, dict[str, dict], dict]]:
    """`r4d eval` on each task's files: (summary results, samples.jsonl rows by id, summary)."""
    runs = {}
    for task, (name, _, folder) in TASK_FILES.items():
        summary = evaluate(adapter, get_benchmark(name), data / folder, out / task, progress=False)
        rows = [
            json.loads(line) for line in (out / task / "samples.jsonl").read_text().splitlines()
        ]
        runs[task] = summary["results"][name], {r["id"]: r for r in rows}, summary
    return runs


def assert_same_scores(results: dict, runs: dict) -> None:
    """lmms-eval's metrics and per-sample log against `r4d eval`'s, task by task."""
    for task, (name, _, _) in TASK_FILES.items():
        mine, rows, summary = runs[task]
        theirs = results["results"][task]
        assert_same_shape(results, summary, task, name)
        key = f"{name}_accuracy"
        reported = [k for k in theirs if k.startswith(key) and k.endswith(",none")]
        assert f"{key},none" in reported and f"{key}_parse_rate,none" in reported, task
        for metric in reported:
            if "_stderr" in metric:
                continue
            assert theirs[metric] == pytest.approx(mine[metric]), (task, metric)
        stderr = theirs[f"{key}_stderr,none"]
        if name == "vstibench":  # an unweighted mean of per-type means: lmms-eval gives none
            assert stderr == "N/A"
        elif name != "sat":  # SAT: one lmms-eval doc per option order, so twice the n
            assert stderr == pytest.approx(mine[f"{key}_stderr,none"]), task
        # item by item: the outputs, what was read from them and the score
        docs = defaultdict(list)
        for sample in results["samples"][task]:
            docs[sample["doc"]["id"]].append(sample)
        assert docs.keys() == rows.keys(), task
        for item_id, samples in docs.items():
            row = rows[item_id]
            record = [s[f"{key}_parse_rate"] for s in samples]
            assert [t for s in samples for t in outputs(s)] == row["raw"], (task, item_id)
            assert [v for r in record for v in r["extracted"]] == row["extracted"], (task, item_id)
            assert [v for r in record for v in r["read"]] == row["read"], (task, item_id)
            assert [v for r in record for v in r["fallback"]] == row["fallback"], (task, item_id)
            scores = [s[key]["score"] if isinstance(s[key], dict) else s[key] for s in samples]
            assert np.mean(scores) == pytest.approx(100 * row["score"]), (task, item_id)
            # the prompts the model saw, and (one doc per item but SAT's) the doc ids
            prompts = {s["arguments"][0] for s in samples}  # each doc's context
            assert prompts == set(row["prompt"]), (task, item_id)
            if name != "sat":
                assert [s["doc_id"] for s in samples] == [row["doc_id"]], (task, item_id)


def assert_same_shape(results: dict, summary: dict, task: str, name: str) -> None:
    """`r4d eval`'s summary.json in lmms-eval's shape: the task's name, its metrics (every
    `,none` key lmms-eval reports, stderr included), n-samples, versions, higher_is_better."""
    theirs, mine = results["results"][task], summary["results"][task]
    assert mine["alias"] == theirs["alias"] == task
    for metric, value in theirs.items():
        if not metric.endswith(",none") or "_stderr_" in metric:  # stderr_clt, _clustered
            continue
        assert metric in mine, (task, metric)
        if "_stderr" not in metric:
            assert mine[metric] == pytest.approx(value), (task, metric)
        elif isinstance(value, float) and isinstance(mine[metric], float) and name != "sat":
            assert mine[metric] == pytest.approx(value), (task, metric)
    assert summary["n-samples"][task] == results["n-samples"][task], task
    assert summary["versions"][task] == results["versions"][task], task
    assert summary["higher_is_better"][task] == results["higher_is_better"][task], task


def outputs(sample: dict) -> list[str]:
    """A logged sample's outputs: one, or a list of them (every repeat of the question)."""
    kept = sample["filtered_resps"][0]
    return kept if isinstance(kept, list) else [kept]


def run_lmms(model: str, model_args: str = "") -> dict:
    return simple_evaluate(
        model=model,
        model_args=model_args,
        tasks=list(TASK_FILES),
        batch_size=4,
        task_manager=TaskManager(include_path=str(TASK_DIR), include_defaults=False),
        log_samples=True,
        verbosity="WARNING",
    )


@pytest.mark.slow
def test_every_task_scores_as_r4d_eval_with_lmms_evals_dummy_model(lmms_env, tmp_path):
    results = run_lmms("dummy")
    assert_same_scores(results, r4d_runs(AnswersA(), lmms_env, tmp_path))
    assert results["results"]["r4d_sim"]["r4dsim_accuracy_split_static,none"] >= 0
    # R4D-Sim without its TimeBench items; TimeBench on its own
    assert results["n-samples"]["r4d_sim"]["effective"] == len(TASKS)
    assert results["n-samples"]["timebench"]["effective"] == 2
    assert results["n-samples"]["r4d_sat"]["effective"] == 2 * 4  # both option orders


@pytest.mark.slow
def test_every_task_scores_as_r4d_eval_with_the_r4d_model(lmms_env, tmp_path):
    student = lmms_env / "student"
    results = run_lmms("r4d", f"pretrained={student}")
    assert_same_scores(results, r4d_runs(R4DAdapter(student), lmms_env, tmp_path))


@pytest.fixture(scope="module")
def cli_run(data, tmp_path_factory):
    """`python -m lmms_eval --model r4d --model_args pretrained=DIR --tasks r4d_sim
    --include_path lmms_eval_tasks --output_path OUT --log_samples` (its CLI, in this process)
    and `r4d eval` of the same student on the same files: (OUT, what it printed, r4d's run)."""
    out = tmp_path_factory.mktemp("lmms_cli")
    student = data / "student"
    argv = ["lmms_eval", "--model", "r4d", "--model_args", f"pretrained={student}"]
    argv += ["--tasks", "r4d_sim", "--include_path", str(TASK_DIR)]
    argv += ["--output_path", str(out / "lmms"), "--log_samples"]
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        for _, variable, folder in TASK_FILES.values():
            patch.setenv(variable, str(data / folder))
        patch.setenv("HF_DATASETS_CACHE", str(out / "hf"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(sys, "argv", argv)
        lmms_main.cli_evaluate()
    bench = get_benchmark("r4dsim")
    evaluate(R4DAdapter(student), bench, data / "r4d", out / "r4d", progress=False)
    return out / "lmms", printed.getvalue(), out / "r4d"


@pytest.mark.slow
def test_lmms_eval_command_prints_r4d_evals_accuracy(cli_run):
    lmms_out, printed, run = cli_run
    summary = json.loads((run / "summary.json").read_text())
    accuracy = summary["results"]["r4dsim"]["r4dsim_accuracy,none"]
    row = next(line for line in printed.splitlines() if "|r4dsim_accuracy " in line)
    assert f"{accuracy:.4f}" in row
    logged = list(lmms_out.rglob("*samples_r4d_sim*.jsonl"))
    assert len(logged) == 1 and len(logged[0].read_text().splitlines()) == len(TASKS)


@pytest.mark.slow
def test_r4d_report_reads_lmms_eval_output_folders(cli_run):
    """`r4d report` on lmms-eval's --output_path folder (its <model>/<timestamp>_results.json)
    shows the row `r4d eval`'s run of the same benchmark shows: the same accuracy, overall
    and per column."""
    lmms_out, _, run = cli_run
    assert list(lmms_out.glob("*/*_results.json"))
    text = side_by_side([run, lmms_out])
    rows = [line for line in text.splitlines() if line.startswith("| ") and "model" not in line]
    assert text.count("### r4dsim") == 1 and len(rows) == 2, text
    ours, theirs = (row.split(" | ")[1:] for row in rows)
    assert ours == theirs, text
    assert "lmms-eval:r4d" in rows[1]
    summary = json.loads((run / "summary.json").read_text())
    assert f"{summary['results']['r4dsim']['r4dsim_accuracy,none']:.1f}" == ours[0]


def test_frames_reach_lmms_eval_models_at_r4ds_indices(lmms_env):
    """doc_to_visual gives the SoM image, then the protocol's frames at r4d's (rounded)
    uniform indices: 16 for R4D-Sim, whatever the lmms-eval model would sample."""
    rows = lmms.doc_rows("r4dsim", str((lmms_env / "r4d").resolve()))
    doc = next(r for r in rows if r["id"] == "sim_000")  # has a SoM image
    visuals = lmms.doc_to_visual(doc)
    assert len(visuals) == 1 + 16
    video = lmms_env / "r4d" / "videos" / "c0.mp4"
    indices = uniform_indices(20, 16)
    assert not np.array_equal(indices, np.linspace(0, 19, 16).astype(int))  # rounding matters
    frames = read_frames(video, indices)
    assert all(np.array_equal(np.asarray(v), f) for v, f in zip(visuals[1:], frames, strict=True))
    assert lmms.doc_to_text(doc).startswith("The first image is a set-of-mark")


class _IgnoreTags(yaml.SafeLoader):
    """Reads a task YAML, its `!function` references as text."""


_IgnoreTags.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def test_task_files_declare_the_reported_metrics():
    """Each YAML names one r4d benchmark and lists its overall score, parse rate and the
    categories and splits r4d reports for it; no task name is shadowed by lmms-eval's own."""
    manager = TaskManager(include_path=str(TASK_DIR), include_defaults=False)
    builtin = {  # lmms-eval's own task names (a task of the same name would shadow ours)
        match
        for path in Path(lmms_tasks.__file__).parent.rglob("*.yaml")
        for match in re.findall(r"^task:\s*[\"']?([\w.-]+)", path.read_text(), re.M)
    }
    assert {"mmsi_bench", "sat", "omni_spatial"} <= builtin
    for task, (name, variable, _) in TASK_FILES.items():
        assert task in manager.all_tasks and task not in builtin, task
        folder = TASK_DIR / "r4d"
        pointer = json.loads((folder / f"{task}.json").read_text())
        assert pointer == [{"benchmark": name, "root": f"${variable}"}]
        config = yaml.load((folder / f"{task}.yaml").read_text(), Loader=_IgnoreTags)
        key = f"{name}_accuracy"
        categories, splits = lmms.REPORTED.get(name, ((), ()))
        wanted = [key, f"{key}_parse_rate", *(f"{key}_{c}" for c in categories)]
        wanted += [f"{key}_split_{s}" for s in splits]
        assert [m["metric"] for m in config["metric_list"]] == wanted, task
        assert all(m["higher_is_better"] for m in config["metric_list"])


def test_loglikelihood_is_the_students_option_score(lmms_env):
    """The r4d model's log-likelihood requests: log P(continuation | prompt, visuals), summed
    over the continuation's tokens. With the closing marker written out, its mean over the
    tokens is the length-normalised score `r4d eval` ranks options by (`score_options`)."""
    model = lmms.R4DModel(pretrained=str(lmms_env / "student"))
    rows = lmms.doc_rows("r4dsim", str((lmms_env / "r4d").resolve()))
    model.task_dict = {"r4d_sim": {"test": rows}}
    request = lmms.request_for(rows[1])
    adapter, tokenizer = model.adapter, model.adapter.processor.tokenizer
    (scores,) = score_options(
        adapter.model, adapter.processor, adapter.samples([request]), [request.options]
    )
    conts = [option_text(j, o) + tokenizer.eos_token for j, o in enumerate(request.options)]
    asked = [_instance((request.prompt, c, None, 1, "r4d_sim", "test")) for c in conts]
    answers = model.loglikelihood(asked)
    for (total, greedy), cont, score in zip(answers, conts, scores.tolist(), strict=True):
        n = len(tokenizer.encode(cont, add_special_tokens=False))
        assert total < 0 and total / n == pytest.approx(score, abs=1e-4)
        assert not greedy  # the untrained student answers none of them greedily


def _instance(arguments):
    return Instance("loglikelihood", arguments, 0, {"task": "r4d_sim", "doc_id": 1, "repeats": 1})


def test_the_r4d_model_answers_other_tasks_from_their_visuals(lmms_env):
    """A doc that is not r4d's: its PIL image becomes the request's image, its video path is
    sampled to `frames` frames at r4d's indices."""
    model = lmms.R4DModel(pretrained=str(lmms_env / "student"), frames=4)
    video = lmms_env / "r4d" / "videos" / "c1.mp4"
    picture = Image.new("RGB", (8, 8))
    model.task_dict = {"other": {"test": [{"q": 1}]}}
    args = (
        "What moves?",
        {"until": ["\n\n"]},
        lambda doc: [picture, str(video)],
        0,
        "other",
        "test",
    )
    request = model.request(_instance(args))
    assert isinstance(request, Request) and request.prompt == "What moves?"
    assert request.frames.shape[0] == 4 and len(request.images) == 1
    assert np.array_equal(request.frames, read_frames(video, uniform_indices(20, 4)))
    (text,) = model.generate_until([_instance(args)])
    assert isinstance(text, str)


def test_an_unset_folder_variable_is_named(monkeypatch, tmp_path):
    monkeypatch.delenv("R4D_SIM_ROOT", raising=False)
    with pytest.raises(InputError, match="set R4D_SIM_ROOT to the r4dsim folder"):
        lmms.folder({"benchmark": "r4dsim", "root": "$R4D_SIM_ROOT"})
    monkeypatch.setenv("R4D_SIM_ROOT", str(tmp_path))
    assert lmms.folder({"benchmark": "r4dsim", "root": "$R4D_SIM_ROOT"}) == str(tmp_path)
