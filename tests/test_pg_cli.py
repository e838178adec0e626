"""``gptunnel batch --limits postgresql://...``: the batch's budget shared through PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gptunnel_async._polling.shared import key_fingerprint
from gptunnel_async.cli._app import cli
from gptunnel_async.testing import Emulator, EmulatorConfig, run_in_thread

pytest_plugins = ["pg_support"]  # the pg_dsn fixture

KEY = "test-secret-key-0123456789"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def emulator() -> Iterator[tuple[Emulator, str]]:
    emu = Emulator(EmulatorConfig(api_keys={KEY}, time_scale=200))
    with run_in_thread(emu) as url:
        yield emu, url


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GPTUNNEL_API_KEY", "GPTUNNEL_BASE_URL", "GPTUNNEL_LIMITS"):
        monkeypatch.delenv(name, raising=False)


def _prompts(tmp_path: Path, n: int) -> Path:
    source = tmp_path / "p.txt"
    source.write_text("".join(f"prompt {i}\n" for i in range(n)), encoding="utf-8")
    return source


def test_batch_with_shared_limits_runs_and_stores_only_a_fingerprint(
    tmp_path: Path, emulator: tuple[Emulator, str], pg_dsn: str
) -> None:
    import psycopg

    emu, url = emulator
    out = tmp_path / "out"
    result = invoke(
        "--api-key", KEY, "--base-url", url, "--clock-scale", "200",
        "batch", str(_prompts(tmp_path, 4)), "-o", str(out), "--no-progress",
        "--concurrency", "2", "--rps", "50", "--limits", pg_dsn,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert emu.counters.creates_total == 4
    assert emu.counters.max_in_flight <= 2
    with psycopg.connect(pg_dsn) as conn:
        keys = [row[0] for row in conn.execute("SELECT key FROM gptunnel.limits")]
    assert key_fingerprint(KEY, url) in keys
    assert KEY not in str(keys)


def test_batch_with_unreachable_limits_sends_nothing(
    tmp_path: Path, emulator: tuple[Emulator, str]
) -> None:
    emu, url = emulator
    result = invoke(
        "--api-key", KEY, "--base-url", url,
        "batch", str(_prompts(tmp_path, 2)), "-o", str(tmp_path / "out"), "--no-progress",
        "--limits", "postgresql://postgres:hunter2-secret@127.0.0.1:1/limits",
    )  # fmt: skip
    assert result.exit_code == 1
    error_lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert any("127.0.0.1:1/limits is unavailable" in line for line in error_lines)
    assert "hunter2-secret" not in result.output
    assert emu.counters.api_requests_total == 0


def test_offline_batch_refuses_shared_limits(tmp_path: Path) -> None:
    result = invoke(
        "--offline", "batch", str(_prompts(tmp_path, 1)), "-o", str(tmp_path / "out"),
        "--limits", "postgresql://127.0.0.1/x",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--offline" in result.stderr


def test_two_batch_commands_share_one_postgresql_journal(
    tmp_path: Path, emulator: tuple[Emulator, str], pg_dsn: str
) -> None:
    """Two `gptunnel batch` on one input and one --journal postgresql://...: the batch is named
    by its input, each prompt is created once, and each comes out of one of the two runs."""
    import json
    import threading

    emu, url = emulator
    source = _prompts(tmp_path, 16)
    results: dict[str, Result] = {}

    def run(name: str) -> None:
        results[name] = invoke(
            "--api-key", KEY, "--base-url", url, "--clock-scale", "200",
            "batch", str(source), "-o", str(tmp_path / name), "--no-progress",
            "--concurrency", "4", "--journal", pg_dsn,
        )  # fmt: skip

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(r.exit_code == 0 for r in results.values()), [r.output for r in results.values()]
    indexes = []
    for name in ("a", "b"):
        lines = (tmp_path / name / "manifest.jsonl").read_text("utf-8").splitlines()
        indexes += [json.loads(line)["index"] for line in lines]
    assert sorted(indexes) == list(range(16))
    assert emu.counters.creates_total == 16
