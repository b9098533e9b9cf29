"""A run folder's identity: a rerun resumes the run its folder holds and refuses another one,
naming what differs; `--overwrite` starts fresh; code version is recorded, never compared."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
from accelerate import Accelerator
from typer.testing import CliRunner

from r4d import cli
from r4d.errors import InputError
from r4d.eval.adapters import OracleAdapter, RandomAdapter
from r4d.eval.benchmarks import get_benchmark
from r4d.eval.run import evaluate
from r4d.eval.spec import model_identity
from r4d.io.manifest import MANIFEST, differences, write
from r4d.train.config import TrainConfig
from r4d.train.run import RUN_CONFIG, check_run, run_identity
from r4d.train.trainer import train
from test_eval import make_omnispatial  # small files in the official layout


@pytest.fixture
def omni(tmp_path):
    """Six OmniSpatial items (images only: no video to decode) in the official layout."""
    make_omnispatial(tmp_path / "omni")
    return tmp_path / "omni"


class Counting:
    """The oracle, counting what it is asked."""

    name = "oracle"

    def __init__(self):
        self.asked = []

    def answer(self, requests):
        self.asked += [r.item.id for r in requests]
        return OracleAdapter().answer(requests)


def _eval(adapter, root, out, spec="oracle", **kw):
    return evaluate(
        adapter,
        get_benchmark("omnispatial"),
        root,
        out,
        progress=False,
        model=model_identity(spec),
        **kw,
    )


def _snapshot(out):
    return {name: (out / name).read_bytes() for name in (MANIFEST, "samples.jsonl")}


def test_eval_into_another_models_folder_is_refused_naming_the_model(omni, tmp_path):
    out = tmp_path / "run"
    _eval(OracleAdapter(), omni, out)
    before = _snapshot(out)
    with pytest.raises(InputError) as info:
        _eval(RandomAdapter(), omni, out, spec="random")
    message = str(info.value)
    assert 'model.kind: "oracle" (in the run) vs "random" (now)' in message
    assert "--overwrite" in message and "--out" in message and str(out) in message
    assert _snapshot(out) == before  # nothing read into, nothing rewritten


def test_another_benchmark_file_or_protocol_is_refused(omni, tmp_path):
    out = tmp_path / "run"
    _eval(OracleAdapter(), omni, out)
    before = _snapshot(out)
    rows = json.loads((omni / "data.json").read_text())
    rows[2]["answer"] = 3  # same ids, another answer: the rows done would be scored wrongly
    changed = tmp_path / "changed"
    shutil.copytree(omni, changed)
    (changed / "data.json").write_text(json.dumps(rows))
    with pytest.raises(InputError, match=r"benchmark\.items: sha256:\w{12} \(in the run\) vs"):
        _eval(OracleAdapter(), changed, out)
    options = replace(get_benchmark("omnispatial").default_options(), fallback="none")
    with pytest.raises(InputError, match=r'protocol\.fallback: "A" \(in the run\) vs "none"'):
        _eval(OracleAdapter(), omni, out, options=options)
    assert _snapshot(out) == before
    moved = tmp_path / "moved"  # the same files elsewhere are the same benchmark
    shutil.copytree(omni, moved)
    _eval(OracleAdapter(), moved, out)


def test_identical_rerun_resumes_extends_and_ignores_the_code_version(omni, tmp_path):
    out = tmp_path / "run"
    first = Counting()
    _eval(first, omni, out, limit=3)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["record"]["limit"] == 3 and manifest["record"]["code"]["r4d"]
    manifest["record"]["code"] = {"r4d": "0.0.1", "git": "0" * 40}  # made by other code
    (out / MANIFEST).write_text(json.dumps(manifest))
    second = Counting()
    summary = _eval(second, omni, out)  # a larger limit extends the run
    assert len(first.asked) == 15 and len(second.asked) == 15  # 3 items x 5 repeats each
    assert not set(first.asked) & set(second.asked)
    assert summary["n_samples"]["omnispatial"] == 6
    third = Counting()
    assert _eval(third, omni, out) == summary and third.asked == []
    assert json.loads((out / MANIFEST).read_text()) == manifest  # a resumed run's is kept


def test_overwrite_starts_fresh_and_deletes_only_r4ds_files(omni, tmp_path):
    out = tmp_path / "run"
    _eval(OracleAdapter(), omni, out)
    (out / "extra.txt").write_text("written beside the run\n")
    fresh = Counting()
    fresh.name = "random"
    _eval(fresh, omni, out, spec="random", overwrite=True)
    assert len(fresh.asked) == 30  # every item again
    assert json.loads((out / MANIFEST).read_text())["identity"]["model"] == {"kind": "random"}
    assert not (out / "extra.txt").exists()  # a folder with a manifest is r4d's, all of it
    legacy = tmp_path / "legacy"  # results from before manifests, beside a user's file
    _eval(OracleAdapter(), omni, legacy)
    (legacy / MANIFEST).unlink()
    (legacy / "notes.txt").write_text("mine\n")
    again = Counting()
    _eval(again, omni, legacy, overwrite=True)
    assert len(again.asked) == 30 and (legacy / "notes.txt").read_text() == "mine\n"


def test_a_model_folder_is_named_by_its_files_not_its_path(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    (a / "config.json").write_text('{"hidden": 8}')
    (a / "model.safetensors").write_bytes(b"\x08\x00" + bytes(range(40)))
    b = tmp_path / "b"
    shutil.copytree(a, b)
    assert model_identity(str(a)).compared == model_identity(str(b)).compared
    assert model_identity(str(a)).recorded == {"path": str(a), "cache": None}
    (b / "model.safetensors").write_bytes(b"\x08\x00" + bytes(range(1, 41)))
    diffs = differences(model_identity(str(a)).compared, model_identity(str(b)).compared)
    assert [d[0] for d in diffs] == ["files.model.safetensors"]
    assert model_identity(str(a), "generate").compared["mode"] == "generate"


def test_cli_refusal_is_one_error_line_with_status_2(omni, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    args = ["eval", "--bench", "omnispatial", "--data", str(omni), "--out", str(out)]
    runner = CliRunner()
    result = runner.invoke(cli.app, [*args, "--model", "oracle"])
    assert result.exit_code == 0, result.output
    monkeypatch.setattr("sys.argv", ["r4d", *args, "--model", "random"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: holds another run (model.kind: ")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    result = runner.invoke(cli.app, [*args, "--model", "random", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert "| random |" in result.output


def _train_config(tmp_path, out, **over) -> TrainConfig:
    """A tiny student built from scratch on four pictures' conversations."""
    data = tmp_path / "data"
    if not data.is_dir():
        make_omnispatial(data)  # for its pictures
        rows = []
        for i in range(4):
            turns = [
                {"from": "human", "value": "<image>\nWhat is the picture's colour?"},
                {"from": "gpt", "value": ["red", "blue"][i % 2]},
            ]
            image = f"dataset/Dynamic_Reasoning/{i}.png"
            rows.append({"id": str(i), "image": image, "conversations": turns})
        (data / "conversations.json").write_text(json.dumps(rows))
    config = {
        "out": str(out),
        "data": [{"kind": "llava", "path": str(data / "conversations.json")}],
        "student": {"preset": "tiny", "time_cues": [], "vocab_size": 300},
        "recipe": {"name": "paper", "variant": "4d-sft"},
        "optim": {"steps": 2, "batch_size": 2, "lr": 5e-4},
        "frames": 2,
        "png_every": 0,
        "checkpoint_every": 1,
        "workers": 0,
    }
    for key, value in over.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    return TrainConfig.from_dict(config)


