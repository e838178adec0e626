"""Ctrl-C ends ``gptunnel batch`` within seconds, even while creates trickle in for minutes.

A create that has left is shielded (its task id must reach the journal), so a server that
answers a create one byte at a time used to hold the command for as long as it liked. Now the
first Ctrl-C gives the creates in flight a short grace and then reports them; the journal holds
them as sent, so a rerun reports each one and sends none of them again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_server import HostileServer, Reply, Request, hostile_server_in_thread

from gptunnel_async.cli import EXIT_ERROR, EXIT_INTERRUPTED

KEY = "test-interrupt-key-0001"
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


async def trickle_every_create(request: Request, reply: Reply) -> None:
    body = b'{"code": 0, "id": "' + b"c" * 24 + b'", "status": "idle"}' + b" " * 10_000
    await reply.trickle(body, 0.05)  # ~8 minutes for the whole answer


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPTUNNEL_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _batch(server: HostileServer, source: Path, out: Path, backend: str) -> list[str]:
    return [
        sys.executable, "-m", "gptunnel_async.cli", "--base-url", server.url, "--api-key", KEY,
        "--backend", backend, "batch", str(source), "-o", str(out), "--no-progress",
    ]  # fmt: skip


def _wait_for_creates(server: HostileServer, proc: subprocess.Popen[str], count: int) -> None:
    for _ in range(3000):  # up to ~30 s for the process to start and send its creates
        if server.count("POST", "/v1/media/create") >= count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the batch ended early: {proc.communicate()}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.01)
    raise AssertionError("the creates never arrived")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_ends_a_batch_whose_creates_trickle_and_a_rerun_resends_none(
    tmp_path: Path, backend: str
) -> None:
    prompts = ["a fox", "an owl", "a heron"]
    source = tmp_path / "p.txt"
    source.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    with hostile_server_in_thread(trickle_every_create) as server:
        command = _batch(server, source, out, backend)
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
        ) as proc:
            try:
                _wait_for_creates(server, proc, len(prompts))
                proc.send_signal(signal.SIGINT)
                # Without the grace the shielded creates held on for minutes; with it the
                # command ends within seconds. The bound here is generous on purpose.
                _, err = proc.communicate(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
        assert proc.returncode == EXIT_INTERRUPTED, err
        assert "Traceback" not in err
        assert server.count("POST", "/v1/media/create") == len(prompts)

        rerun = subprocess.run(
            command, capture_output=True, text=True, timeout=60, env=_env(), check=False
        )
        assert server.count("POST", "/v1/media/create") == len(prompts)  # nothing re-sent
    assert rerun.returncode == EXIT_ERROR, rerun.stderr
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text("utf-8").splitlines()]
    assert sorted(str(line["prompt"]) for line in lines) == sorted(prompts)
    assert {line["error_type"] for line in lines} == {"CreateOutcomeUnknownError"}
