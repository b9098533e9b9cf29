"""The OpenAI-compatible adapters against a loopback server the test starts and stops: the key,
bounded concurrency, retries on 429 / 5xx, image detail and size, and clear failures."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from r4d import cli
from r4d.curate.backends import vlm_from_spec
from r4d.errors import InputError
from r4d.eval.adapters import APIOptions, OpenAIAdapter
from r4d.eval.core import EvalItem, Request
from test_protocols import make_vlm4d_pair  # two VLM4D rows in the official layout

HOLD_S = 3.0  # the longest the server waits for concurrent requests before giving up


def _echo(body: dict) -> str:
    return "echo " + body["messages"][0]["content"][-1]["text"]


class _Loopback:
    """A chat-completions server on 127.0.0.1: it records each request (headers, JSON body),
    fails the first requests with `failures` [(status, headers)], and with `together` holds
    requests until that many are in flight at once, then `hold` seconds more (so that a client
    with more in flight is seen with more)."""

    def __init__(self, failures=(), together: int = 0, hold: float = 0.0, reply=_echo):
        self.seen: list[dict] = []
        self.failures = list(failures)
        self.reply = reply
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        self.barrier = threading.Barrier(together, timeout=HOLD_S) if together else None
        self.hold = hold
        self.broken = False

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        with self.lock:
            headers = {k.lower(): v for k, v in handler.headers.items()}
            self.seen.append({"headers": headers, "body": body})
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            failure = self.failures.pop(0) if self.failures else None
        if self.barrier is not None:
            try:
                self.barrier.wait()
            except threading.BrokenBarrierError:
                self.broken = True
            time.sleep(self.hold)
        with self.lock:  # before answering: the client may send its next request at once
            self.in_flight -= 1
        if failure:
            status, headers = failure
            data, extra = json.dumps({"error": {"message": "busy", "type": "x"}}).encode(), headers
        else:
            status, extra = 200, {}
            message = {"role": "assistant", "content": self.reply(body)}
            data = json.dumps(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                }
            ).encode()
        handler.send_response(status)
        for key, value in {"Content-Type": "application/json", **extra}.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def prompts(self) -> list[str]:
        return [s["body"]["messages"][0]["content"][-1]["text"] for s in self.seen]


@contextmanager
def serving(state: _Loopback):
    """The server's base URL while the block runs; stopped (and its thread joined) after."""

    class Handler(BaseHTTPRequestHandler):
        timeout = 5  # a stuck client cannot hold a handler thread for ever

        def do_POST(self):
            state.handle(self)

        def log_message(self, *args):
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _short_backoff(monkeypatch):
    """The openai client's first backoff is 0.5 s; 10 ms keeps these tests fast."""
    monkeypatch.setattr("openai._base_client.INITIAL_RETRY_DELAY", 0.01, raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def _requests(n: int, side: int = 6) -> list[Request]:
    image = np.zeros((side, 2 * side, 3), np.uint8)
    return [Request(EvalItem(f"id{i}", "b", "c", f"q{i}"), f"q{i}", [image]) for i in range(n)]


def _api(**kw) -> APIOptions:
    return APIOptions(**{"timeout": 5.0, "max_retries": 2, **kw})


def test_the_key_comes_from_the_option_else_the_environment(monkeypatch):
    state = _Loopback()
    with serving(state) as url:
        OpenAIAdapter(url, "m", _api()).answer(_requests(1))
        monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
        OpenAIAdapter(url, "m", _api()).answer(_requests(1))
        OpenAIAdapter(url, "m", _api(api_key="sk-explicit")).answer(_requests(1))
    keys = [s["headers"]["authorization"] for s in state.seen]
    assert keys == ["Bearer EMPTY", "Bearer sk-from-env", "Bearer sk-explicit"]
    assert "sk-explicit" not in repr(_api(api_key="sk-explicit"))


def test_requests_go_n_at_a_time_and_answers_keep_their_order():
    state = _Loopback(together=3, hold=0.2)
    with serving(state) as url:
        answers = OpenAIAdapter(url, "m", _api(concurrency=3)).answer(_requests(6))
    assert not state.broken and state.max_in_flight == 3
    assert answers == [f"echo q{i}" for i in range(6)]


@pytest.mark.parametrize(
    "failure", [(429, {"Retry-After": "0"}), (500, {})], ids=["429-retry-after-0", "500"]
)
def test_a_429_or_500_is_retried_and_answers_stay_in_order(failure):
    state = _Loopback(failures=[failure])
    with serving(state) as url:
        answers = OpenAIAdapter(url, "m", _api(concurrency=2)).answer(_requests(4))
    assert answers == [f"echo q{i}" for i in range(4)]
    prompts = state.prompts()
    assert len(prompts) == 5 and prompts.count(prompts[0]) == 2  # the refused one, twice


def test_a_request_that_keeps_failing_is_an_error_naming_the_item():
    state = _Loopback(failures=[(503, {})] * 10)
    with serving(state) as url, pytest.raises(InputError, match="max-retries") as err:
        OpenAIAdapter(url, "m", _api(concurrency=1, max_retries=1)).answer(_requests(2))
    assert err.value.where == "item id0" and "503" in str(err.value)
    assert state.prompts() == ["q0", "q0"]  # one try and one retry; q1 was never sent


def test_image_detail_and_size_reach_the_request():
    state = _Loopback()
    with serving(state) as url:
        OpenAIAdapter(url, "m", _api(image_detail="low", max_image_side=4)).answer(_requests(1))
        vlm = vlm_from_spec(f"openai:v@{url}", _api(image_detail="high", api_key="sk-curate"))
        assert vlm.ask("which?", np.zeros((10, 5, 3), np.uint8), {"id": "c1"}) == "echo which?"
    parts = [s["body"]["messages"][0]["content"][0]["image_url"] for s in state.seen]
    assert [p["detail"] for p in parts] == ["low", "high"]
    sizes = [Image.open(io.BytesIO(base64.b64decode(p["url"].split(",")[1]))).size for p in parts]
    assert sizes == [(4, 2), (5, 10)]  # shrunk keeping the aspect; not grown
    assert state.seen[1]["headers"]["authorization"] == "Bearer sk-curate"
    with pytest.raises(InputError, match="image_detail"):
        APIOptions(image_detail="medium")


def test_r4d_eval_sends_the_options_and_writes_no_key(tmp_path, monkeypatch, capsys):
    make_vlm4d_pair(tmp_path / "data")
    state = _Loopback(reply=lambda body: "C")
    with serving(state) as url:
        args = ["eval", "--model", f"openai:tiny@{url}", "--bench", "vlm4d", "--frames", "2"]
        args += ["--data", str(tmp_path / "data"), "--judge", f"openai:j@{url}"]
        args += ["--api-key", "sk-secret-cli", "--image-detail", "high", "--timeout", "5"]
        result = CliRunner().invoke(cli.app, [*args, "--out", str(tmp_path / "out")])
        assert result.exit_code == 0, result.output
        answered = list(state.seen)
        state.failures = [(500, {})] * 10
        failing = [*args, "--out", str(tmp_path / "fails"), "--max-retries", "0"]
        monkeypatch.setattr("sys.argv", ["r4d", *failing])
        with pytest.raises(SystemExit) as exit_:
            cli.main()
    assert sorted(s["body"]["model"] for s in answered) == ["j", "j", "tiny", "tiny"]
    assert {s["headers"]["authorization"] for s in state.seen} == {"Bearer sk-secret-cli"}
    parts = [
        p
        for s in answered
        if s["body"]["model"] == "tiny"
        for p in s["body"]["messages"][0]["content"]
        if p["type"] == "image_url"
    ]
    assert len(parts) == 4 and {p["image_url"]["detail"] for p in parts} == {"high"}
    written = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]
    assert (tmp_path / "out" / "summary.json").is_file()
    assert not any(b"sk-secret-cli" in data for data in written)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "\nerror: item real_1: " in err and "Traceback" not in err
