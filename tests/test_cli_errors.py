"""The CLI's one error path: bad input is one `error:` line and exit status 2; R4D_DEBUG=1
re-raises it with its traceback."""

import sys

import pytest
from typer.testing import CliRunner

from r4d import cli
from r4d.errors import InputError


def _eval_missing(tmp_path, monkeypatch):
    args = ["r4d", "eval", "--model", "random", "--bench", "r4dsim"]
    args += ["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "run")]
    monkeypatch.setattr(sys, "argv", args)


def test_bad_input_is_one_line_and_status_2(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("R4D_DEBUG", raising=False)
    _eval_missing(tmp_path, monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "absent" in err and "test.json" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_r4d_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("R4D_DEBUG", "1")
    _eval_missing(tmp_path, monkeypatch)
    with pytest.raises(InputError, match="absent"):
        cli.main()


@pytest.mark.parametrize(
    ("command", "bad"),
    [
        (["eval"], ["--limit", "-1"]),
        (["eval"], ["--fallback", "banana"]),
        (["eval"], ["--mode", "guess"]),
        (["eval"], ["--frames", "-2"]),
        (["eval"], ["--batch", "0"]),
        (["eval"], ["--image-detail", "ultra"]),
        (["train", "--config", "absent.json"], ["--steps", "-5"]),
        (["reproduce"], ["--budget", "0"]),
        (["reproduce"], ["--seeds", "0"]),
    ],
)
def test_options_out_of_range_are_refused_naming_the_option(command, bad, tmp_path):
    base = ["--model", "random", "--bench", "r4dsim", "--data", str(tmp_path), "--out"]
    args = [*command, *([*base, str(tmp_path / "run")] if command == ["eval"] else []), *bad]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 2
    assert bad[0] in result.output and not (tmp_path / "run").exists()
