"""One exception hierarchy for everything the SDK raises, and the map from a response to a class.

Every error carries what a caller needs to decide what to do next: the HTTP status, the server's
message and ``type``, the task id where there is one, and — for a create — whether the request
may have reached the server (in which case the task may exist and be billed, and it was not
re-sent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._logs import redact

if TYPE_CHECKING:
    from .types.media import MediaTask


class GPTunnelError(Exception):
    """Base class of every error this SDK raises.

    The message is redacted when the error is built: it may quote server text (an echoed key).
    """

    message: str
    status_code: int | None
    error_type: str | None
    task_id: str | None

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_type: str | None = None,
        task_id: str | None = None,
    ) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.error_type = error_type
        self.task_id = task_id

    def __str__(self) -> str:
        return self.message


class InvalidInputError(GPTunnelError, ValueError):
    """Rejected locally, before any request was sent (so nothing was billed)."""


class APIError(GPTunnelError):
    """Something went wrong talking to the API.

    ``method`` and ``path`` name the request (never its headers). For a create,
    ``may_have_been_created`` says the request may have reached the server: the task may exist
    (and be billed) although no answer came back, and the SDK did not send it again.
    """

    method: str | None
    path: str | None
    may_have_been_created: bool

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        status_code: int | None = None,
        error_type: str | None = None,
        task_id: str | None = None,
        may_have_been_created: bool = False,
    ) -> None:
        if may_have_been_created:
            message = (
                f"{message} — the create request may have reached the server, so the task may "
                "exist and be billed; it was NOT re-sent (a repeated create is billed again)"
            )
        super().__init__(message, status_code=status_code, error_type=error_type, task_id=task_id)
        self.method = method
        self.path = path
        self.may_have_been_created = may_have_been_created


class APIConnectionError(APIError):
    """No usable HTTP response: connection refused or dropped, protocol error."""


class APITimeoutError(APIConnectionError):
    """The request timed out (connect, read, write or waiting for a pooled connection)."""


class APIResponseValidationError(APIError):
    """The server answered, but with a body the SDK cannot understand."""


class APIStatusError(APIError):
    """The server answered with an error status (or an error body under HTTP 200)."""

    body: object

    def __init__(self, message: str, *, body: object = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.body = body


class InvalidRequestError(APIStatusError):
    """HTTP 400, or HTTP 200 with ``code`` != 0 (validation failures carry ``issues``)."""

    code: int | None
    issues: list[dict[str, Any]]

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        issues: Sequence[Mapping[str, Any]] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.code = code
        self.issues = [dict(i) for i in issues]


class AuthenticationError(APIStatusError):
    """HTTP 401: the API key is missing, wrong or revoked."""


class InsufficientBalanceError(APIStatusError):
    """HTTP 402: the organisation (or wallet) balance is too low."""


class PermissionDeniedError(APIStatusError):
    """HTTP 403."""


class NotFoundError(APIStatusError):
    """HTTP 404: e.g. an unknown task id."""


class RateLimitError(APIStatusError):
    """HTTP 429. ``retry_after`` is the server's hint in seconds, if it gave one."""

    retry_after: float | None

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class InternalServerError(APIStatusError):
    """HTTP 5xx."""


class CreateOutcomeUnknownError(GPTunnelError):
    """An earlier run sent this create and recorded no answer: the task may exist and be billed.

    Raised (as a batch result) on resume instead of sending the create again. Check the
    provider's dashboard, or drop the request from the input if it should not run twice.
    """


class JournalError(GPTunnelError):
    """The journal cannot be opened or written: a batch must not run without its record."""


class JournalInUseError(JournalError):
    """Another live run owns this journal; two runs on one record could pay twice."""


class PollerClosedError(GPTunnelError, RuntimeError):
    """A task was added to a poller that was closed for new tasks (or already left)."""


class TaskFailedError(GPTunnelError):
    """The server reports that the task failed (or was cancelled)."""

    task: MediaTask | None

    def __init__(self, message: str, *, task: Any = None, task_id: str | None = None) -> None:
        tid = task_id if task_id is not None else getattr(task, "id", None)
        super().__init__(message, error_type="task_failed", task_id=tid)
        self.task = task


class TaskTimeoutError(GPTunnelError, TimeoutError):
    """A wait or a deadline ran out before the task finished. The task may still finish."""

    task: Any

    def __init__(self, message: str, *, task: Any = None, task_id: str | None = None) -> None:
        tid = task_id if task_id is not None else getattr(task, "id", None)
        super().__init__(message, error_type="task_timeout", task_id=tid)
        self.task = task


class DownloadError(GPTunnelError):
    """A result file could not be fetched (after retries where retrying made sense)."""


class LinkExpiredError(DownloadError):
    """The result link has expired (48 h for media): the file is gone from the provider."""


class UnsafeLinkError(DownloadError, InvalidInputError):
    """A link (or a redirect) that the SDK refuses to follow: not https, or an address that is
    (or resolves to) loopback, private, link-local or otherwise not public."""


class FileTooLargeError(DownloadError):
    """The file is larger than the cap; nothing was written."""


class DownloadTimeoutError(DownloadError, TimeoutError):
    """The file did not arrive within its total deadline (a host sending too slowly)."""


class FileWriteError(DownloadError, OSError):
    """The file could not be written here (disk full, no permission, read-only file system).

    Nothing is left behind: the partial file is removed.
    """


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    402: InsufficientBalanceError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: InvalidRequestError,
    429: RateLimitError,
}
_BY_TYPE: dict[str, type[APIStatusError]] = {
    "invalid_request_error": InvalidRequestError,
    "unauthorized_request_error": AuthenticationError,
    "authentication_error": AuthenticationError,
    "insufficient_balance_error": InsufficientBalanceError,
    "not_found_error": NotFoundError,
    "rate_limit_error": RateLimitError,
}


def status_error_class(status_code: int, error_type: str | None) -> type[APIStatusError]:
    """The class for an error response: the status decides, the body's ``type`` refines 200s."""
    if status_code in _BY_STATUS:
        return _BY_STATUS[status_code]
    if status_code >= 500:
        return InternalServerError
    if error_type is not None and error_type in _BY_TYPE:
        return _BY_TYPE[error_type]
    if status_code < 300:
        return InvalidRequestError
    return APIStatusError


class CoordinatorUnavailableError(GPTunnelError):
    """The PostgreSQL server that coordinates several processes cannot be reached (shared limits
    or a shared batch); nothing was sent on its account."""


class JournalUnavailableError(JournalError, CoordinatorUnavailableError):
    """A shared journal's PostgreSQL was lost mid-run and not back within the journal's
    ``outage_timeout``: the run ends. No create left unrecorded; a rerun resumes the batch."""


class JournalAwayError(JournalError):
    """Internal to a run: the shared journal's database is away right now, so this create was
    not sent (its write-ahead could not be made); it is sent once the database is back."""

    may_have_been_created = False


class JournalTakenOverError(JournalError):
    """Another run took this request over while this run was cut off from the shared journal
    (its liveness lock lapsed): this run neither sends nor writes it; that run reports it."""

    may_have_been_created = False
