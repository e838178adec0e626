"""``gptunnel manifest``: a batch's whole manifest from its journal (PostgreSQL or SQLite), read
by any machine, with which worker saved each file and why the others failed."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from gptunnel_async._errors import CoordinatorUnavailableError, JournalError
from gptunnel_async.cli._app import cli
from gptunnel_async.cli._manifest import entry_line
from gptunnel_async.stores import JournalEntry, open_reader
from gptunnel_async.testing import Emulator, EmulatorConfig, run_in_thread

pytest_plugins = ["pg_support"]  # the pg_dsn fixture

KEY = "test-secret-key-0123456789"
PASSWORD = "hunter2-secret"
MODEL = "google-imagen-3"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GPTUNNEL_API_KEY", "GPTUNNEL_BASE_URL", "GPTUNNEL_LIMITS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def emulator() -> Iterator[tuple[Emulator, str]]:
    emu = Emulator(EmulatorConfig(api_keys={KEY}, time_scale=200, seed=3))
    with run_in_thread(emu) as url:
        yield emu, url


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _with_password(dsn: str) -> str:
    """The same DSN with a password in it (trust auth ignores it): it must never be printed."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    return make_conninfo(**{**conninfo_to_dict(dsn), "password": PASSWORD})


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- the command, on a batch two workers shared ----------------------------------------------


