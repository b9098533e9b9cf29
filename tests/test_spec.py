"""Model specs (`--model` of r4d eval, `--vlm` of r4d curate): one parser, clear errors, and a
bad spec reaching the user as `error: ...`, not a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from r4d import cli
from r4d.curate.backends import ScriptedVLM, WorldRegions, detector_from_spec, vlm_from_spec
from r4d.errors import InputError
from r4d.eval.adapters import OpenAIAdapter, OracleAdapter, RandomAdapter
from r4d.eval.spec import DEFAULT_OPENAI_URL, ModelSpec, adapter_from_spec, parse_spec


def test_parse_spec_reads_every_kind():
    assert parse_spec("random") == ModelSpec("random")
    assert parse_spec("openai:qwen@http://h:1/v1") == ModelSpec("openai", "qwen", "http://h:1/v1")
    assert parse_spec("openai:gpt-4o") == ModelSpec("openai", "gpt-4o", DEFAULT_OPENAI_URL)
    assert parse_spec("hf:models/qwen") == ModelSpec("hf", "models/qwen")
    assert parse_spec("runs/p4d/student") == ModelSpec("folder", "runs/p4d/student")
    for text in ("openai:qwen@http://h:1/v1", "hf:m", "oracle", "runs/x"):
        assert str(parse_spec(text)) == text


@pytest.mark.parametrize(
    ("text", "allowed", "message"),
    [
        ("", ("random",), "empty"),
        ("openai:@http://h/v1", ("openai",), "names no model"),
        ("hf:", ("hf",), "names no folder"),
        ("runs/x", ("scripted", "openai", "hf"), "folder spec"),
    ],
)
def test_parse_spec_refuses_bad_specs_naming_the_field(text, allowed, message):
    with pytest.raises(InputError, match=message) as err:
        parse_spec(text, allowed, field="vlm")
    assert err.value.field == "vlm"


def test_adapters_and_backends_from_specs(tmp_path):
    assert isinstance(adapter_from_spec("random"), RandomAdapter)
    assert isinstance(adapter_from_spec("oracle"), OracleAdapter)
    served = adapter_from_spec("openai:qwen@http://127.0.0.1:9/v1")
    assert isinstance(served, OpenAIAdapter) and served.model == "qwen"
    assert str(served.client.base_url).rstrip("/") == "http://127.0.0.1:9/v1"
    with pytest.raises(InputError, match="no such model folder"):
        adapter_from_spec(str(tmp_path / "missing"))
    with pytest.raises(InputError, match="scripted spec"):
        adapter_from_spec("scripted")
    assert isinstance(vlm_from_spec("scripted"), ScriptedVLM)
    with pytest.raises(InputError, match="folder spec"):
        vlm_from_spec("oracle-ish/folder")
    assert isinstance(detector_from_spec("world", tmp_path), WorldRegions)
    with pytest.raises(InputError, match="needs the world"):
        detector_from_spec("world")
    for bad in ("gdino:a", "gdino:a,sam3:b", "gdino:,sam2:b"):
        with pytest.raises(InputError, match="gdino:<folder>,sam2:<folder>"):
            detector_from_spec(bad)


def test_a_bad_spec_is_an_error_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    args = ["eval", "--model", str(tmp_path / "nope"), "--bench", "r4dsim"]
    args += ["--data", str(tmp_path), "--out", str(tmp_path / "out")]
    monkeypatch.setattr("sys.argv", ["r4d", *args])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no such model folder" in err and "Traceback" not in err
    result = CliRunner().invoke(cli.app, ["eval", "--help"])
    assert "--cache" in result.output
