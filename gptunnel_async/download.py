"""Fetching result files: streamed, atomic, key-free, size-capped, time-capped, retried.

A result link is the only copy of something paid for, and it dies after 48 hours, so a download
must either leave a whole file under its final name or nothing at all: it streams into a
temporary file beside the target and renames it into place (a full disk or a folder without
write permission is a ``FileWriteError``, and leaves nothing behind). The file host is not
GPTunnel and is not trusted: the API key is never sent there (a separate HTTP client with no
credentials fetches files); links must be https (plain http only for loopback when the API
itself is on loopback, i.e. the emulator, or with ``allow_insecure=True``); a link or redirect
to, or resolving to, a non-public address is refused (``_links``); the body is inflated under
the size cap (``_inflate``); the whole transfer has a deadline that grows with the bytes
received (``DownloadDeadline``); and the file's extension comes from an allow-list of media
types, never from the link alone.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import anyio
import httpx

from ._errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    DownloadError,
    DownloadTimeoutError,
    FileTooLargeError,
    FileWriteError,
    GPTunnelError,
    InvalidInputError,
    LinkExpiredError,
    UnsafeLinkError,
)
from ._inflate import ACCEPT_ENCODING, read_inflated
from ._links import CheckedTransport, LinkPolicy, Resolver
from ._logs import logger
from ._retry import RetryPolicy, parse_retry_after
from ._validation import check_task_id

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
MAX_REDIRECTS = 5
#: The media types a result file may be saved as, and their extensions. Anything else (an
#: executable, a script, HTML) is saved as ``.bin``, whatever the link's name says.
MEDIA_TYPES = {
    "image/webp": ".webp",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/avif": ".avif",
    "image/bmp": ".bmp",
    "image/tiff": ".tiff",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/mp4": ".m4a",
    "audio/aac": ".aac",
    "audio/ogg": ".ogg",
    "audio/flac": ".flac",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
}
#: A link's suffix counts only for an untyped file, and only if it is a media suffix.
_UNTYPED = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_MEDIA_SUFFIXES = frozenset([*MEDIA_TYPES.values(), ".jpeg"])
#: Device names Windows reserves in every folder, whatever the extension ("CON.webp" too).
_RESERVED_STEMS = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{port}{n}" for port in ("COM", "LPT") for n in range(10)]
)


@dataclass(frozen=True)
class DownloadDeadline:
    """How long a whole download may take: ``grace`` seconds, plus one second for every
    ``min_rate`` bytes received so far, retries and their pauses included.

    A host that keeps a connection alive by trickling bytes is cut after about ``grace``
    seconds; a big file arriving at ``min_rate`` or faster is never cut. The read timeout
    alone cannot do this: it restarts with every byte.
    """

    grace: float = 60.0
    min_rate: float = 16 * 1024  # bytes per second

    def __post_init__(self) -> None:
        if not (self.grace > 0 and self.min_rate > 0):
            raise InvalidInputError("DownloadDeadline needs grace > 0 and min_rate > 0")

    def allowed(self, received: int) -> float:
        """Seconds the transfer may have taken once ``received`` bytes have arrived."""
        return self.grace + received / self.min_rate


def extension_for(content_type: str | None, url: str) -> str:
    """The extension for a file: from its media type if allowed, else ``.bin``.

    The link's suffix is used only for an untyped file (no type, or octet-stream), and only
    when it is itself a media suffix: a link ending in ``.exe`` or ``.html`` never names it.
    """
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in MEDIA_TYPES:
        return MEDIA_TYPES[kind]
    if kind in _UNTYPED:
        suffix = Path(urlsplit(url).path).suffix.lower()
        if suffix in _MEDIA_SUFFIXES:
            return ".jpg" if suffix == ".jpeg" else suffix
    return ".bin"


def safe_stem(stem: str) -> str:
    """``stem``, prefixed with ``_`` if Windows reserves it as a device name (``CON``, ``COM1``)."""
    return f"_{stem}" if stem.split(".")[0].upper() in _RESERVED_STEMS else stem


def result_url(task: Any) -> str:
    """The link of a finished task (media ``url``, Midjourney/FaceSwap ``result``)."""
    for attr in ("url", "result"):
        value = getattr(task, attr, None)
        if isinstance(value, str) and value:
            return value
    raise InvalidInputError(f"task {getattr(task, 'id', '?')} has no result link (is it done?)")


def check_not_expired(task: Any, *, now: datetime | None = None) -> None:
    expires_at = getattr(task, "expires_at", None)
    if isinstance(expires_at, datetime):
        current = now or datetime.now(timezone.utc)
        if current >= expires_at:
            raise LinkExpiredError(
                f"the result link of task {task.id} expired at {expires_at.isoformat()} "
                "(links live 48 h); the file cannot be fetched any more",
                task_id=getattr(task, "id", None),
            )


Sink = Callable[[bytes], Awaitable[None]]


class Downloader:
    """Fetches result files with its own credential-free HTTP client.

    The client it creates connects only to addresses ``link_policy`` accepts after resolving
    them (``CheckedTransport``); an ``http_client`` passed in is the caller's, and only the
    links' text is checked then.
    """

    def __init__(
        self,
        *,
        http_client: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        link_policy: LinkPolicy | None = None,
        retry_policy: RetryPolicy | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        deadline: DownloadDeadline | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.link_policy: LinkPolicy = link_policy or LinkPolicy()
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,  # a proxy would connect on our behalf, past the address check
            transport=CheckedTransport(self.link_policy, resolver=resolver),
        )
        self.retry_policy: RetryPolicy = retry_policy or RetryPolicy(max_retries=3)
        self.max_bytes = max_bytes
        self.deadline: DownloadDeadline = deadline or DownloadDeadline()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def fetch_bytes(
        self, url: str, *, max_bytes: int | None = None, deadline: DownloadDeadline | None = None
    ) -> tuple[bytes, str]:
        """The file's bytes and its extension (kept in memory: mind ``max_bytes``)."""
        chunks: list[bytes] = []

        async def sink(chunk: bytes) -> None:
            chunks.append(chunk)

        ext = await self._fetch(url, sink, max_bytes or self.max_bytes, chunks.clear, deadline)
        return b"".join(chunks), ext

    async def fetch_to(
        self,
        url: str,
        destination: Path,
        *,
        task_id: str,
        max_bytes: int | None = None,
        as_folder: bool = False,
        deadline: DownloadDeadline | None = None,
    ) -> Path:
        """Stream ``url`` into ``destination`` (a directory, or a file path) atomically.

        The file gets the permissions the umask gives a new file (like any file a program
        creates), and appears under its final name only when complete.
        """
        directory, stem, fixed_ext = _split_destination(destination, task_id, as_folder)
        await _on_disk(directory, _make_folder, directory)
        tmp, fd = await _on_disk(directory, _create_partial, directory, stem)
        try:

            async def sink(chunk: bytes) -> None:
                await _on_disk(tmp, _write_all, fd, chunk)

            def restart() -> None:
                try:
                    os.lseek(fd, 0, os.SEEK_SET)
                    os.ftruncate(fd, 0)
                except OSError as exc:
                    raise _write_error(tmp, exc) from None

            ext = await self._fetch(url, sink, max_bytes or self.max_bytes, restart, deadline)
            await _on_disk(tmp, os.fsync, fd)
            fd, closing = -1, fd
            await _on_disk(tmp, os.close, closing)
            final = directory / f"{stem}{fixed_ext or ext}"
            await _on_disk(final, os.replace, tmp, final)
        except BaseException:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_unlink_quietly, tmp)
            raise
        return final

    async def _fetch(
        self,
        url: str,
        sink: Sink,
        max_bytes: int,
        restart: Callable[[], None],
        deadline: DownloadDeadline | None,
    ) -> str:
        deadline = deadline or self.deadline
        started = anyio.current_time()
        received = 0
        with anyio.CancelScope(deadline=started + deadline.allowed(0)) as scope:

            async def counted(chunk: bytes) -> None:
                nonlocal received
                received += len(chunk)
                scope.deadline = started + deadline.allowed(received)
                await sink(chunk)

            failures = 0
            while True:
                try:
                    return await self._fetch_once(url, counted, max_bytes)
                except _Transient as transient:
                    failures += 1
                    if failures > self.retry_policy.max_retries:
                        raise transient.error from None
                    delay = self.retry_policy.delay_for(
                        transient.retry_after, self.retry_policy.delay_after(failures)
                    )
                    logger.debug("download failed (%s); retrying in %.2fs", transient.error, delay)
                    restart()
                    await anyio.sleep(delay)
        elapsed = anyio.current_time() - started
        raise DownloadTimeoutError(
            f"the file host sent {received} bytes in {elapsed:.1f} s, too slowly: a download "
            f"may take {deadline.grace:g} s plus 1 s per {deadline.min_rate:g} bytes received "
            "(see DownloadDeadline)"
        )

    async def _fetch_once(self, url: str, sink: Sink, max_bytes: int) -> str:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            target = self.link_policy.check(current)
            try:
                async with self._http.stream(
                    "GET", target, headers={"Accept-Encoding": ACCEPT_ENCODING}
                ) as response:
                    if response.is_redirect:
                        location = response.headers.get("location", "")
                        current = urljoin(str(target), location)
                        continue
                    _raise_for_file_status(response, current)
                    await read_inflated(response, max_bytes, sink, _too_large(max_bytes))
                    return extension_for(response.headers.get("content-type"), str(target))
            except (httpx.DecodingError, APIResponseValidationError) as exc:  # a corrupt body
                raise DownloadError(
                    f"the file host sent a body that cannot be decoded: {exc}"
                ) from None
            except httpx.TransportError as exc:
                raise _Transient(
                    APIConnectionError(f"download failed: {type(exc).__name__}: {exc}"), None
                ) from None
        raise DownloadError(f"more than {MAX_REDIRECTS} redirects fetching the result")


