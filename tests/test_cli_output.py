"""What ``gptunnel`` prints: server text made harmless, output that survives a pipe, ``--json``,
and the first errors a user meets (unknown model, timeout, 404 offline, connection refused,
a batch's failures), each saying what to do next."""

from __future__ import annotations

import json
import socket
import threading
import unicodedata
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from gptunnel_async import AsyncGPTunnel
from gptunnel_async.cli import EXIT_ERROR, EXIT_USAGE, _output
from gptunnel_async.cli._app import cli
from gptunnel_async.testing import DurationDist, Emulator, EmulatorConfig, run_in_thread

KEY = "test-secret-key-0123456789"
TASK_ID = "0123456789abcdef01234567"
#: Retitles the window, rings the bell, clears the screen; then a C1 CSI and a bidi override.
HOSTILE = "\x1b]0;PWNED\x07\x1b[2J\x9b31m\u202e"
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GPTUNNEL_API_KEY", "GPTUNNEL_BASE_URL", "GPTUNNEL_LOG"):
        monkeypatch.delenv(name, raising=False)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def online(url: str, *args: str) -> Result:
    return invoke("--base-url", url, "--api-key", KEY, "--clock-scale", "200", *args)


def offline(*args: str) -> Result:
    return invoke("--offline", "--clock-scale", "400", *args)


def assert_harmless(text: str) -> None:
    for char in RAW:
        assert char not in text, f"raw {char!r} printed"


# -- a server that answers whatever a test scripts -------------------------------------------

Route = Callable[[dict[str, list[str]]], tuple[int, Any]]


class _Handler(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, Route]] = {}

    def _answer(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        route = self.routes.get(f"{self.command} {parts.path}")
        status, body = route(parse_qs(parts.query)) if route else (404, {"error": "no route"})
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[tuple[str, dict[str, Route]]]:
    """A loopback server answering ``routes[\"METHOD /path\"](query)`` -> (status, JSON body)."""
    routes: ClassVar[dict[str, Route]] = {}
    handler = type("Handler", (_Handler,), {"routes": routes})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", routes
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _task(**fields: Any) -> dict[str, Any]:
    return {"code": 0, "id": TASK_ID, "model": "google-imagen-3", "prompt": "a fox", **fields}


# -- server text reaches the terminal escaped ------------------------------------------------


def test_clean_escapes_every_control_character_and_keeps_ordinary_text() -> None:
    assert _output.clean("a\x1b[2Jb\x07c\x9bd\u202ee\u2028") == (
        "a\\x1b[2Jb\\x07c\\x9bd\\u202ee\\u2028"
    )
    ordinary = "один кот 🦊 — ok: https://x/y?a=1&b=2 \u200d"
    assert _output.clean(ordinary) == ordinary


def test_clean_json_keeps_json_valid_and_the_value_exact() -> None:
    value = {"url": HOSTILE + "\x7f", "text": "один\n"}
    text = _output.clean_json(json.dumps(value, ensure_ascii=False, indent=2))
    assert_harmless(text)
    assert "\x7f" not in text
    assert json.loads(text) == value


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_no_server_text_reaches_the_terminal_with_a_control_character(text: str) -> None:
    shown = _output.clean(text)
    assert not any(unicodedata.category(c) == "Cc" or c in "\u2028\u2029\u202e" for c in shown)
    assert _output.clean(shown) == shown  # printable text is left as it is


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))
def test_json_output_is_harmless_and_decodes_to_the_same_value(value: Any) -> None:
    text = _output.clean_json(json.dumps(value, ensure_ascii=False, indent=2))
    assert not any(unicodedata.category(c) == "Cc" and c not in "\n" for c in text)
    assert json.loads(text) == value


def test_wait_result_and_json_print_a_hostile_link_escaped(
    scripted: tuple[str, dict[str, Route]],
) -> None:
    url, routes = scripted
    link = f"https://files.example/{HOSTILE}.webp"
    routes["GET /v1/media/result"] = lambda q: (200, _task(status="done", url=link))
    waited = online(url, "wait", TASK_ID)
    assert waited.exit_code == 0, waited.output
    assert_harmless(waited.output)
    assert "\\x1b]0;PWNED\\x07" in waited.stdout
    table = online(url, "result", TASK_ID)
    assert table.exit_code == 0, table.output
    assert_harmless(table.output)
    as_json = online(url, "result", TASK_ID, "--json")
    assert_harmless(as_json.output)
    assert json.loads(as_json.stdout)["url"] == link  # escaped on screen, exact for a program
    wait_json = online(url, "wait", TASK_ID, "--json")
    assert_harmless(wait_json.output)
    assert json.loads(wait_json.stdout)["url"] == link


