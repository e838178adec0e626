"""Hostile answers over a real loopback socket: another task's record, trickled creates.

A server (or a cache that ignores the query string) that answers every poll with task A's
record must not make task B look finished: each result endpoint checks that the answer is for
the task asked about. A create whose answer trickles in byte by byte (so no read timeout ever
fires) is bounded by the client's total create deadline, even though it is shielded from
cancellation, and is then reported as possibly created — never re-sent.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hostile_server import HostileServer, Reply, Request, hostile_server

from gptunnel_async import (
    AdaptivePolicy,
    AsyncGPTunnel,
    ConfigurationError,
    Poller,
    RetryPolicy,
    generate_many,
)
from gptunnel_async._client import create_deadline_for
from gptunnel_async._errors import APIResponseValidationError, APITimeoutError, GPTunnelError
from gptunnel_async._response import decode_json

KEY = "sk-hostile-answers-0001"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
TASK_A = "a" * 24
TASK_B = "b" * 24
FAMILIES = ("media", "midjourney", "faceswap", "bgremover")


def client_for(server: HostileServer, **kwargs: Any) -> AsyncGPTunnel:
    return AsyncGPTunnel(
        KEY,
        base_url=server.url,
        retry_policy=RetryPolicy(max_retries=1, initial_delay=0.001, max_delay=0.002),
        poll_policy=AdaptivePolicy(clock_scale=10_000.0),
        **kwargs,
    )


def always_task_a(server_url: Callable[[], str]) -> Callable[[Request, Reply], Awaitable[None]]:
    """Creates get fresh ids; every poll, whatever it asks for, gets task A, done."""
    ids = (f"{n:024x}" for n in itertools.count(1))

    async def handler(request: Request, reply: Reply) -> None:
        if request.path.startswith("/files/"):
            await reply.send(200, PNG, "image/png")
        elif request.path.endswith(("/create", "/imagine")):
            await reply.json({"code": 0, "id": next(ids), "status": "idle", "url": None})
        else:
            url = f"{server_url()}/files/{TASK_A}.png"
            record = {"code": 0, "id": TASK_A, "status": "done", "url": url, "result": url}
            await reply.json({**record, "percent": 100, "type": "imagine", "actions": []})

    return handler


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.anyio
async def test_a_poll_answered_with_another_tasks_record_is_a_validation_error(
    family: str,
) -> None:
    url = ""
    async with hostile_server(always_task_a(lambda: url)) as server:
        url = server.url
        async with client_for(server) as client:
            resource = getattr(client, family)
            assert (await resource.result(TASK_A)).id == TASK_A  # its own record is fine
            with pytest.raises(APIResponseValidationError, match=f"asked for task {TASK_B}"):
                await resource.result(TASK_B)
            with pytest.raises(APIResponseValidationError, match=f"answer is for task {TASK_A}"):
                await resource.wait(TASK_B, timeout=30)
            async with Poller(client) as poller:
                poller.add(TASK_B, kind=family)
                results = [r async for r in poller]
    (only,) = results
    assert only.ok is False and isinstance(only.error, APIResponseValidationError)


@pytest.mark.anyio
async def test_generate_many_never_saves_another_tasks_file(tmp_path: Path) -> None:
    url = ""
    async with hostile_server(always_task_a(lambda: url)) as server:
        url = server.url
        async with client_for(server) as client:
            requests = [{"model": "google-imagen-3", "prompt": f"p{i}"} for i in range(3)]
            journal = tmp_path / "journal.sqlite"
            async with generate_many(
                client, requests, journal=journal, download_to=tmp_path / "out"
            ) as run:
                results = [r async for r in run]
    assert len(results) == 3
    assert all(not r.ok for r in results)
    assert all(isinstance(r.error, APIResponseValidationError) for r in results)
    assert server.count("GET", f"/files/{TASK_A}.png") == 0
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.anyio
async def test_an_answer_without_an_id_is_not_taken_for_the_task() -> None:
    async def handler(request: Request, reply: Reply) -> None:
        await reply.json({"code": 0, "status": "done", "url": "https://files.example/x.png"})

    async with hostile_server(handler) as server, client_for(server) as client:
        with pytest.raises(APIResponseValidationError):
            await client.media.result(TASK_B)


# -- the create deadline ----------------------------------------------------------------------


def trickled_create(every: float = 0.05) -> Callable[[Request, Reply], Awaitable[None]]:
    """A create answer that arrives one byte every ``every`` seconds, for minutes."""
    body = b'{"code": 0, "id": "' + b"c" * 24 + b'", "status": "idle"}' + b" " * 10_000

    async def handler(request: Request, reply: Reply) -> None:
        await reply.trickle(body, every)

    return handler


@pytest.mark.anyio
async def test_a_trickled_create_answer_ends_at_the_create_deadline() -> None:
    async with (
        hostile_server(trickled_create()) as server,
        client_for(server, timeout=5.0, create_deadline=0.5) as client,
    ):
        with anyio.fail_after(60), pytest.raises(APITimeoutError) as info:
            await client.media.create(model="google-imagen-3", prompt="slow")
    assert info.value.may_have_been_created
    assert "deadline" in str(info.value)
    assert server.count("POST", "/v1/media/create") == 1  # reported, never re-sent


@pytest.mark.anyio
async def test_a_trickled_create_does_not_hold_off_the_callers_cancellation_past_its_deadline() -> (
    None
):
    """Shielded, the create outlives ``move_on_after``; but only up to its deadline, and then
    it says so (``may_have_been_created``) instead of vanishing."""
    async with (
        hostile_server(trickled_create()) as server,
        client_for(server, timeout=0.3) as client,  # the deadline comes from the timeouts
    ):
        with anyio.fail_after(60), pytest.raises(GPTunnelError) as info:
            with anyio.move_on_after(0.1):
                await client.media.create(model="google-imagen-3", prompt="slow")
    assert getattr(info.value, "may_have_been_created", False)
    assert server.count("POST", "/v1/media/create") == 1


@pytest.mark.anyio
async def test_creates_in_flight_can_be_cut_short_on_demand() -> None:
    """What Ctrl-C uses: give every create in flight a short grace, then report them."""
    errors: list[BaseException] = []
    async with (
        hostile_server(trickled_create()) as server,
        client_for(server, timeout=5.0, create_deadline=600.0) as client,
    ):

        async def one(i: int) -> None:
            try:
                await client.media.create(model="google-imagen-3", prompt=f"slow {i}")
            except GPTunnelError as exc:
                errors.append(exc)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(one, i)
                await server.wait_for_requests(3)
                client.cut_creates_in_flight(0.1)
    assert len(errors) == 3
    assert all(getattr(e, "may_have_been_created", False) for e in errors)


def test_the_create_deadline_defaults_to_connect_plus_write_plus_read() -> None:
    assert create_deadline_for(httpx.Timeout(2.0), None) == 6.0
    assert create_deadline_for(httpx.Timeout(60.0, connect=10.0), None) == 130.0
    assert create_deadline_for(httpx.Timeout(2.0), 30.0) == 30.0
    assert create_deadline_for(httpx.Timeout(None), None) == math.inf


@pytest.mark.parametrize("bad", [0, -1.0, math.nan])
def test_a_create_deadline_must_be_positive(bad: float) -> None:
    with pytest.raises(ConfigurationError, match="create_deadline"):
        AsyncGPTunnel(KEY, base_url="http://127.0.0.1:9", create_deadline=bad)


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("empty", ["", "   "])
def test_an_empty_base_url_is_refused_not_replaced_by_the_real_service(
    empty: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GPTUNNEL_BASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="base_url"):
        AsyncGPTunnel(KEY, base_url=empty)
    monkeypatch.setenv("GPTUNNEL_BASE_URL", empty)
    with pytest.raises(ConfigurationError, match="GPTUNNEL_BASE_URL"):
        AsyncGPTunnel(KEY)


# -- text that cannot be written down ---------------------------------------------------------


def test_lone_surrogates_in_an_answer_become_replacement_characters() -> None:
    raw = b'{"a": "x\\ud800y", "\\udc00k": ["\\udfff", {"pair": "\\ud83d\\ude00"}], "n": 1}'
    expected = {"a": "x\ufffdy", "\ufffdk": ["\ufffd", {"pair": "\U0001f600"}], "n": 1}
    assert decode_json(raw) == expected  # a whole pair is one character, and stays
    assert decode_json(b'"\\ud800"') == "\ufffd"


@pytest.mark.anyio
async def test_a_failure_reason_with_a_lone_surrogate_is_journaled_not_a_crash(
    tmp_path: Path,
) -> None:
    """``"error": "bad \\ud800"`` used to crash the batch when the journal wrote it down."""

    async def handler(request: Request, reply: Reply) -> None:
        if request.path.endswith("/create"):
            await reply.json({"code": 0, "id": TASK_A, "status": "idle"})
        else:
            body = b'{"code": 0, "id": "' + TASK_A.encode() + b'", "status": "failed", '
            await reply.send(200, body + b'"error": "bad \\ud800 key"}')

    async with hostile_server(handler) as server, client_for(server) as client:
        requests = [{"model": "google-imagen-3", "prompt": "a fox"}]
        async with generate_many(client, requests, journal=tmp_path / "j.sqlite") as run:
            (result,) = [r async for r in run]
    assert not result.ok and "bad \ufffd key" in str(result.error)
    str(result.error).encode("utf-8")
