"""Fetching result files: streamed, atomic, key-free, size-capped, retried.

A result link is the only copy of something paid for, and it dies after 48 hours, so a download
must either leave a whole file under its final name or nothing at all: it streams into a
temporary file beside the target and renames it into place. The file host is not GPTunnel: the
API key is never sent there (a separate HTTP client with no credentials fetches files), links
must be https (plain http only for loopback when the API itself is on loopback, i.e. the
emulator, or with ``allow_insecure=True``), and a link or redirect to a private address is
refused.
"""

from __future__ import annotations

import contextlib
import ipaddress
import mimetypes
import os
import re
import socket
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import anyio
import httpx

from ._errors import APIConnectionError, APIStatusError, GPTunnelError, InvalidInputError
from ._logs import logger
from ._retry import RetryPolicy, parse_retry_after
from ._validation import check_task_id

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
MAX_REDIRECTS = 5
_EXTENSIONS = {
    "image/webp": ".webp",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
}


class DownloadError(GPTunnelError):
    """A result file could not be fetched (after retries where retrying made sense)."""


class LinkExpiredError(DownloadError):
    """The result link has expired (48 h for media): the file is gone from the provider."""


class UnsafeLinkError(DownloadError, InvalidInputError):
    """A link (or a redirect) that the SDK refuses to follow: not https, or a private address."""


class FileTooLargeError(DownloadError):
    """The file is larger than the cap; nothing was written."""


@dataclass(frozen=True)
class LinkPolicy:
    """Which result links may be fetched. ``allow_loopback`` is on for the emulator."""

    allow_insecure: bool = False
    allow_loopback: bool = False

    def check(self, url: str) -> httpx.URL:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise UnsafeLinkError(f"not a valid URL: {url[:200]!r}") from exc
        host = parsed.host
        if parsed.scheme not in ("http", "https") or not host:
            raise UnsafeLinkError(f"refusing a non-http(s) link: {url[:200]!r}")
        loopback = _is_loopback(host)
        if loopback and not self.allow_loopback:
            raise UnsafeLinkError(f"refusing a link to a loopback address: {host}")
        if _is_private(host) and not loopback:
            raise UnsafeLinkError(f"refusing a link to a private address: {host}")
        if parsed.scheme == "http" and not (self.allow_insecure or loopback):
            raise UnsafeLinkError(
                f"refusing a plain-http link to {host} (pass allow_insecure=True to accept it)"
            )
        return parsed


_LEGACY_IPV4 = re.compile(r"[0-9a-fA-FxX.]+")


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    # The resolver also reads legacy IPv4 forms ("127.1", "2130706433", "0x7f000001"):
    # judge them by the address they really name.
    if _LEGACY_IPV4.fullmatch(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def _host_name(host: str) -> str:
    return host.lower().rstrip(".")  # "localhost." is localhost


def _is_loopback(host: str) -> bool:
    ip = _ip(host)
    return _host_name(host) == "localhost" if ip is None else ip.is_loopback


def _is_private(host: str) -> bool:
    """Literal private, link-local, reserved or unspecified addresses (names are not resolved)."""
    ip = _ip(host)
    if ip is None:
        return _host_name(host).endswith((".local", ".internal", ".localhost"))
    # not is_global also covers shared space 100.64/10 (a cloud metadata address lives there).
    return bool(
        ip.is_private
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_unspecified
        or ip.is_multicast
        or not ip.is_global
    )


def extension_for(content_type: str | None, url: str) -> str:
    """A file extension from the content type, else from the link's path, else ``.bin``."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in _EXTENSIONS:
        return _EXTENSIONS[kind]
    suffix = Path(urlsplit(url).path).suffix.lower()
    if suffix and len(suffix) <= 6 and suffix[1:].isalnum():
        return suffix
    guessed = mimetypes.guess_extension(kind) if kind else None
    return guessed or ".bin"


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


class Downloader:
    """Fetches result files with its own credential-free HTTP client."""

    def __init__(
        self,
        *,
        http_client: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        link_policy: LinkPolicy | None = None,
        retry_policy: RetryPolicy | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self.link_policy = link_policy or LinkPolicy()
        self.retry_policy = retry_policy or RetryPolicy(max_retries=3)
        self.max_bytes = max_bytes

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def fetch_bytes(self, url: str, *, max_bytes: int | None = None) -> tuple[bytes, str]:
        """The file's bytes and its extension (kept in memory: mind ``max_bytes``)."""
        chunks: list[bytes] = []

        async def sink(chunk: bytes) -> None:
            chunks.append(chunk)

        ext = await self._fetch(url, sink, max_bytes or self.max_bytes, chunks.clear)
        return b"".join(chunks), ext

    async def fetch_to(
        self,
        url: str,
        destination: Path,
        *,
        task_id: str,
        max_bytes: int | None = None,
        as_folder: bool = False,
    ) -> Path:
        """Stream ``url`` into ``destination`` (a directory, or a file path) atomically."""
        directory, stem, fixed_ext = _split_destination(destination, task_id, as_folder)
        await anyio.Path(directory).mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=".part", dir=directory)
        tmp = Path(tmp_name)
        handle = os.fdopen(fd, "wb")
        try:

            async def sink(chunk: bytes) -> None:
                await anyio.to_thread.run_sync(handle.write, chunk)

            def restart() -> None:
                handle.seek(0)
                handle.truncate()

            ext = await self._fetch(url, sink, max_bytes or self.max_bytes, restart)
            await anyio.to_thread.run_sync(_flush_and_sync, handle)
            handle.close()
            final = directory / f"{stem}{fixed_ext or ext}"
            await anyio.to_thread.run_sync(os.replace, tmp, final)
        except BaseException:
            handle.close()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_unlink_quietly, tmp)
            raise
        return final

    async def _fetch(self, url: str, sink: Any, max_bytes: int, restart: Any) -> str:
        failures = 0
        while True:
            try:
                return await self._fetch_once(url, sink, max_bytes)
            except (DownloadError, InvalidInputError):
                raise
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

    async def _fetch_once(self, url: str, sink: Any, max_bytes: int) -> str:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            target = self.link_policy.check(current)
            try:
                async with self._http.stream("GET", target) as response:
                    if response.is_redirect:
                        location = response.headers.get("location", "")
                        current = urljoin(str(target), location)
                        continue
                    _raise_for_file_status(response, current)
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > max_bytes:
                        raise FileTooLargeError(f"file is {declared} bytes; the cap is {max_bytes}")
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise FileTooLargeError(f"file exceeds the cap of {max_bytes} bytes")
                        await sink(chunk)
                    return extension_for(response.headers.get("content-type"), str(target))
            except httpx.DecodingError as exc:  # not a TransportError: a corrupt body
                raise DownloadError(
                    f"the file host sent a body that cannot be decoded: {exc}"
                ) from None
            except httpx.TransportError as exc:
                raise _Transient(
                    APIConnectionError(f"download failed: {type(exc).__name__}: {exc}"), None
                ) from None
        raise DownloadError(f"more than {MAX_REDIRECTS} redirects fetching the result")


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
        return destination, task_id, None
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


def _flush_and_sync(handle: Any) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


__all__ = [
    "DEFAULT_MAX_BYTES",
    "DownloadError",
    "Downloader",
    "FileTooLargeError",
    "LinkExpiredError",
    "LinkPolicy",
    "UnsafeLinkError",
    "check_not_expired",
    "extension_for",
    "remove_partial_downloads",
    "result_url",
]