def test_the_error_line_escapes_a_hostile_failure_reason(
    scripted: tuple[str, dict[str, Route]],
) -> None:
    url, routes = scripted
    routes["GET /v1/media/result"] = lambda q: (
        200,
        _task(status="failed", error=f"boom {HOSTILE}", message=f"boom {HOSTILE}"),
    )
    result = online(url, "wait", TASK_ID)
    assert result.exit_code == EXIT_ERROR
    assert_harmless(result.output)
    assert result.stderr.startswith("error: task failed")
    assert "\\x1b[2J" in result.stderr


def test_an_api_error_message_is_escaped(scripted: tuple[str, dict[str, Route]]) -> None:
    url, routes = scripted
    routes["GET /v1/balance"] = lambda q: (
        403,
        {"error": {"message": f"nope {HOSTILE}", "type": "forbidden"}},
    )
    result = online(url, "balance")
    assert result.exit_code == EXIT_ERROR
    assert_harmless(result.output)
    assert result.stderr.startswith("error: 403 nope \\x1b]0;PWNED")


def test_remote_model_titles_are_escaped_in_a_table_on_a_terminal(
    scripted: tuple[str, dict[str, Route]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, routes = scripted
    routes["GET /v1/models"] = lambda q: (
        200,
        {"object": "list", "data": [{"id": "gpt-4o", "title": f"GPT {HOSTILE}"}]},
    )
    monkeypatch.setattr(_output, "stdout_is_terminal", lambda: True)  # rich draws the table
    result = online(url, "models", "--remote")
    assert result.exit_code == 0, result.output
    assert "┃" in result.stdout or "│" in result.stdout  # drawn by rich, not the piped form
    assert_harmless(result.output)


def test_batch_summary_shows_the_first_reasons_escaped(
    tmp_path: Path, scripted: tuple[str, dict[str, Route]]
) -> None:
    url, routes = scripted
    counter = iter(range(100))

    def create(q: dict[str, list[str]]) -> tuple[int, Any]:
        return 200, _task(id=f"{next(counter):024x}", status="failed", error=f"bad {HOSTILE}")

    routes["POST /v1/media/create"] = create
    routes["GET /v1/media/result"] = lambda q: (
        200,
        _task(id=q["task_id"][0], status="failed", error=f"bad {HOSTILE}"),
    )
    source = tmp_path / "p.txt"
    source.write_text("one\ntwo\n", encoding="utf-8")
    result = online(url, "batch", str(source), "-o", str(tmp_path / "out"), "--no-journal")
    assert result.exit_code == EXIT_ERROR
    assert_harmless(result.output)
    reasons = [line for line in result.stderr.splitlines() if line.startswith("  request ")]
    assert len(reasons) == 2
    assert all("task failed" in line and "\\x1b" in line for line in reasons)


# -- output that survives a pipe, and --json -------------------------------------------------


def test_piped_tables_are_one_line_per_row_whatever_the_width(
    scripted: tuple[str, dict[str, Route]],
) -> None:
    url, routes = scripted
    link = "https://files.example/" + "a" * 300 + ".webp?expires=1"
    routes["GET /v1/media/result"] = lambda q: (200, _task(status="done", url=link))
    result = online(url, "result", TASK_ID)
    assert result.exit_code == 0, result.output
    rows = dict(line.split("\t") for line in result.stdout.splitlines())
    assert rows["url"] == link
    assert rows["id"] == TASK_ID
    catalogue = invoke("models")
    lines = catalogue.stdout.splitlines()
    assert all(len(line.split("\t")) == 6 for line in lines)
    assert any("synchronous /media/generate" in line for line in lines)  # never split


def test_json_output_of_models_balance_and_generate(tmp_path: Path) -> None:
    models = json.loads(invoke("models", "--json").stdout)
    assert {m["id"] for m in models} >= {"google-imagen-3", "suno"}
    assert all(set(m) >= {"kind", "ar", "max_images", "endpoint"} for m in models)
    remote = json.loads(offline("models", "--remote", "--json").stdout)
    assert {m["id"]: m["kind"] for m in remote}["gpt-4o"] == "chat"
    balance = json.loads(offline("balance", "--json").stdout)
    assert balance["balance"] == 1_000_000.0
    made = offline("generate", "a fox", "-o", str(tmp_path), "--json")
    assert made.exit_code == 0, made.output
    shown = json.loads(made.stdout)
    assert Path(shown["path"]).is_file()
    assert shown["task_id"] in shown["path"]


def test_remote_models_label_the_ones_the_media_api_takes(
    scripted: tuple[str, dict[str, Route]],
) -> None:
    url, routes = scripted
    data = [{"id": "gpt-4o"}, {"id": "google-imagen-3"}]
    routes["GET /v1/models"] = lambda q: (200, {"object": "list", "data": data})
    rows = [line.split("\t") for line in online(url, "models", "--remote").stdout.splitlines()]
    assert {row[0]: row[1] for row in rows[1:]} == {"gpt-4o": "chat", "google-imagen-3": "media"}


# -- the first errors a user meets -----------------------------------------------------------


def test_an_unknown_model_suggests_the_close_one_without_a_200() -> None:
    result = offline("generate", "a fox", "-m", "google-imagen3")
    assert result.exit_code == EXIT_ERROR
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith("error: rejected by the API: ")
    assert " 200 " not in line
    assert "did you mean 'google-imagen-3'" in line
    assert "'google-imagen3' is not accepted" in line
    assert "…" not in line  # the list of every model is summarised, not cut off


def _slow() -> Emulator:
    return Emulator(
        EmulatorConfig(time_scale=200, durations={"google-imagen-3": DurationDist.fixed(3600.0)})
    )


def test_a_timeout_says_how_to_pick_the_task_up_with_the_cli(tmp_path: Path) -> None:
    with run_in_thread(_slow()) as url:
        result = online(url, "generate", "a fox", "--timeout", "0.2", "-o", str(tmp_path))
    assert result.exit_code == EXIT_ERROR
    created, line = result.stderr.strip().splitlines()  # the id comes first, at its create
    assert line.startswith("error: timed out: task ")
    task_id = line.split()[4]
    assert created == f"created task {task_id}"
    assert f"gptunnel wait {task_id}" in line
    assert "client." not in line


def test_a_timeout_of_another_kind_names_its_kind(tmp_path: Path) -> None:
    emulator = Emulator(
        EmulatorConfig(time_scale=200, durations={"midjourney": DurationDist.fixed(3600.0)})
    )
    with run_in_thread(emulator) as url:

        async def imagine() -> str:
            async with AsyncGPTunnel(KEY, base_url=url) as client:
                return (await client.midjourney.imagine("a fox")).id

        task_id = anyio.run(imagine)
        result = online(url, "wait", task_id, "--kind", "midjourney", "--timeout", "0.2")
    assert result.exit_code == EXIT_ERROR
    assert f"gptunnel wait {task_id} --kind midjourney" in result.stderr


def test_connection_refused_names_the_host_and_port() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = invoke("--base-url", f"http://127.0.0.1:{port}", "--api-key", KEY, "balance")
    assert result.exit_code == EXIT_ERROR
    assert result.stderr.startswith(f"error: cannot reach 127.0.0.1:{port}: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_batch_summary_lists_the_first_failures_then_how_many_more(tmp_path: Path) -> None:
    source = tmp_path / "p.csv"
    rows = ["fine,16:9", "w1,7:7", "w2,7:7", "w3,7:7", "w4,7:7"]
    source.write_text("prompt,ar\n" + "\n".join(rows) + "\n", encoding="utf-8")
    result = offline("batch", str(source), "-o", str(tmp_path / "out"))
    assert result.exit_code == EXIT_ERROR
    lines = result.stderr.splitlines()
    reasons = [line for line in lines if line.startswith("  request ")]
    assert len(reasons) == 3
    assert all("does not accept ar='7:7'" in line for line in reasons)
    assert "  … and 1 more" in lines
    assert "error: 4 of 5 requests failed (see the manifest)" in lines


def test_a_usage_error_still_exits_2() -> None:
    assert invoke("generate").exit_code == EXIT_USAGE


def test_without_rich_a_drawing_command_says_which_extra_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from gptunnel_async.cli import main

    monkeypatch.setitem(sys.modules, "rich.table", None)  # as if rich were not installed
    monkeypatch.setattr(_output, "stdout_is_terminal", lambda: True)
    assert main(["models"]) == EXIT_USAGE
    assert "needs the 'cli' extra (rich is missing)" in capsys.readouterr().err
