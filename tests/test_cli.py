"""The ``gptunnel`` command: every command offline, batches from every input format, the
messages and exit codes a user sees, Ctrl-C, and a batch killed with SIGKILL that resumes
without creating anything twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner, Result

from gptunnel_async import AsyncGPTunnel, BatchResult
from gptunnel_async.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, main
from gptunnel_async.cli._app import cli
from gptunnel_async.testing import DurationDist, Emulator, EmulatorConfig, run_in_thread

FAST = "400"  # offline emulator time scale for tests (and the poll schedule's clock scale)
KEY = "test-secret-key-0123456789"
WEBP = (b"RIFF", b"WEBP")


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPTUNNEL_API_KEY", raising=False)
    monkeypatch.delenv("GPTUNNEL_BASE_URL", raising=False)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def offline(*args: str) -> Result:
    return invoke("--offline", "--clock-scale", FAST, *args)


def is_webp(path: Path) -> bool:
    data = path.read_bytes()
    return data[:4] == WEBP[0] and data[8:12] == WEBP[1]


def manifest(out: Path) -> list[dict[str, object]]:
    lines = (out / "manifest.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture
def emulator() -> Iterator[tuple[Emulator, str]]:
    emu = Emulator(EmulatorConfig(time_scale=200))
    with run_in_thread(emu) as url:
        yield emu, url


def online(url: str, *args: str) -> Result:
    return invoke("--base-url", url, "--api-key", KEY, "--clock-scale", "200", *args)


# -- configuration and errors ----------------------------------------------------------------


def test_no_key_says_where_to_get_one_and_how_to_try_offline() -> None:
    result = invoke("generate", "a fox")
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith("error: no API key")
    assert "dashboard" in result.stderr
    assert "--offline" in result.stderr
    assert "Traceback" not in result.output


def test_main_returns_the_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["balance"]) == EXIT_USAGE
    assert main(["--offline", "models"]) == 0
    assert main(["--no-such-option"]) == EXIT_USAGE


def test_wrong_aspect_ratio_is_one_line_and_nothing_is_sent() -> None:
    result = offline("generate", "a fox", "--ar", "7:7")
    assert result.exit_code == EXIT_USAGE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: invalid input: model 'google-imagen-3' does not accept")


def test_api_error_is_one_line_with_its_status(tmp_path: Path) -> None:
    emu = Emulator(EmulatorConfig(time_scale=200, org_balance=0))
    with run_in_thread(emu) as url:
        result = online(url, "generate", "a fox", "-o", str(tmp_path))
    assert result.exit_code == EXIT_ERROR
    assert result.stderr.strip() == "error: 402 Organization balance is too low to use API"
    assert emu.counters.requests_by_route["POST /v1/media/create"] == 1  # not retried


def test_offline_and_base_url_exclude_each_other() -> None:
    result = invoke("--offline", "--base-url", "http://127.0.0.1:1", "balance")
    assert result.exit_code == EXIT_USAGE


def test_plain_http_to_a_remote_host_is_refused() -> None:
    result = invoke("--api-key", KEY, "--base-url", "http://example.com", "balance")
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith("error: refusing plain-http base_url")


def test_verbose_logs_requests_but_never_the_key(emulator: tuple[Emulator, str]) -> None:
    _, url = emulator
    result = online(url, "-v", "balance")
    assert result.exit_code == 0, result.output
    assert "GET /v1/balance" in result.stderr
    assert KEY not in result.output


# -- single commands -------------------------------------------------------------------------


def test_generate_offline_saves_the_file_and_prints_its_path(tmp_path: Path) -> None:
    out = tmp_path / "new" / "dir"
    result = offline(
        "generate", "a fox", "--model", "google-imagen-3", "--ar", "16:9", "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip())
    assert path.parent == out
    assert is_webp(path)


def test_generate_runs_on_trio(tmp_path: Path) -> None:
    result = offline("--backend", "trio", "generate", "a fox", "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert is_webp(Path(result.stdout.strip()))


def test_models_lists_the_catalogue_without_a_key() -> None:
    result = invoke("models")
    assert result.exit_code == 0
    assert "google-imagen-3" in result.stdout
    assert "glabs-veo-3-1-fast" in result.stdout


def test_remote_models_and_balance_offline() -> None:
    remote = offline("models", "--remote")
    assert remote.exit_code == 0, remote.output
    assert remote.stdout.splitlines()[0].split("\t")[:2] == ["id", "kind"]
    assert "gpt-4o\tchat\t" in remote.stdout  # a chat model, labelled as such
    balance = offline("balance")
    assert balance.exit_code == 0, balance.output
    assert "balance\t1000000.0" in balance.stdout.splitlines()


def test_result_of_an_unknown_task_offline_names_it_and_explains_offline() -> None:
    result = offline("result", "0123456789abcdef01234567")
    assert result.exit_code == EXIT_ERROR
    first, *hint = result.stderr.strip().splitlines()
    assert first == "error: 404 Task not found (task 0123456789abcdef01234567)"
    assert "each command runs its own emulator" in " ".join(hint)
    assert "gptunnel emulator" in " ".join(hint)


def test_result_and_wait_for_a_task_id(emulator: tuple[Emulator, str], tmp_path: Path) -> None:
    _, url = emulator

    async def create() -> str:
        async with AsyncGPTunnel(KEY, base_url=url) as client:
            task = await client.media.create(model="google-imagen-3", prompt="a fox")
            return task.id

    task_id = anyio.run(create)
    waited = online(url, "wait", task_id, "-o", str(tmp_path))
    assert waited.exit_code == 0, waited.output
    assert is_webp(Path(waited.stdout.strip()))
    shown = online(url, "result", task_id, "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["status"] == "done"
    table = online(url, "result", task_id, "--kind", "media")
    assert task_id in table.stdout


# -- batches ---------------------------------------------------------------------------------

INPUTS = {
    "prompts.txt": "a cat\n\n  a dog  \nодин кот\n",
    "prompts.csv": (
        "prompt,model,ar,style\na cat,,16:9,flat\na dog,google-imagen-3,,\nодин кот,,,\n"
    ),
    "prompts.jsonl": (
        '{"prompt": "a cat", "ar": "1:1"}\n\n{"prompt": "a dog"}\n{"prompt": "один кот"}\n'
    ),
}


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_batch_writes_every_file_and_a_manifest(tmp_path: Path, name: str) -> None:
    source = tmp_path / name
    source.write_text(INPUTS[name], encoding="utf-8")
    out = tmp_path / "out"
    result = offline("batch", str(source), "-o", str(out), "--concurrency", "4")
    assert result.exit_code == 0, result.output
    lines = manifest(out)
    assert sorted(line["index"] for line in lines) == [0, 1, 2]  # type: ignore[type-var]
    assert {line["prompt"] for line in lines} == {"a cat", "a dog", "один кот"}
    for line in lines:
        assert line["ok"] is True
        assert line["model"] == "google-imagen-3"
        assert is_webp(out / str(line["file"]))
    assert not list(out.glob("*.part"))


def test_batch_reports_bad_rows_in_the_manifest_and_exits_1(tmp_path: Path) -> None:
    source = tmp_path / "p.csv"
    source.write_text("prompt,ar\nfine,16:9\nwrong,7:7\n", encoding="utf-8")
    out = tmp_path / "out"
    result = offline("batch", str(source), "-o", str(out))
    assert result.exit_code == EXIT_ERROR
    assert "error: 1 of 2 requests failed" in result.stderr
    by_prompt = {line["prompt"]: line for line in manifest(out)}
    assert by_prompt["fine"]["ok"] is True
    assert by_prompt["wrong"]["ok"] is False
    assert by_prompt["wrong"]["error_type"] == "InvalidInputError"


def test_batch_removes_partial_downloads_a_killed_run_left(tmp_path: Path) -> None:
    source = tmp_path / "p.txt"
    source.write_text("a cat\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".6b013f4805d5b449e3f97c32.tczbq6fc.part").write_bytes(b"RIFF")
    result = offline("batch", str(source), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert not list(out.glob("*.part")) and not list(out.glob(".*.part"))


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("p.jsonl", '{"prompt": "ok"}\nnot json\n', "p.jsonl:2: not valid JSON"),
        ("p.jsonl", '{"prompt": "ok"}\n[1]\n', "p.jsonl:2: expected a JSON object"),
        ("p.csv", "text,ar\nx,1:1\n", "needs a 'prompt' column"),
    ],
)
def test_malformed_input_stops_before_anything_is_sent(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    source = tmp_path / name
    source.write_text(text, encoding="utf-8")
    result = offline("batch", str(source), "-o", str(tmp_path / "out"))
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith("error: ") and expected in result.stderr
    assert not (tmp_path / "out").exists()


# -- processes: the entry point, the emulator command, Ctrl-C, SIGKILL and resume ------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPTUNNEL_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "gptunnel_async.cli", *args]


def test_module_entry_point_runs_offline(tmp_path: Path) -> None:
    done = subprocess.run(
        _cli("--offline", "--clock-scale", FAST, "generate", "a fox", "-o", str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert is_webp(Path(done.stdout.strip()))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_emulator_command_serves_until_ctrl_c() -> None:
    with subprocess.Popen(
        _cli("emulator", "--port", "0", "--time-scale", "200"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    ) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            result = online(url, "balance")
            assert result.exit_code == 0, result.output
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def _slow_emulator() -> Emulator:
    """Tasks of 0.1-0.5 s (at 200×), so a short batch is still running when it is stopped."""
    config = EmulatorConfig(
        time_scale=200, durations={"google-imagen-3": DurationDist.log_uniform(20.0, 100.0)}
    )
    return Emulator(config)


def _wait_for_manifest_lines(out: Path, proc: subprocess.Popen[str], at_least: int) -> int:
    path = out / "manifest.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"the batch ended (exit {proc.returncode}) too early: {err}")
        if path.exists():
            count = sum(1 for line in path.read_text("utf-8").splitlines() if line.endswith("}"))
            if count >= at_least:
                return count
        time.sleep(0.01)
    raise AssertionError("the batch made no progress")


def _batch_command(url: str, source: Path, out: Path) -> list[str]:
    return _cli(
        "--base-url", url, "--api-key", KEY, "--clock-scale", "200",
        "batch", str(source), "-o", str(out), "--max-pending", "3", "--no-progress",
    )  # fmt: skip


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_a_batch_with_exit_130_and_it_resumes(tmp_path: Path) -> None:
    prompts = [f"prompt {i}" for i in range(30)]
    source = tmp_path / "p.txt"
    source.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    emu = _slow_emulator()
    with run_in_thread(emu) as url:
        command = _batch_command(url, source, out)
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
        ) as proc:
            try:
                _wait_for_manifest_lines(out, proc, 2)
                proc.send_signal(signal.SIGINT)
                _, err = proc.communicate(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
        assert proc.returncode == EXIT_INTERRUPTED, err
        assert "rerun the same command to resume" in err
        assert "Traceback" not in err
        assert not [p for p in out.iterdir() if p.name.endswith(".part")]
        rerun = subprocess.run(
            command, capture_output=True, text=True, timeout=120, env=_env(), check=False
        )
        creates = dict(emu.counters.creates_by_prompt)
    assert rerun.returncode == 0, rerun.stderr  # a clean stop leaves no unknown outcomes
    assert creates == dict.fromkeys(prompts, 1)
    assert len(manifest(out)) == len(prompts)


@pytest.mark.skipif(not hasattr(BatchResult, "from_journal"), reason="journal not landed")
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_batch_killed_with_sigkill_resumes_without_creating_twice(tmp_path: Path) -> None:
    prompts = [f"prompt {i}" for i in range(30)]
    source = tmp_path / "p.txt"
    source.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    emu = _slow_emulator()
    with run_in_thread(emu) as url:
        command = _batch_command(url, source, out)
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
        ) as proc:
            done_before = _wait_for_manifest_lines(out, proc, 3)
            proc.send_signal(signal.SIGKILL)
        assert done_before < len(prompts)
        rerun = subprocess.run(
            command, capture_output=True, text=True, timeout=120, env=_env(), check=False
        )
        creates = dict(emu.counters.creates_by_prompt)

    assert all(count == 1 for count in creates.values()), "a prompt was created twice"
    lines = manifest(out)
    assert sorted(line["index"] for line in lines) == list(range(len(prompts)))  # type: ignore[type-var]
    assert any(line["resumed"] for line in lines)
    # A create cut off between journaling it as sent and recording its answer has an unknown
    # outcome: it is reported, never re-sent. At most --max-pending creates can be in that
    # state, and only those may be missing at the server (killed after the journal write,
    # before the bytes left: write-ahead always leaves that window).
    unknown = [line for line in lines if line["error_type"] == "CreateOutcomeUnknownError"]
    assert len(unknown) <= 3
    never_created = set(prompts) - set(creates)
    assert never_created <= {line["prompt"] for line in unknown}, "a prompt was never created"
    assert all(line["ok"] for line in lines if line not in unknown), rerun.stderr
    assert rerun.returncode == (EXIT_ERROR if unknown else 0), rerun.stderr
    files = sorted(p for p in out.iterdir() if not p.name.startswith(".") and p.suffix == ".webp")
    assert len(files) == len(prompts) - len(unknown)
    assert all(is_webp(f) for f in files)
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