def test_train_refuses_a_changed_config_and_resumes_the_same(tmp_path, monkeypatch):
    out = tmp_path / "run"
    config = _train_config(tmp_path, out)
    assert train(config, stop_at=1, progress=False) == {"stopped_at": 1}
    before = {name: (out / name).read_bytes() for name in (MANIFEST, RUN_CONFIG)}
    changed = _train_config(tmp_path, out, optim={"lr": 1e-3})
    with pytest.raises(InputError) as info:
        train(changed, progress=False)
    assert "optim.lr: 0.0005 (in the run) vs 0.001 (now)" in str(info.value)
    assert {name: (out / name).read_bytes() for name in (MANIFEST, RUN_CONFIG)} == before
    loaded = []
    original = Accelerator.load_state
    monkeypatch.setattr(
        Accelerator,
        "load_state",
        lambda self, path, **kw: loaded.append(path) or original(self, path, **kw),
    )
    cadence = _train_config(tmp_path, out, checkpoint_every=2, log_every=1)  # bookkeeping only
    assert train(cadence, progress=False)["steps"] == 2
    assert [p.rsplit("/", 1)[-1] for p in loaded] == ["step-0000001"]  # resumed, not restarted
    assert {name: (out / name).read_bytes() for name in (MANIFEST, RUN_CONFIG)} == before
    assert (out / "student" / "config.json").is_file()


def test_train_inputs_are_compared_by_content(tmp_path):
    out = tmp_path / "run"
    start = tmp_path / "start"
    start.mkdir()
    (start / "config.json").write_text("{}")
    config = _train_config(tmp_path, out, student={"path": str(start)})
    out.mkdir()
    write(out, run_identity(config))
    assert check_run(out, config, run_identity(config))
    (start / "config.json").write_text('{"hidden": 16}')
    with pytest.raises(InputError, match=r"inputs\.student\.config\.json: sha256:"):
        check_run(out, config, run_identity(config))
    path = tmp_path / "data" / "conversations.json"
    path.write_text(path.read_text().replace("red", "green"))
    with pytest.raises(InputError, match=r"inputs\.data\[0\]\.file: sha256:\w{12} \(in the run\)"):
        check_run(out, config, run_identity(config))


def test_a_folder_from_before_manifests_is_checked_against_its_train_config(tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    config = _train_config(tmp_path, out)
    (out / RUN_CONFIG).write_text(json.dumps(config.to_dict()))
    assert not check_run(out, config, run_identity(config))  # the same config: adopted
    seeded = _train_config(tmp_path, out, optim={"seed": 3})
    with pytest.raises(InputError, match=r"optim\.seed: 0 \(in train_config\.json\) vs 3"):
        check_run(out, seeded, run_identity(seeded))
