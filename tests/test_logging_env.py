"""``GPTUNNEL_LOG=debug`` (info, warning, ...): the SDK's log on stderr with no code change,
the key redacted, nothing added when it is unset, and no crash on a bad value."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from gptunnel_async._logs import LOG_ENV, configure_from_env, logger, stderr_handler
from gptunnel_async.testing import Emulator, EmulatorConfig, run_in_thread

KEY = "test-secret-key-for-the-log-0042"


@pytest.fixture
def clean_logger() -> Iterator[None]:
    handlers, level = list(logger.handlers), logger.level
    yield
    for handler in logger.handlers:
        if handler not in handlers:
            logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.usefixtures("clean_logger")
@pytest.mark.parametrize(("value", "level"), [("debug", 10), ("INFO", 20), (" warning ", 30)])
def test_a_level_name_adds_one_stderr_handler_at_that_level(value: str, level: int) -> None:
    handler = configure_from_env({LOG_ENV: value})
    assert handler is not None and handler in logger.handlers
    assert logger.level == level
    assert configure_from_env({LOG_ENV: value}) is handler  # never twice
    assert not logging.getLogger().handlers or handler not in logging.getLogger().handlers


@pytest.mark.usefixtures("clean_logger")
def test_unset_adds_nothing_and_a_bad_value_warns() -> None:
    before = list(logger.handlers)
    assert configure_from_env({}) is None
    with pytest.warns(RuntimeWarning, match="not a log level"):
        assert configure_from_env({LOG_ENV: "loud"}) is None
    assert logger.handlers == before


def _cli(url: str, *args: str, log: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPTUNNEL_")}
    env[LOG_ENV] = log
    command = [sys.executable, "-m", "gptunnel_async.cli", "--base-url", url, "--api-key", KEY]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_the_switch_logs_requests_without_the_key() -> None:
    with run_in_thread(Emulator(EmulatorConfig(time_scale=200))) as url:
        debug = _cli(url, "balance", log="debug")
        quiet = _cli(url, "balance", log="warning")
        both = _cli(url, "-v", "balance", log="debug")
    assert debug.returncode == 0, debug.stderr
    assert "DEBUG gptunnel_async" in debug.stderr and "GET /v1/balance" in debug.stderr
    assert KEY not in debug.stderr + debug.stdout
    assert "GET /v1/balance" not in quiet.stderr
    assert both.stderr.count("GET /v1/balance") == 1  # -v takes over, no line twice


def test_a_logged_server_text_stays_one_harmless_line() -> None:
    formatter = stderr_handler().formatter
    assert formatter is not None
    record = logging.LogRecord(
        "gptunnel_async", logging.DEBUG, __file__, 1, "failed: %s", ("x\x1b[2J\nFAKE line",), None
    )
    line = formatter.format(record)
    assert "\x1b" not in line and "\n" not in line
    assert line.endswith("failed: x\\x1b[2J\\x0aFAKE line")
