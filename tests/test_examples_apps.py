"""The examples in examples/ really work, offline, against the emulator.

* ``fastapi_app.py``: driven through httpx's ASGI transport with its lifespan run, pointed at an
  emulator on loopback; the event stream ends with the url; bad input costs nothing; a client
  that disconnects stops the polling.
* ``aiogram_bot.py``: updates are fed through ``Dispatcher.feed_update`` with a ``Bot`` whose
  session records API calls instead of sending them (nothing ever reaches Telegram); a second
  chat is answered while the first chat's generation is still running.
* ``batch_poller.py`` and ``midjourney_chain.py``: run as scripts, ``--offline``.

FastAPI and aiogram are asyncio-only, so this module runs on asyncio only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime, timezone
from itertools import count
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest

from gptunnel_async.testing import DurationDist, Emulator, EmulatorConfig, serve

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCALE = 200.0  # the emulator runs this much faster than real time in these tests

pytest.importorskip("fastapi")
pytest.importorskip("aiogram")


@pytest.fixture
def anyio_backend() -> str:
    """FastAPI and aiogram run on asyncio only."""
    return "asyncio"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fastapi_app = load_example("fastapi_app")
aiogram_bot = load_example("aiogram_bot")


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


# -- FastAPI ----------------------------------------------------------------------------------


@pytest.fixture
async def emulator() -> AsyncIterator[tuple[Emulator, str]]:
    emu = Emulator(EmulatorConfig(time_scale=SCALE, seed=1))
    async with serve(emu) as server:
        yield emu, server.url


@pytest.fixture
async def app_client(emulator: tuple[Emulator, str]) -> AsyncIterator[httpx.AsyncClient]:
    _, url = emulator
    settings = fastapi_app.Settings(api_key="test-key", base_url=url, time_scale=SCALE)
    app = fastapi_app.create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://app", timeout=30
        ) as http,
    ):
        yield http


@pytest.mark.anyio
async def test_fastapi_post_then_stream_to_the_url(
    app_client: httpx.AsyncClient, emulator: tuple[Emulator, str]
) -> None:
    emu, _ = emulator
    created = await app_client.post("/generations", json={"prompt": "a fox", "ar": "16:9"})
    assert created.status_code == 202, created.text
    body = created.json()
    assert body["events"] == f"/generations/{body['id']}/events"
    assert emu.counters.creates_by_prompt["a fox"] == 1

    stream = await app_client.get(body["events"])
    assert stream.status_code == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(stream.text)
    assert events[0][0] == "status"
    assert all(name == "status" for name, _ in events[:-1])
    name, final = events[-1]
    assert name == "done"
    assert final["id"] == body["id"]
    assert final["status"] == "done"
    assert final["url"].startswith("http://127.0.0.1:")
    assert emu.counters.creates_total == 1  # streaming never creates anything


@pytest.mark.anyio
async def test_fastapi_bad_input_is_422_and_nothing_is_sent(
    app_client: httpx.AsyncClient, emulator: tuple[Emulator, str]
) -> None:
    emu, _ = emulator
    bad_ar = await app_client.post("/generations", json={"prompt": "a fox", "ar": "5:5"})
    assert bad_ar.status_code == 422
    assert "ar" in bad_ar.json()["detail"]
    empty = await app_client.post("/generations", json={"prompt": ""})
    assert empty.status_code == 422  # refused by the request model
    unknown = await app_client.post("/generations", json={"prompt": "a fox", "model": "gpt-9"})
    assert unknown.status_code == 422
    assert "unknown model" in unknown.json()["detail"]
    assert emu.counters.creates_total == 0
    assert emu.counters.api_requests_total == 0


@pytest.mark.anyio
async def test_fastapi_maps_errors_and_reports_failed_tasks(
    app_client: httpx.AsyncClient, emulator: tuple[Emulator, str]
) -> None:
    emu, _ = emulator
    emu.org_balance = 0
    broke = await app_client.post("/generations", json={"prompt": "a fox"})
    assert broke.status_code == 402

    emu.org_balance = 1000
    emu.faults.script("POST /v1/media/create", [500])
    upstream = await app_client.post("/generations", json={"prompt": "a fox"})
    assert upstream.status_code == 502
    assert upstream.json()["detail"]["may_have_been_created"] is True

    emu.faults.task_failure_rate = 1.0
    created = await app_client.post("/generations", json={"prompt": "a doomed fox"})
    assert created.status_code == 202
    events = parse_sse((await app_client.get(created.json()["events"])).text)
    name, final = events[-1]
    assert name == "failed"
    assert final["error"]

    unknown = await app_client.get("/generations/0123456789abcdef01234567/events")
    assert unknown.status_code == 404


@pytest.mark.anyio
async def test_fastapi_client_disconnect_stops_the_wait() -> None:
    """A browser that goes away mid-stream: the response returns at once, polling stops."""
    emu = Emulator(
        EmulatorConfig(time_scale=SCALE, durations={"google-imagen-3": DurationDist.fixed(3000)})
    )  # 15 s of real time: far longer than this test
    async with serve(emu) as server:
        settings = fastapi_app.Settings(api_key="k", base_url=server.url, time_scale=SCALE)
        app = fastapi_app.create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
                task_id = (await http.post("/generations", json={"prompt": "slow"})).json()["id"]

            sent: list[dict[str, Any]] = []
            first_event = anyio.Event()
            requests = iter([{"type": "http.request", "body": b"", "more_body": False}])

            async def receive() -> dict[str, Any]:
                for message in requests:
                    return message
                await first_event.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)
                if message.get("body"):
                    first_event.set()

            scope = {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.3"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": f"/generations/{task_id}/events",
                "raw_path": f"/generations/{task_id}/events".encode(),
                "root_path": "",
                "query_string": b"",
                "headers": [(b"host", b"app")],
                "client": ("127.0.0.1", 50000),
                "server": ("app", 80),
            }
            with anyio.fail_after(2):  # without the disconnect this would run for 15 s
                await app(scope, receive, send)
            assert sent[0]["status"] == 200
            assert all(m.get("more_body", True) for m in sent[1:])  # no end: nobody listens
            polls = emu.counters.requests_by_task[task_id]
            await anyio.sleep(0.5)
            assert emu.counters.requests_by_task[task_id] == polls  # no poll after the exit


def test_fastapi_demo_runs_offline() -> None:
    done = run_example("fastapi_app.py", "--offline", "--demo", "a cat")
    assert "POST /generations -> 202" in done.stdout
    assert "event: done" in done.stdout


# -- aiogram ----------------------------------------------------------------------------------


def make_session() -> Any:
    """A ``BaseSession`` that records Bot API calls and answers them itself (no network)."""
    from aiogram.client.session.base import BaseSession
    from aiogram.methods import SendMessage, SendPhoto

    class Recording(BaseSession):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[Any] = []
            self._ids = count(1000)

        async def close(self) -> None:
            pass

        async def make_request(self, bot: Any, method: Any, timeout: int | None = None) -> Any:
            self.calls.append(method)
            result: Any = True
            if isinstance(method, (SendMessage, SendPhoto)):
                result = {
                    "message_id": next(self._ids),
                    "date": int(datetime.now(timezone.utc).timestamp()),
                    "chat": {"id": method.chat_id, "type": "private"},
                    "text": getattr(method, "text", None),
                }
            content = json.dumps({"ok": True, "result": result})
            return self.check_response(bot, method, 200, content).result

        async def stream_content(
            self,
            url: str,
            headers: dict[str, Any] | None = None,
            timeout: int = 30,
            chunk_size: int = 65536,
            raise_for_status: bool = True,
        ) -> AsyncGenerator[bytes, None]:
            raise AssertionError("no downloads from Telegram in tests")
            yield b""  # pragma: no cover

    return Recording()


def command_update(update_id: int, chat_id: int, text: str) -> Any:
    from aiogram.types import Chat, Message, Update, User

    return Update(
        update_id=update_id,
        message=Message(
            message_id=update_id,
            date=datetime.now(timezone.utc),
            chat=Chat(id=chat_id, type="private"),
            from_user=User(id=chat_id, is_bot=False, first_name=f"user{chat_id}"),
            text=text,
        ),
    )


def calls_for(session: Any, chat_id: int) -> list[Any]:
    return [c for c in session.calls if getattr(c, "chat_id", None) == chat_id]


@pytest.mark.anyio
async def test_aiogram_bot_serves_a_second_chat_while_the_first_waits() -> None:
    from aiogram import Bot
    from aiogram.methods import SendMessage, SendPhoto
    from aiogram.types import BufferedInputFile

    from gptunnel_async import AdaptivePolicy, AsyncGPTunnel

    emu = Emulator(EmulatorConfig(time_scale=SCALE, seed=2))
    # Chat 1's create is answered only after 1 s (the task itself runs as usual).
    emu.faults.script("POST /v1/media/create", [("delay", 1.0)])
    session = make_session()
    bot = Bot("123456:TEST-not-a-real-token", session=session)
    async with (
        serve(emu) as server,
        AsyncGPTunnel(
            "k", base_url=server.url, poll_policy=AdaptivePolicy(clock_scale=SCALE)
        ) as client,
    ):
        dispatcher = aiogram_bot.build_dispatcher(client)
        finished: list[int] = []

        async def feed(update_id: int, chat_id: int, text: str) -> None:
            await dispatcher.feed_update(bot, command_update(update_id, chat_id, text))
            finished.append(chat_id)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                # As polling does (handle_as_tasks): each update in its own task.
                tg.start_soon(feed, 1, 1, "/imagine 16:9 a slow fox")
                while emu.counters.creates_total < 1:  # noqa: ASYNC110 (chat 1's create landed)
                    await anyio.sleep(0.01)
                await feed(2, 2, "/imagine a quick cat")
                # Chat 2 got its picture while chat 1 is still waiting for its generation.
                assert finished == [2]
                assert not any(isinstance(c, SendPhoto) for c in calls_for(session, 1))
                photos = [c for c in calls_for(session, 2) if isinstance(c, SendPhoto)]
                assert len(photos) == 1
        assert finished == [2, 1]

    for chat_id, prompt in ((1, "a slow fox"), (2, "a quick cat")):
        calls = calls_for(session, chat_id)
        assert isinstance(calls[0], SendMessage)
        assert calls[0].text == "working…"
        photo = calls[-1]
        assert isinstance(photo, SendPhoto)
        assert photo.caption == prompt
        assert isinstance(photo.photo, BufferedInputFile)
        assert (photo.photo.filename or "").endswith(".webp")
        data = photo.photo.data
        assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert emu.counters.creates_total == 2


@pytest.mark.anyio
async def test_aiogram_bot_usage_and_rejected_prompt() -> None:
    from aiogram import Bot

    from gptunnel_async import AsyncGPTunnel

    emu = Emulator(EmulatorConfig(time_scale=SCALE))
    session = make_session()
    bot = Bot("123456:TEST-not-a-real-token", session=session)
    async with serve(emu) as server, AsyncGPTunnel("k", base_url=server.url) as client:
        dispatcher = aiogram_bot.build_dispatcher(client)
        await dispatcher.feed_update(bot, command_update(1, 7, "/imagine"))
        await dispatcher.feed_update(bot, command_update(2, 7, "/imagine 5:5 a square fox"))
    texts = [c.text for c in calls_for(session, 7)]
    assert texts[0].startswith("Usage: /imagine")
    assert texts[1] == "working…"
    assert texts[-1].startswith("I can't draw that")
    assert "5:5" in texts[-1]
    assert emu.counters.creates_total == 0


def test_redact_filter_keeps_the_token_out_of_logs() -> None:
    import logging

    token = "123456:SECRET-token"
    record = logging.LogRecord(
        "aiogram", logging.ERROR, __file__, 1, "GET https://api/bot%s/getMe failed", (token,), None
    )
    assert aiogram_bot.RedactSecret(token).filter(record)
    assert token not in record.getMessage()
    assert "<bot token>" in record.getMessage()


# -- scripts ----------------------------------------------------------------------------------


def run_example(
    script: str, *args: str, cwd: Path | None = None, returncode: int = 0
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPTUNNEL_")}
    env["GPTUNNEL_EXAMPLE_TIME_SCALE"] = str(SCALE)
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=cwd,
    )
    assert done.returncode == returncode, done.stdout + done.stderr
    return done


def test_batch_poller_saves_every_file(tmp_path: Path) -> None:
    out = tmp_path / "images"  # does not exist yet
    prompts = ["a cat", "один кот", "a dog", "a bird"]
    args = [arg for p in prompts for arg in ("-p", p)]
    done = run_example("batch_poller.py", "--offline", "--out", str(out), *args, cwd=tmp_path)
    files = sorted(out.iterdir())
    assert len(files) == 4
    for f in files:
        data = f.read_bytes()
        assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
        assert f.stem in done.stdout  # named after its task id, and reported
    assert "summary: 4 prompts, 4 saved, 0 failed, 0 not created" in done.stdout


def test_batch_poller_reports_rejected_prompts(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    args = ["--offline", "--ar", "5:5", "-p", "a cat", "--out", out]
    done = run_example("batch_poller.py", *args, returncode=1)
    assert "rejected" in done.stdout
    assert "1 not created" in done.stdout


def test_midjourney_chain_prints_each_url(tmp_path: Path) -> None:
    done = run_example("midjourney_chain.py", "--offline", "a lighthouse", cwd=tmp_path)
    lines = done.stdout.splitlines()
    urls = {
        step: line.split()[1]
        for line in lines
        for step in ("grid:", "upsample:", "variation:")
        if line.startswith(step)
    }
    assert set(urls) == {"grid:", "upsample:", "variation:"}
    assert all(url.startswith("http://127.0.0.1:") for url in urls.values())
    assert len(set(urls.values())) == 3
    assert any(line.strip().endswith("%") for line in lines)  # progress was printed
