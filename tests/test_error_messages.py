"""The validation failure a user meets first (an unknown model) reads as one useful line: the
rejected value, the closest accepted ones, the long list summarised, never cut mid-word."""

from __future__ import annotations

import json

from gptunnel_async._errors import InvalidRequestError
from gptunnel_async._response import _MAX_MESSAGE, error_from_response

MODELS = [f"model-{i}" for i in range(40)] + ["google-imagen-3", "grok-imagine"]


def _zod(path: str, values: list[str], received: str) -> bytes:
    expected = " | ".join(f"'{v}'" for v in values)
    issue = {
        "path": [path],
        "expected": expected,
        "message": f"Invalid enum value. Expected {expected}, received '{received}'",
    }
    return json.dumps({"code": 3, "message": "Validation error", "issues": [issue]}).encode()


def _error(content: bytes, status: int = 200) -> InvalidRequestError:
    error = error_from_response(
        status_code=status, headers={}, content=content, method="POST", path="/v1/media/create"
    )
    assert isinstance(error, InvalidRequestError)
    return error


def test_an_unknown_model_gets_did_you_mean_and_a_summary() -> None:
    error = _error(_zod("model", MODELS, "google-imagen3"))
    text = str(error)
    assert "model: 'google-imagen3' is not accepted; did you mean 'google-imagen-3'" in text
    assert f"({len(MODELS)} values accepted)" in text
    assert "model-39" not in text  # the whole list is not repeated
    assert error.issues[0]["expected"].count("|") == len(MODELS) - 1  # still all on .issues


def test_no_close_value_lists_the_first_few_and_a_count() -> None:
    text = str(_error(_zod("model", MODELS, "zzz")))
    assert "did you mean" not in text
    assert "'model-0', 'model-1'" in text and f"and {len(MODELS) - 8} more" in text


def test_a_short_enum_is_listed_whole() -> None:
    text = str(_error(_zod("ar", ["1:1", "16:9"], "16:10")))
    assert text.endswith("ar: '16:10' is not accepted; expected one of '1:1', '16:9'")


def test_without_an_expected_list_the_catalogue_suggests() -> None:
    issue = {"path": ["model"], "message": "Unknown model, received 'seedream3'"}
    body = json.dumps({"code": 3, "message": "Validation error", "issues": [issue]}).encode()
    assert "did you mean 'seedream-3'" in str(_error(body))


def test_other_issues_are_shown_as_the_server_wrote_them() -> None:
    issue = {"path": ["prompt"], "expected": "string", "message": "Expected string"}
    body = json.dumps({"code": 3, "message": "Validation error", "issues": [issue]}).encode()
    assert "prompt: Expected string (expected string)" in str(_error(body))


def test_a_long_message_is_cut_between_words_and_says_so() -> None:
    words = " ".join(f"word{i:04d}" for i in range(200))
    body = json.dumps({"error": {"message": words, "type": "invalid_request_error"}}).encode()
    text = str(_error(body, status=400))
    kept, _, rest = text.rpartition(" … (")
    assert kept.split()[-1].startswith("word") and len(kept.split()[-1]) == 8  # a whole word
    assert rest.endswith(" more characters)")
    assert len(text) < _MAX_MESSAGE + 100