def test_manifest_of_a_shared_batch_lists_every_request_once_with_its_worker(
    tmp_path: Path, emulator: tuple[Emulator, str], pg_dsn: str, backend: str
) -> None:
    emu, url = emulator
    n = 24
    emu.faults.task_failure_rate = 0.2
    # one create processed but its answer lost (unknown), one refused (a rerun would send it)
    emu.faults.script("POST /v1/media/create", ["pass", "drop_after", "pass", 400])
    source = tmp_path / "p.txt"
    source.write_text("".join(f"prompt {i}\n" for i in range(n)), encoding="utf-8")
    batch = f"export-{backend}"
    results: dict[str, Result] = {}

    def work(name: str) -> None:
        results[name] = invoke(
            "--api-key", KEY, "--base-url", url, "--clock-scale", "200", "--backend", backend,
            "batch", str(source), "-o", str(tmp_path / name), "--no-progress",
            "--concurrency", "4", "--journal", pg_dsn, "--batch", batch,
        )  # fmt: skip

    threads = [threading.Thread(target=work, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert set(results) == {"a", "b"}
    codes = sorted(r.exit_code for r in results.values())
    assert codes in ([0, 1], [1, 1]), [r.output for r in results.values()]  # 1: some failed
    by_worker = {}  # index -> (worker folder, its manifest line)
    for name in ("a", "b"):
        for line in _lines((tmp_path / name / "manifest.jsonl").read_text("utf-8")):
            by_worker[line["index"]] = (tmp_path / name, line)
    assert sorted(by_worker) == list(range(n))

    out = tmp_path / "all.jsonl"
    dsn = _with_password(pg_dsn)
    result = invoke(
        "--api-key", KEY, "--backend", backend,
        "manifest", "--journal", dsn, "--batch", batch, "-o", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output and KEY not in result.output
    lines = _lines(out.read_text("utf-8"))
    assert [line["index"] for line in lines] == list(range(n))  # every request, once, in order
    workers = set()
    for line in lines:
        folder, theirs = by_worker[line["index"]]
        assert line["prompt"] == f"prompt {line['index']}" and line["model"] == theirs["model"]
        assert (line["ok"], line["task_id"]) == (theirs["ok"], theirs["task_id"]), line
        if line["ok"]:  # saved once, in the folder of the worker that reported it
            assert line["state"] == "saved"
            assert line["file"] == os.path.abspath(folder / theirs["file"])
            assert Path(line["file"]).is_file()
            workers.add((line["worker"], folder))
        else:
            assert line["error"] and line["file"] is None
        if line["state"] == "failed":
            assert line["error_type"] == theirs["error_type"] == "TaskFailedError"
    assert len({w for w, _ in workers}) == 2 == len({f for _, f in workers})  # one id per worker
    states = [line["state"] for line in lines]
    assert states.count("unknown") == 1 and states.count("rejected") == 1
    unknown = next(line for line in lines if line["state"] == "unknown")
    assert unknown["error_type"] == "CreateOutcomeUnknownError"
    assert "unknown" in result.stderr and f"{n} requests in batch {batch!r}" in result.stderr
    assert emu.counters.creates_total == n - 1  # the refused one was not created
    assert set(emu.counters.creates_by_prompt.values()) == {1}

    to_stdout = invoke("manifest", "--journal", pg_dsn, "--batch", batch)
    assert to_stdout.exit_code == 0
    assert _lines(to_stdout.stdout) == lines


def test_an_unknown_batch_is_one_line_naming_the_batches_there(pg_dsn: str, tmp_path: Path) -> None:
    import anyio

    from gptunnel_async.stores.postgres import PostgresJournal

    async def one_row() -> None:  # a batch that does exist in this database
        journal = PostgresJournal(pg_dsn, "it-exists")
        await journal.acquire()
        try:
            await journal.claim("k", 0, {"model": MODEL, "prompt": "p"})
        finally:
            await journal.aclose()

    anyio.run(one_row)
    result = invoke("manifest", "--journal", _with_password(pg_dsn), "--batch", "no-such-batch")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no-such-batch" in errors[0], result.stderr
    assert "'it-exists' (1 rows)" in errors[0]
    assert PASSWORD not in result.output


def test_an_unreachable_database_is_one_line_without_the_password() -> None:
    dsn = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/journal"
    result = invoke("manifest", "--journal", dsn, "--batch", "x")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: journal: PostgreSQL at 127.0.0.1:1/journal is unavail")
    assert len(result.stderr.strip().splitlines()) == 1
    assert PASSWORD not in result.output


def test_usage_errors_say_what_to_give() -> None:
    no_batch = invoke("manifest", "--journal", "postgresql://127.0.0.1/x")
    assert no_batch.exit_code == 2 and "--batch" in no_batch.stderr
    other_url = invoke("manifest", "--journal", "mysql://u:pw@host/db")
    assert other_url.exit_code == 2 and "pw" not in other_url.output
    missing = invoke("manifest", "--journal", "/nonexistent/journal.sqlite")
    assert missing.exit_code == 2 and "no journal file" in missing.stderr


# -- a SQLite journal: the same command --------------------------------------------------------


def test_manifest_from_a_journal_file_matches_the_batch_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.setenv("GPTUNNEL_API_KEY", KEY)  # not needed, and never shown
    source = tmp_path / "p.txt"
    source.write_text("".join(f"prompt {i}\n" for i in range(6)), encoding="utf-8")
    out = tmp_path / "out"
    ran = invoke("--offline", "batch", str(source), "-o", str(out), "--no-progress")
    assert ran.exit_code == 0, ran.output
    batch_lines = _lines((out / "manifest.jsonl").read_text("utf-8"))
    with_batch = invoke("manifest", "-j", str(out), "--batch", "x")
    assert with_batch.exit_code == 2 and "journal file holds one batch" in with_batch.stderr

    result = invoke("--backend", backend, "manifest", "-j", str(out))  # the folder will do
    assert result.exit_code == 0, result.output
    assert KEY not in result.output
    lines = _lines(result.stdout)
    assert [line["index"] for line in lines] == list(range(6))
    assert len({line["worker"] for line in lines}) == 1  # the one run that saved them
    theirs = {line["index"]: line for line in batch_lines}
    for line in lines:
        assert line["state"] == "saved" and line["ok"] is True
        assert line["file"] == os.path.abspath(out / theirs[line["index"]]["file"])
        assert line["task_id"] == theirs[line["index"]]["task_id"]
        assert set(theirs[line["index"]]) <= set(line)  # the batch manifest's keys, and more
    assert "6 requests in the journal: 6 saved" in result.stderr


# -- the readers (asyncio and trio) -----------------------------------------------------------


@pytest.mark.anyio
async def test_the_reader_pages_a_batch_in_order_and_tells_which_runs_are_alive(
    pg_dsn: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gptunnel_async.stores import postgres
    from gptunnel_async.stores.postgres import PostgresBatchReader, PostgresJournal

    monkeypatch.setattr(postgres, "EXPORT_PAGE", 3)  # several pages of 7 rows
    live = PostgresJournal(pg_dsn, "read-1", schema=pg_schema)
    dead = PostgresJournal(pg_dsn, "read-1", schema=pg_schema)
    other = PostgresJournal(pg_dsn, "read-2", schema=pg_schema)
    for journal in (live, dead, other):
        await journal.acquire()
    try:
        for i in range(7):
            journal = live if i % 2 else dead
            await journal.claim(f"k{i}", i, {"model": MODEL, "prompt": f"p{i}"})
        await other.claim("k0", 0, {"model": MODEL, "prompt": "another batch"})
        await dead.mark_on_wire("k0")  # on the wire when its run died: unknown
        await live.mark_on_wire("k1")  # on the wire now: not finished
        await dead.record("k2", "failed", task_id="t2", error="content\npolicy")
        await live.record("k3", "saved", task_id="t3", path="/w/a/t3.png")
        await dead.record("k4", "created", task_id="t4")  # its poller is gone: taken over later
        await live.record("k5", "rejected", error="400 bad prompt")
        await dead.aclose()

        async with PostgresBatchReader(pg_dsn, "read-1", schema=pg_schema) as reader:
            entries: list[JournalEntry] = []
            async for page in reader.pages():
                assert len(page) <= 3
                entries += page
    finally:
        for journal in (live, dead, other):
            await journal.aclose()
    assert [e.record.index for e in entries] == list(range(7))
    assert [e.body["prompt"] for e in entries] == [f"p{i}" for i in range(7)]
    assert [e.alive for e in entries] == [i % 2 == 1 for i in range(7)]
    lines = [entry_line(e) for e in entries]
    assert [(line["ok"], line["error_type"]) for line in lines] == [
        (False, "CreateOutcomeUnknownError"),
        (None, None),
        (False, "TaskFailedError"),
        (True, None),
        (None, None),
        (False, None),
        (None, None),
    ]
    assert lines[2]["error"] == "task failed: content policy"  # one line
    assert lines[3]["file"] == "/w/a/t3.png" and lines[3]["worker"] == live.owner
    assert "a rerun takes it over" in lines[4]["error"] and "a rerun sends it" in lines[5]["error"]


@pytest.mark.anyio
async def test_the_reader_refuses_a_missing_batch_or_database(pg_dsn: str, pg_schema: str) -> None:
    from gptunnel_async.stores.postgres import PostgresBatchReader, PostgresJournal

    with pytest.raises(JournalError, match=r"no journal at .*no table"):
        async with PostgresBatchReader(pg_dsn, "any", schema=pg_schema):
            pass
    journal = PostgresJournal(pg_dsn, "here", schema=pg_schema)
    await journal.acquire()
    try:
        await journal.claim("k", 0, {"model": MODEL, "prompt": "p"})
    finally:
        await journal.aclose()
    with pytest.raises(JournalError, match=r"no batch 'there' .*'here' \(1 rows\)"):
        async with PostgresBatchReader(pg_dsn, "there", schema=pg_schema):
            pass
    dsn = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/db"
    with pytest.raises(CoordinatorUnavailableError) as caught:
        async with open_reader(dsn, batch="here"):
            pass
    assert PASSWORD not in str(caught.value) and "127.0.0.1:1/db" in str(caught.value)
