"""Hostile prompt files for ``gptunnel batch``: every bad row is one line, nothing crashes.

A file that cannot be read as rows at all (a line nested 100,000 deep, a 5,000-digit number, a
line longer than the cap, a CSV header naming a column twice) stops the run before anything is
sent: one ``error:`` line, exit 2. A row that parses but is not a valid request (an empty
prompt, a lone surrogate, a prompt over its model's limit, a bad ``ar``) fails that row alone:
one line in the manifest, the other rows run, exit 1. The emulator on loopback counts what
reached it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from gptunnel_async._json import MAX_JSON_DEPTH, UnsafeJSONError, load_json
from gptunnel_async.catalog import PROMPT_MAX_LEN
from gptunnel_async.cli import EXIT_ERROR, EXIT_USAGE
from gptunnel_async.cli._app import cli
from gptunnel_async.cli._inputs import MAX_LINE_CHARS, InputFileError, parse_params
from gptunnel_async.testing import Emulator, EmulatorConfig, run_in_thread

KEY = "test-input-files-key-0001"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPTUNNEL_API_KEY", raising=False)
    monkeypatch.delenv("GPTUNNEL_BASE_URL", raising=False)


@pytest.fixture
def emulator() -> Iterator[tuple[Emulator, str]]:
    emu = Emulator(EmulatorConfig(time_scale=400))
    with run_in_thread(emu) as url:
        yield emu, url


def batch(url: str, source: Path, out: Path, *extra: str) -> Result:
    args = ["--base-url", url, "--api-key", KEY, "--clock-scale", "400"]
    args += ["batch", str(source), "-o", str(out), "--no-progress", *extra]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def manifest(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text("utf-8").splitlines()]


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


# -- files that cannot be read as rows: refused before anything is sent ----------------------

UNREADABLE = {
    "nested 100,000 deep": ('{"prompt": "ok"}\n' + "[" * 100_000 + "]" * 100_000 + "\n", "deep"),
    "nested objects": ('{"prompt": "ok", "x": ' + '{"a": ' * 5_000 + "1" + "}" * 5_001, "deep"),
    "a 5,000-digit number": ('{"prompt": "ok", "seed": ' + "9" * 5_000 + "}\n", "digits"),
    "a 5,000-digit float": ('{"prompt": "ok", "w": 0.' + "1" * 5_000 + "}\n", "digits"),
    "a huge exponent": ('{"prompt": "ok", "w": 1e999999}\n', "finite"),
    "NaN": ('{"prompt": "ok", "w": NaN}\n', "NaN"),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_an_unreadable_jsonl_line_is_one_error_line_and_exit_2(
    case: str, tmp_path: Path, emulator: tuple[Emulator, str]
) -> None:
    emu, url = emulator
    text, word = UNREADABLE[case]
    source = tmp_path / "p.jsonl"
    source.write_text(text, encoding="utf-8")
    result = batch(url, source, tmp_path / "out")
    assert result.exit_code == EXIT_USAGE
    line = one_error_line(result)
    assert "p.jsonl:" in line and word in line
    assert len(line) < 300
    assert emu.counters.creates_total == 0


def test_a_line_over_the_length_cap_is_refused_without_being_sent(
    tmp_path: Path, emulator: tuple[Emulator, str]
) -> None:
    emu, url = emulator
    source = tmp_path / "p.txt"
    source.write_text("a fox\n" + "x" * (MAX_LINE_CHARS + 10) + "\nan owl\n", encoding="utf-8")
    result = batch(url, source, tmp_path / "out")
    assert result.exit_code == EXIT_USAGE
    assert "p.txt:2" in one_error_line(result) and f"{MAX_LINE_CHARS:,}" in result.stderr
    assert emu.counters.creates_total == 0


@pytest.mark.parametrize("header", ["prompt,prompt", "prompt,ar,ar", "prompt, ar,ar "])
def test_a_csv_header_naming_a_column_twice_is_refused(
    header: str, tmp_path: Path, emulator: tuple[Emulator, str]
) -> None:
    emu, url = emulator
    source = tmp_path / "p.csv"
    cells = ",".join(["a fox"] + ["1:1"] * header.count(","))
    source.write_text(f"{header}\n{cells}\n", encoding="utf-8")
    result = batch(url, source, tmp_path / "out")
    assert result.exit_code == EXIT_USAGE
    assert "twice" in one_error_line(result)
    assert emu.counters.creates_total == 0


@pytest.mark.parametrize(
    "value", ["[" * 100_000, "9" * 5_000, '{"a": ' * 10_000], ids=["deep", "digits", "objects"]
)
def test_a_hostile_param_value_is_a_clear_error(value: str) -> None:
    with pytest.raises(InputFileError, match="--param"):
        parse_params((f"k={value}",))


def test_an_empty_base_url_is_refused_with_exit_2(tmp_path: Path) -> None:
    source = tmp_path / "p.txt"
    source.write_text("a fox\n", encoding="utf-8")
    args = ["--base-url", "", "--api-key", KEY, "batch", str(source), "-o", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == EXIT_USAGE
    assert "base_url" in one_error_line(result)


# -- rows that parse but are not valid requests: that row fails, the others run --------------

BAD_ROWS = {
    "empty prompt": ('{"prompt": ""}', "prompt must not be empty"),
    "blank prompt": ('{"prompt": "   "}', "prompt must not be empty"),
    "no prompt": ('{"ar": "1:1"}', "prompt"),
    "a number for a prompt": ('{"prompt": 5}', "prompt must be a string"),
    "a lone surrogate": ('{"prompt": "\\ud800"}', "surrogate"),
    "a surrogate in an extra field": ('{"prompt": "ok", "style": "\\udfff"}', "style"),
    "a bad ar": ('{"prompt": "ok", "ar": "7:7"}', "7:7"),
    "over the general cap": (
        json.dumps({"prompt": "x" * (PROMPT_MAX_LEN + 1), "model": "some-new-model"}),
        f"{PROMPT_MAX_LEN:,}",
    ),
    "over suno's limit": (json.dumps({"prompt": "x" * 401, "model": "suno"}), "400"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_a_bad_row_fails_alone_with_one_manifest_line(
    case: str, tmp_path: Path, emulator: tuple[Emulator, str]
) -> None:
    emu, url = emulator
    row, expected = BAD_ROWS[case]
    source = tmp_path / "p.jsonl"
    source.write_text(f'{{"prompt": "a fox"}}\n{row}\n{{"prompt": "an owl"}}\n', encoding="utf-8")
    out = tmp_path / "out"
    result = batch(url, source, out)
    assert result.exit_code == EXIT_ERROR, result.output
    assert "1 of 3 requests failed" in result.stderr
    raw = (out / "manifest.jsonl").read_bytes()
    raw.decode("utf-8")  # the manifest is valid UTF-8 whatever the rows held
    lines = manifest(out)
    assert len(raw.splitlines()) == len(lines) == 3
    by_index = {line["index"]: line for line in lines}
    assert by_index[0]["ok"] is True and by_index[2]["ok"] is True
    bad = by_index[1]
    assert bad["ok"] is False and bad["error_type"] == "InvalidInputError"
    assert expected in str(bad["error"]) and "\n" not in str(bad["error"])
    assert dict(emu.counters.creates_by_prompt) == {"a fox": 1, "an owl": 1}


def test_an_empty_csv_prompt_fails_its_row_not_the_batch(
    tmp_path: Path, emulator: tuple[Emulator, str]
) -> None:
    emu, url = emulator
    source = tmp_path / "p.csv"
    source.write_text("prompt,ar\na fox,1:1\n,16:9\nan owl,\n", encoding="utf-8")
    out = tmp_path / "out"
    result = batch(url, source, out)
    assert result.exit_code == EXIT_ERROR, result.output
    by_index = {line["index"]: line for line in manifest(out)}
    assert by_index[1]["ok"] is False and "prompt must not be empty" in str(by_index[1]["error"])
    assert by_index[0]["ok"] is True and by_index[2]["ok"] is True
    assert dict(emu.counters.creates_by_prompt) == {"a fox": 1, "an owl": 1}


# -- the bounded JSON loader ------------------------------------------------------------------


def test_nesting_up_to_the_limit_loads_and_one_more_level_is_refused() -> None:
    assert load_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(UnsafeJSONError, match="deeper"):
        load_json("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))


def test_brackets_and_escaped_quotes_inside_strings_are_not_nesting() -> None:
    prompt = '[[[{{{ \\" ]]] ' * 1_000
    assert load_json(json.dumps({"prompt": prompt})) == {"prompt": prompt}


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='[]{}"\\:,0123456789.eE-+ aNInfity', max_size=400))
def test_any_text_loads_or_raises_a_value_error_naming_the_problem(text: str) -> None:
    with contextlib.suppress(json.JSONDecodeError, UnsafeJSONError):  # nothing else escapes
        load_json(text)