def _too_large(max_bytes: int) -> Callable[[int | None], GPTunnelError]:
    def error(declared: int | None) -> GPTunnelError:
        if declared is not None:
            return FileTooLargeError(f"file is {declared} bytes; the cap is {max_bytes}")
        return FileTooLargeError(f"file exceeds the cap of {max_bytes} bytes")

    return error


class _Transient(Exception):
    def __init__(self, error: GPTunnelError, retry_after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def _raise_for_file_status(response: httpx.Response, url: str) -> None:
    status = response.status_code
    if status < 300:
        return
    host = urlsplit(url).hostname
    if status in (403, 404, 410):
        raise LinkExpiredError(
            f"the file host answered {status} for the result link (on {host}): the link has "
            "expired or the file was deleted"
        )
    error = APIStatusError(f"the file host answered {status} (on {host})", status_code=status)
    if status in (408, 425, 429) or status >= 500:
        raise _Transient(error, parse_retry_after(response.headers))
    raise DownloadError(str(error), status_code=status)


def _split_destination(
    destination: Path, task_id: str, as_folder: bool = False
) -> tuple[Path, str, str | None]:
    """(directory, file stem, extension or None to pick from the content type)."""
    check_task_id(task_id)
    if "\x00" in str(destination):
        raise InvalidInputError(f"not a usable path (it contains a NUL byte): {destination!r}")
    if as_folder or destination.is_dir():
        return destination, safe_stem(task_id), None
    name = destination.name
    if name in ("", ".", ".."):
        raise InvalidInputError(f"not a usable file name: {destination}")
    suffix = destination.suffix
    return destination.parent, destination.stem if suffix else name, suffix or None


def remove_partial_downloads(folder: Path) -> int:
    """Delete temporary files a killed run left mid-download (``.<stem>.<random>.part``).

    They are never a result: a download is renamed into place only when complete (and a
    journal still says "done, not saved", so a resumed run fetches those files again).
    """
    removed = 0
    for partial in folder.glob(".*.part"):
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
            removed += 1
    return removed


async def _on_disk(where: Path, call: Callable[..., Any], *args: Any) -> Any:
    """Run a file operation in a thread; an OS error becomes a one-line ``FileWriteError``."""
    try:
        return await anyio.to_thread.run_sync(call, *args)
    except OSError as exc:
        raise _write_error(where, exc) from None


def _write_error(where: Path, exc: OSError) -> FileWriteError:
    return FileWriteError(f"cannot write {where}: {exc.strerror or type(exc).__name__}")


def _make_folder(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)


def _create_partial(directory: Path, stem: str) -> tuple[Path, int]:
    """A new hidden ``.<stem>.<random>.part`` file, created with the umask's permissions.

    (``mkstemp`` would make it 0600 whatever the umask says, and a web server running as
    another user could not serve the result.) ``O_EXCL`` also refuses to follow a symlink.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        path = directory / f".{stem}.{secrets.token_hex(4)}.part"
        try:
            return path, os.open(path, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name for {stem} in {directory}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _unlink_quietly(path: Path) -> None:
    # Cleanup must not replace the error being reported with one of its own.
    with contextlib.suppress(OSError):
        path.unlink()


__all__ = [
    "DEFAULT_MAX_BYTES",
    "MEDIA_TYPES",
    "DownloadDeadline",
    "DownloadError",
    "DownloadTimeoutError",
    "Downloader",
    "FileTooLargeError",
    "FileWriteError",
    "LinkExpiredError",
    "LinkPolicy",
    "UnsafeLinkError",
    "check_not_expired",
    "extension_for",
    "remove_partial_downloads",
    "result_url",
    "safe_stem",
]
