"""A server that echoes the API key back, in every place server text can reach.

A canary key is planted by the server (a hostile one of our own, on loopback) inside random
text: a failed task's ``error``, error bodies of every status, a 502 page whose key straddles
the point where messages are cut, a link the SDK refuses, a task id, a header. Whatever path
the text takes, the canary must not appear in any exception (text, args, attributes, chain),
log record, journal or manifest byte, or CLI output. And redaction must not mangle ordinary
text when a key is short.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner
from hostile_server import Request as HostileRequest
from hostile_server import hostile_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted_answers import Answer, scripted
from test_secrets_scan import texts_of_error, texts_of_record

from gptunnel_async import AdaptivePolicy, AsyncGPTunnel, GPTunnelError, RetryPolicy, generate_many
from gptunnel_async._logs import REDACTED, clip, redact, register_secret, scrub, unregister_secret
from gptunnel_async._validation import check_task_id
from gptunnel_async.catalog import MODELS
from gptunnel_async.cli._app import cli
from gptunnel_async.testing import DurationDist, Emulator, EmulatorConfig, run_in_thread, serve
from gptunnel_async.testing._http import Request, Response

CANARY = "sk-canary-5bd1e7c2a9f04d"
TASK_ID = "0123456789abcdef01234567"
SCALE = 400.0


# -- the redaction rule -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "text", "expected"),
    [
        ("k", "Name or service not known", "Name or service not known"),
        ("k", "bad key k", f"bad key {REDACTED}"),
        ("k", "key=k; kk", f"key={REDACTED}; kk"),
        ("any", "many things, any key", f"many things, {REDACTED} key"),
        (CANARY, f"glued{CANARY}glued", f"glued{REDACTED}glued"),
        (CANARY, f"'{CANARY}!'", f"'{REDACTED}!'"),
        (CANARY, "no key here", "no key here"),
    ],
)
def test_secrets_are_matched_whole(secret: str, text: str, expected: str) -> None:
    assert redact(text, secret) == expected


def test_cli_debug_lines_with_a_short_key_keep_ordinary_words(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gptunnel_async.cli._logging import disable_debug, enable_debug

    handler = enable_debug("k")
    try:
        logging.getLogger("gptunnel_async").debug("Name or service not known; bad key %s", "k")
    finally:
        disable_debug(handler)
    line = capsys.readouterr().err
    assert f"Name or service not known; bad key {REDACTED}" in line


def test_a_cut_never_keeps_half_a_key() -> None:
    text = "x" * 490 + CANARY
    assert CANARY[:8] not in clip(text, 500, CANARY)
    assert clip(text, 500, CANARY).endswith(REDACTED)
    register_secret(CANARY)
    try:
        with pytest.raises(ValueError, match="invalid task id") as info:
            check_task_id("a" * 40 + CANARY + "!")
    finally:
        unregister_secret(CANARY)
    assert CANARY[:6] not in str(info.value)


def test_scrub_reaches_any_depth_and_dict_keys() -> None:
    doc: Any = CANARY
    for _ in range(300):  # deeper than any fixed limit a recursive walk would set
        doc = [{"k": doc, CANARY: 1}]
    cleaned = scrub(doc, CANARY)
    assert CANARY not in json.dumps(cleaned)
    assert REDACTED in json.dumps(cleaned)


# -- a property test over every error path -----------------------------------------------------

STATUSES = [200, 400, 401, 402, 403, 404, 409, 410, 418, 422, 429, 500, 502, 503, 504]
PATHS = ["task-error", "error-body", "raw-body", "escaped-json", "link", "id", "header"]

around = st.text(max_size=30)
carrying = st.builds(lambda a, b: a + CANARY + b, around, around) | st.integers(0, 620).map(
    lambda n: "x" * n + CANARY  # crosses the 500-character cut at every offset
)
ascii_carrying = st.builds(
    lambda a, b: a + CANARY + b,
    st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=20),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=20),
)


def escaped(text: str) -> str:
    """``text`` as a JSON string literal with every character \\u-escaped."""
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else c for c in text) + '"'


def hostile_reply(path: str, status: int, text: str, request: HostileRequest) -> Answer:
    json_type = [("content-type", "application/json")]
    if path == "task-error":
        doc = {"code": 0, "id": TASK_ID, "status": "failed", "error": text, "message": text}
        return Answer(headers=json_type, body=json.dumps(doc).encode())
    if path == "error-body":
        doc = {"error": {"message": text, "type": text}, "code": 3, "issues": [{"path": [text]}]}
        return Answer(status, json_type, json.dumps(doc).encode())
    if path == "raw-body":
        return Answer(status, [("content-type", "text/html")], text.encode("utf-8", "replace"))
    if path == "escaped-json":
        body = '{"error": {"message": ' + escaped(text) + "}}"
        return Answer(status if status != 200 else 400, json_type, body.encode())
    if path == "link":
        url = f"ftp://files.example/{text}" if status % 2 else f"https://10.0.0.1/{text}"
        doc = {"code": 0, "id": TASK_ID, "status": "done", "url": url}
        return Answer(headers=json_type, body=json.dumps(doc).encode())
    if path == "id":
        doc = {"code": 0, "id": text + "!", "status": "idle"}
        return Answer(headers=json_type, body=json.dumps(doc).encode())
    assert path == "header"
    return Answer(headers=[*json_type, ("content-encoding", text)], body=b"{}")


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(name)s %(message)s %(args)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.format(record)


@contextmanager
def recording() -> Iterator[Recorder]:
    recorder = Recorder()
    root = logging.getLogger()
    old = root.level
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    try:
        yield recorder
    finally:
        root.removeHandler(recorder)
        root.setLevel(old)


def assert_clean(where: str, texts: Iterator[str] | list[str]) -> None:
    for text in texts:
        assert CANARY not in text, f"the canary leaked in {where}: {text[:300]!r}"


async def run_path(path: str, status: int, text: str) -> list[BaseException]:
    """Every public call that reads the hostile answer; returns the errors they raised."""
    errors: list[BaseException] = []
    results: list[Any] = []

    def handler(request: HostileRequest) -> Answer:
        return hostile_reply(path, status, text, request)

    async with (
        hostile_server(scripted(handler)) as server,
        AsyncGPTunnel(
            CANARY,
            base_url=server.url,
            retry_policy=RetryPolicy(max_retries=0),
            poll_policy=AdaptivePolicy(clock_scale=10_000.0),
            timeout=2.0,
        ) as client,
    ):
        calls = [
            lambda: client.media.result(TASK_ID),
            lambda: client.media.wait(TASK_ID, timeout=0.2),
            lambda: client.media.generate(model="google-imagen-3", prompt="p", timeout=0.2),
            lambda: client.balance(),
        ]
        for call in calls:
            try:
                result = await call()
            except GPTunnelError as exc:
                errors.append(exc)
                continue
            results.append(result)
            if getattr(result, "is_done", False):
                try:
                    await client.download_bytes(result)
                except GPTunnelError as exc:
                    errors.append(exc)
    for result in results:
        assert_clean("a returned value", [repr(result), str(result)])
    return errors


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(PATHS), status=st.sampled_from(STATUSES), text=carrying,
       header_text=ascii_carrying)  # fmt: skip
def test_the_canary_never_escapes_any_error_path(
    anyio_backend: str, path: str, status: int, text: str, header_text: str
) -> None:
    with recording() as recorder:
        errors = anyio.run(
            run_path, path, status, header_text if path == "header" else text, backend=anyio_backend
        )
    assert errors, "the hostile answers raised nothing: the test would prove nothing"
    for error in errors:
        assert_clean(type(error).__name__, texts_of_error(error, suppressed=True))
    for record in recorder.records:
        assert_clean(f"log record {record.name}", texts_of_record(record))


# -- journal, manifest and CLI output ----------------------------------------------------------


def hostile_emulator() -> Emulator:
    """The emulator, turned hostile per prompt: ``fail`` tasks fail with the key as their
    error, ``link`` tasks finish with a link holding the key, ``lost`` creates are answered 502
    with 490 bytes of filler then the key (after the task was created)."""
    emu = Emulator(EmulatorConfig(time_scale=SCALE, seed=5))
    for model in MODELS:
        emu.config.durations[model] = DurationDist.fixed(20.0)
    prompts: dict[str, str] = {}
    original = emu.handle

    async def handle(request: Request) -> Any:
        key = request.headers.get("authorization", "")
        answer = await original(request)
        if not isinstance(answer, Response) or answer.status != 200:
            return answer
        if request.path == "/v1/media/create":
            prompt = json.loads(request.body)["prompt"]
            prompts[json.loads(answer.body)["id"]] = prompt
            if prompt.startswith("lost"):
                return Response(502, b"x" * 490 + key.encode(), [("content-type", "text/html")])
        elif request.path == "/v1/media/result":
            doc = json.loads(answer.body)
            prompt = prompts.get(doc.get("id"), "")
            if prompt.startswith("fail"):
                doc.update(status="failed", error=f"bad key {key}", url=None)
            elif prompt.startswith("link") and doc.get("status") == "done":
                doc["url"] = f"ftp://files.example/{key}"
            answer.body = json.dumps(doc).encode()
        return answer

    emu.handle = handle  # type: ignore[method-assign]
    return emu


PROMPTS = ["ok 1", "fail 1", "link 1", "lost 1", "ok 2", "fail 2", "link 2", "lost 2"]


def assert_no_canary_in_files(folder: Path) -> int:
    scanned = 0
    for path in folder.rglob("*"):
        if path.is_file():
            scanned += 1
            assert CANARY.encode() not in path.read_bytes(), f"the canary was written to {path}"
    return scanned


@pytest.mark.anyio
async def test_a_journaled_batch_keeps_the_canary_out_of_journal_and_errors(
    tmp_path: Path,
) -> None:
    emu = hostile_emulator()
    errors: list[BaseException] = []
    outcomes: dict[str, bool] = {}
    with recording() as recorder:
        async with (
            serve(emu) as server,
            AsyncGPTunnel(
                CANARY,
                base_url=server.url,
                poll_policy=AdaptivePolicy(clock_scale=SCALE),
                retry_policy=RetryPolicy(max_retries=1, initial_delay=0.001, max_delay=0.002),
            ) as client,
        ):
            requests = [{"model": "google-imagen-3", "prompt": p} for p in PROMPTS]
            async with generate_many(
                client,
                requests,
                journal=tmp_path / "journal.sqlite",
                download_to=tmp_path / "files",
            ) as results:
                async for result in results:
                    outcomes[PROMPTS[result.index or 0]] = result.ok
                    assert_clean("a batch result", [repr(result)])
                    if result.error is not None:
                        errors.append(result.error)
    assert outcomes == {p: p.startswith("ok") for p in PROMPTS}
    for error in errors:
        assert_clean(type(error).__name__, texts_of_error(error, suppressed=True))
    for record in recorder.records:
        assert_clean(f"log record {record.name}", texts_of_record(record))
    assert assert_no_canary_in_files(tmp_path) >= 3  # the journal (and its WAL) and two files


def test_the_cli_batch_keeps_the_canary_out_of_manifest_journal_and_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GPTUNNEL_API_KEY", raising=False)
    monkeypatch.delenv("GPTUNNEL_BASE_URL", raising=False)
    source = tmp_path / "prompts.txt"
    source.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    with run_in_thread(hostile_emulator()) as url:
        result = CliRunner().invoke(
            cli,
            ["--base-url", url, "--api-key", CANARY, "--clock-scale", str(SCALE), "-v",
             "batch", str(source), "-o", str(out)],
            catch_exceptions=False,
        )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert_clean("CLI output", [result.output, result.stderr])
    manifest = (out / "manifest.jsonl").read_text("utf-8")
    assert REDACTED in manifest  # the failures were written, with the key taken out
    assert assert_no_canary_in_files(out) >= 3
