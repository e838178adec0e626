"""What the command line says and keeps when a run is cut short or shares its folder: offline
resume, one run per journal and manifest, the task id of an interrupted ``generate``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner, Result

from gptunnel_async.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE
from gptunnel_async.cli._app import cli
from gptunnel_async.cli._batch import JOURNAL_NAME, BatchSummary, Manifest, emulator_state
from gptunnel_async.cli._output import BatchProgress
from gptunnel_async.cli._session import CLIError
from gptunnel_async.stores import SQLiteJournal
from gptunnel_async.testing import DurationDist, Emulator, EmulatorConfig, run_in_thread

KEY = "journal-cli-key-0123456789"
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPTUNNEL_API_KEY", raising=False)
    monkeypatch.delenv("GPTUNNEL_BASE_URL", raising=False)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPTUNNEL_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "gptunnel_async.cli", *args]


def _prompts(tmp: Path, n: int) -> tuple[Path, list[str]]:
    prompts = [f"journal cli prompt {i}" for i in range(n)]
    source = tmp / "p.txt"
    source.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    return source, prompts


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def _wait_for(predicate: object, proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the command ended (exit {proc.returncode}) before {what}")
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@posix_only
def test_an_offline_batch_stopped_with_ctrl_c_resumes_without_creating_again(
    tmp_path: Path,
) -> None:
    """The quick start's command, interrupted and rerun: no journal option needed."""
    source, prompts = _prompts(tmp_path, 16)
    out = tmp_path / "out"
    command = _cli(
        "--offline", "--clock-scale", "40", "batch", str(source), "-o", str(out),
        "--max-pending", "3", "--no-progress",
    )  # fmt: skip
    tasks = emulator_state(out / JOURNAL_NAME)

    def created() -> int:
        return len(tasks.read_text().splitlines()) if tasks.exists() else 0

    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    ) as proc:
        try:
            _wait_for(lambda: created() >= 4, proc, "four creates")
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "rerun the same command to resume" in err
    first = created()
    assert 4 <= first < len(prompts)

    rerun = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=_env(), check=False
    )
    assert rerun.returncode == 0, rerun.stderr
    saved = [json.loads(line) for line in tasks.read_text().splitlines()]
    assert Counter(t["prompt"] for t in saved) == Counter(prompts)  # each created once, in all
    lines = _lines(out / "manifest.jsonl")
    assert all(line["ok"] for line in lines)
    assert sum(bool(line["resumed"]) for line in lines) == first  # the first run's tasks
    assert f"{first} from the journal" in rerun.stderr
    assert f"{len(prompts) - first} created now" in rerun.stderr


@posix_only
def test_a_batch_stopped_with_ctrl_c_keeps_what_its_schedule_learned(tmp_path: Path) -> None:
    """The poll-state file was written only when a batch completed: an interrupted one lost
    what it had learned. Now it is saved on the way out (and every 30 s while running)."""
    from gptunnel_async.cli._batch import POLL_STATE_NAME

    source, _ = _prompts(tmp_path, 30)
    out = tmp_path / "out"
    command = _cli(
        "--offline", "--clock-scale", "40", "batch", str(source), "-o", str(out),
        "--max-pending", "4", "--no-progress",
    )  # fmt: skip
    manifest, state = out / "manifest.jsonl", out / POLL_STATE_NAME

    def finished() -> int:
        return len(manifest.read_text().splitlines()) if manifest.exists() else 0

    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    ) as proc:
        try:
            _wait_for(lambda: finished() >= 3, proc, "three results")
            assert not state.exists()  # nothing saved yet (the first save is 30 s in)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == EXIT_INTERRUPTED, err
    learned = json.loads(state.read_text())
    assert sum(m["observed"] for m in learned["models"].values()) >= 3


def test_a_batch_on_a_journal_in_use_is_refused_before_it_touches_the_manifest(
    tmp_path: Path,
) -> None:
    source, _ = _prompts(tmp_path, 3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.jsonl").write_text('{"the other run": "writes here"}\n')
    other = SQLiteJournal(out / JOURNAL_NAME)
    anyio.run(other.acquire)
    emu = Emulator(EmulatorConfig(time_scale=200))
    try:
        with run_in_thread(emu) as url:
            result = invoke(
                "--base-url", url, "--api-key", KEY, "batch", str(source), "-o", str(out)
            )
    finally:
        anyio.run(other.aclose)
    assert result.exit_code == EXIT_ERROR
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and f"in use by pid {os.getpid()} " in error[0], result.output
    assert (out / "manifest.jsonl").read_text() == '{"the other run": "writes here"}\n'
    assert emu.counters.creates_total == 0


def test_a_manifest_has_one_writer(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    with Manifest(path) as first:
        first.write({"index": 0})
        with pytest.raises(CLIError, match=rf"being written by pid {os.getpid()} "):
            Manifest(path).__enter__()
        first.write({"index": 1})
    assert _lines(path) == [{"index": 0}, {"index": 1}]
    with Manifest(path) as again:  # released: the next run rewrites it
        again.write({"index": 2})
    assert _lines(path) == [{"index": 2}]


@pytest.mark.parametrize("location", ["mysql://user:s3cret@127.0.0.1/db", "redis://h/0"])
def test_a_journal_url_is_a_usage_error_and_creates_no_file(tmp_path: Path, location: str) -> None:
    source, _ = _prompts(tmp_path, 1)
    result = invoke(
        "--offline", "batch", str(source), "-o", str(tmp_path / "out"), "--journal", location
    )
    assert result.exit_code == EXIT_USAGE
    assert "URL" in result.output and "s3cret" not in result.output
    assert not (tmp_path / "out").exists()


@posix_only
def test_ctrl_c_during_generate_prints_the_created_task_and_how_to_get_it(
    tmp_path: Path,
) -> None:
    config = EmulatorConfig(
        time_scale=1.0, durations={"google-imagen-3": DurationDist.log_uniform(300.0, 400.0)}
    )
    emu = Emulator(config)
    with run_in_thread(emu) as url:
        command = _cli(
            "--base-url", url, "--api-key", KEY, "generate", "a slow fox", "-o", str(tmp_path)
        )
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
        ) as proc:
            try:
                assert proc.stderr is not None
                first = proc.stderr.readline()  # "created task <id>", printed at once
                proc.send_signal(signal.SIGINT)
                out, rest = proc.communicate(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
        [task_id] = list(emu.store.tasks)
    assert first.strip() == f"created task {task_id}"
    assert proc.returncode == EXIT_INTERRUPTED
    assert f"gptunnel wait {task_id} -o {tmp_path}" in rest
    assert out == ""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_under_the_manifest_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    source, _ = _prompts(tmp_path, 2)
    manifest = tmp_path / "manifest.jsonl"
    manifest.symlink_to("/dev/full")  # every write: ENOSPC
    result = invoke(
        "--offline", "--clock-scale", "400", "batch", str(source), "-o", str(tmp_path / "out"),
        "--manifest", str(manifest), "--no-progress",
    )  # fmt: skip
    assert result.exit_code == EXIT_ERROR
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], result.output


def test_the_resume_note_says_where_every_request_came_from() -> None:
    summary = BatchSummary(total=50)
    assert summary.journal_note() == ""  # a fresh batch: nothing to say
    summary.resumed, summary.repolled, summary.already_saved, summary.created = 30, 12, 18, 20
    assert summary.journal_note() == (
        "30 from the journal (12 re-polled, 18 already saved), 20 created now"
    )
    with BatchProgress(50, enabled=False) as bar:  # the live bar takes it as its title
        bar.update(done=1, ok=1, failed=0, in_flight=3, note=summary.journal_note())
