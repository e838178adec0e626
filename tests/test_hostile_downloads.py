"""Downloads against a hostile file host on loopback (``hostile_server``): bombs, tricklers,
names that resolve to loopback or private addresses, lying file types, disk errors.

Each attack is one the SDK once lost to: a 2 KB answer that inflated to gigabytes, a host that
kept a download alive for ever one byte at a time, ``localhost.localdomain`` passing for a
public host, a link ending in ``.exe`` saved as ``<id>.exe``, a full disk leaving a ``.part``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest
from anyio.streams.tls import TLSListener
from hostile_server import Request, hostile_server
from scripted_answers import Answer, gzip_layers, port_of, scripted, trickle

from gptunnel_async import AsyncGPTunnel, MediaTask, RetryPolicy
from gptunnel_async._errors import (
    APIConnectionError,
    APIResponseValidationError,
    DownloadError,
    DownloadTimeoutError,
    FileTooLargeError,
    FileWriteError,
    UnsafeLinkError,
)
from gptunnel_async._links import CheckedTransport, LinkPolicy, address_problem, parse_address
from gptunnel_async.download import DownloadDeadline, Downloader

KEY = "sk-hostile-downloads-0001"
TASK_ID = "0123456789abcdef01234567"
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 64
FAST_RETRY = RetryPolicy(max_retries=1, initial_delay=0.001, max_delay=0.002)
#: httpx's stream generators are left to the GC when a read stops early (a cap, a deadline, a
#: disk error); trio reports that as a ResourceWarning (encode/httpx#3686), not tested here.
#: Every attack here stops a read early, so the whole module carries the mark.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def task_for(url: str, task_id: str = TASK_ID) -> MediaTask:
    return MediaTask.model_validate({"id": task_id, "status": "done", "url": url})


def api_client(url: str) -> AsyncGPTunnel:
    """A client whose API is on loopback, so its downloader accepts loopback links."""
    return AsyncGPTunnel(KEY, base_url=url, retry_policy=FAST_RETRY, timeout=5.0)


def serving(body: bytes, content_type: str = "image/webp", **reply: object) -> Answer:
    return Answer(headers=[("content-type", content_type)], body=body, **reply)  # type: ignore[arg-type]


# -- one bounded inflater, downloads included --------------------------------------------------


@functools.lru_cache(maxsize=1)
def double_gzip_bomb() -> bytes:
    """256 MiB of zeros, gzipped twice: a few hundred bytes on the wire."""
    return gzip_layers(256 * 1024 * 1024, 2)


@pytest.mark.parametrize("to_memory", [False, True], ids=["to-a-folder", "to-memory"])
@pytest.mark.anyio
async def test_a_stacked_gzip_bomb_stops_at_the_cap_in_bounded_memory(
    tmp_path: Path, to_memory: bool
) -> None:
    bomb = double_gzip_bomb()
    assert len(bomb) < 10_000
    reply = Answer(
        headers=[("content-type", "image/webp"), ("content-encoding", "gzip, gzip")], body=bomb
    )
    async with (
        hostile_server(scripted(lambda _: reply)) as server,
        api_client(server.url) as client,
    ):
        task = task_for(f"{server.url}/files/bomb.webp")
        fetch = (
            client.download_bytes(task, max_bytes=1_000_000)
            if to_memory
            else client.download(task, f"{tmp_path}/out/", max_bytes=1_000_000)
        )
        tracemalloc.start()
        try:
            with pytest.raises(FileTooLargeError, match="1000000"):
                await fetch
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 8_000_000, f"peak {peak / 1e6:.1f} MB for a 1 MB cap"
    assert files(tmp_path / "out") == []


@pytest.mark.anyio
async def test_a_stacked_gzip_bomb_on_the_api_path_is_refused_in_bounded_memory() -> None:
    bomb = double_gzip_bomb()
    reply = Answer(
        headers=[("content-type", "application/json"), ("content-encoding", "gzip, gzip")],
        body=bomb,
    )
    async with (
        hostile_server(scripted(lambda _: reply)) as server,
        api_client(server.url) as client,
    ):
        tracemalloc.start()
        try:
            with pytest.raises(APIResponseValidationError, match="limit"):
                await client.media.result(TASK_ID)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 24_000_000, f"peak {peak / 1e6:.1f} MB for an 8 MB cap"


@pytest.mark.anyio
async def test_gzip_and_stacked_gzip_files_arrive_whole_and_three_layers_are_refused(
    tmp_path: Path,
) -> None:
    import gzip

    encodings = {"/one": ("gzip", gzip.compress(WEBP)), "/two": ("gzip, gzip", None)}
    encodings["/two"] = ("gzip, gzip", gzip.compress(gzip.compress(WEBP)))
    encodings["/three"] = ("gzip, gzip, gzip", gzip.compress(gzip.compress(gzip.compress(WEBP))))

    def handler(request: Request) -> Answer:
        encoding, body = encodings[request.path]
        return Answer(headers=[("content-type", "image/webp"), ("content-encoding", encoding)],
                     body=body)  # fmt: skip

    async with hostile_server(scripted(handler)) as server, api_client(server.url) as client:
        assert await client.download_bytes(task_for(f"{server.url}/one")) == WEBP
        assert await client.download_bytes(task_for(f"{server.url}/two")) == WEBP
        with pytest.raises(DownloadError, match="stacked"):
            await client.download(task_for(f"{server.url}/three"), tmp_path)
    assert files(tmp_path) == []


# -- a total deadline per download -------------------------------------------------------------


@pytest.mark.anyio
async def test_a_trickling_host_is_cut_by_the_deadline_long_before_the_file_is_done(
    tmp_path: Path,
) -> None:
    size = 400
    reply = serving(b"", pause=0.05)
    reply.body = trickle(WEBP + b"\x00" * (size - len(WEBP)))
    reply.length = size
    deadline = DownloadDeadline(grace=0.5, min_rate=1_000_000)
    host = scripted(lambda _: reply)
    async with hostile_server(host) as server, api_client(server.url) as client:
        with pytest.raises(DownloadTimeoutError, match="DownloadDeadline") as info:
            await client.download(task_for(f"{server.url}/slow.webp"), tmp_path, deadline=deadline)
        sent = host.sent
    assert isinstance(info.value, TimeoutError)
    assert "\n" not in str(info.value)
    assert 0 < sent < size // 2  # cut after about 10 of the 400 one-byte pieces
    assert files(tmp_path) == []


@pytest.mark.anyio
async def test_the_deadline_grows_with_the_bytes_received() -> None:
    """A file sent in pieces faster than ``min_rate`` finishes although it outlasts ``grace``."""
    pieces = [WEBP] + [b"\x00" * 4096] * 8
    reply = serving(b"", pause=0.05)
    reply.body = pieces
    deadline = DownloadDeadline(grace=0.1, min_rate=4096 / 0.2)  # 0.2 s allowed per piece
    async with (
        hostile_server(scripted(lambda _: reply)) as server,
        api_client(server.url) as client,
    ):
        downloader = client.downloader
        data, ext = await downloader.fetch_bytes(f"{server.url}/f", deadline=deadline)
    assert data == b"".join(pieces)
    assert ext == ".webp"


def test_a_deadline_needs_positive_figures() -> None:
    with pytest.raises(ValueError, match="grace"):
        DownloadDeadline(grace=0)
    with pytest.raises(ValueError, match="min_rate"):
        DownloadDeadline(min_rate=-1)


# -- the link policy judges the address connected to ------------------------------------------


def names_resolving_to_loopback() -> list[str]:
    """Names this machine resolves to loopback: the usual aliases and ``/etc/hosts``."""
    candidates = ["localhost.localdomain", "ip6-localhost", "ip6-loopback", socket.gethostname()]
    with contextlib.suppress(OSError):
        for line in Path("/etc/hosts").read_text().splitlines():
            fields = line.split("#", 1)[0].split()
            candidates += fields[1:]
    found = []
    for name in dict.fromkeys(candidates):
        if name.lower() == "localhost":
            continue  # refused by name already; the point is names that are not
        try:
            infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
        except OSError:
            continue
        ips = [parse_address(str(i[4][0]).split("%")[0]) for i in infos]
        if ips and all(ip is not None and ip.is_loopback for ip in ips):
            found.append(name)
    return found


@pytest.mark.anyio
async def test_names_that_resolve_to_loopback_are_refused_without_connecting() -> None:
    names = names_resolving_to_loopback()
    assert names, "no name on this machine resolves to loopback: nothing to test"
    async with hostile_server(scripted(lambda _: serving(WEBP))) as server:
        policy = LinkPolicy(allow_insecure=True)
        downloader = Downloader(link_policy=policy, retry_policy=FAST_RETRY)
        try:
            for name in names:
                with pytest.raises(UnsafeLinkError, match="loopback"):
                    await downloader.fetch_bytes(f"http://{name}:{port_of(server)}/f.webp")
        finally:
            await downloader.aclose()
        assert len(server.requests) == 0


RESOLVES_TO = {
    "files.svc": ["10.96.0.12"],
    "metadata.example": ["169.254.169.254"],
    "shared.example": ["100.100.100.200"],
    "sixtofour.example": ["2002:7f00:1::"],
    "sixtofour-private.example": ["2002:a00:1::1"],
    "mapped.example": ["::ffff:127.0.0.1"],
    "nat64.example": ["64:ff9b::a9fe:a9fe"],
    "teredo.example": ["2001:0:4136:e378:8000:63bf:3fff:fdd2"],
    "ula.example": ["fd00:ec2::254"],
    "compat.example": ["::7f00:1"],
    "one-bad-of-two.example": ["93.184.216.34", "127.0.0.1"],
    "reserved.example": ["240.0.0.1"],
    "zero.example": ["0.0.0.0"],
}


class TableResolver:
    """A resolver that answers from a table, and counts the lookups."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return list(self.table[host])


@pytest.mark.anyio
async def test_names_that_resolve_to_private_or_embedded_addresses_are_refused() -> None:
    resolver = TableResolver(RESOLVES_TO)
    policy = LinkPolicy(allow_insecure=True)
    async with hostile_server(scripted(lambda _: serving(WEBP))) as server:
        downloader = Downloader(link_policy=policy, resolver=resolver, retry_policy=FAST_RETRY)
        try:
            for name in RESOLVES_TO:
                with pytest.raises(UnsafeLinkError, match="resolves to"):
                    await downloader.fetch_bytes(f"http://{name}:{port_of(server)}/f.webp")
        finally:
            await downloader.aclose()
        assert len(server.requests) == 0
    assert resolver.lookups == list(RESOLVES_TO)


class Rebinding(TableResolver):
    """Loopback on the first lookup of a name, a private address on every later one."""

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return ["127.0.0.1"] if self.lookups.count(host) == 1 else ["10.0.0.1"]


@pytest.mark.anyio
async def test_the_connection_goes_to_the_address_that_was_checked() -> None:
    """``files.example`` exists only in the test's resolver: the file arrives, so the SDK
    connected to the address it judged, not to a second lookup of its own (DNS rebinding)."""
    resolver = Rebinding({})
    policy = LinkPolicy(allow_loopback=True, allow_insecure=True)
    async with hostile_server(scripted(lambda _: serving(WEBP))) as server:
        downloader = Downloader(link_policy=policy, resolver=resolver, retry_policy=FAST_RETRY)
        try:
            data, _ = await downloader.fetch_bytes(f"http://files.example:{port_of(server)}/f")
            assert data == WEBP
            # A second request looks the name up again, and meets the rebound answer.
            with pytest.raises(UnsafeLinkError, match="private"):
                await downloader.fetch_bytes(f"http://files.example:{port_of(server)}/f")
        finally:
            await downloader.aclose()
    assert resolver.lookups == ["files.example", "files.example"]
    assert len(server.requests) == 1
    assert server.requests[0].headers["host"] == f"files.example:{port_of(server)}"


@pytest.mark.anyio
async def test_a_redirect_to_a_name_resolving_to_a_private_address_is_refused(
    tmp_path: Path,
) -> None:
    resolver = TableResolver({"files.example": ["127.0.0.1"], "internal.svc": ["10.0.0.5"]})
    policy = LinkPolicy(allow_loopback=True, allow_insecure=True)

    def handler(request: Request) -> Answer:
        port = request.headers["host"].rsplit(":", 1)[1]  # the link's host name is kept
        return Answer(302, headers=[("location", f"http://internal.svc:{port}/steal")])

    async with hostile_server(scripted(handler)) as server:
        downloader = Downloader(link_policy=policy, resolver=resolver, retry_policy=FAST_RETRY)
        try:
            with pytest.raises(UnsafeLinkError, match=r"internal\.svc"):
                await downloader.fetch_to(
                    f"http://files.example:{port_of(server)}/a.webp", tmp_path, task_id=TASK_ID
                )
        finally:
            await downloader.aclose()
        assert len(server.requests) == 1  # the first hop only
    assert files(tmp_path) == []


@pytest.mark.parametrize(
    ("address", "loopback_ok", "refused"),
    [
        ("93.184.216.34", False, False),
        ("2606:2800:220:1:248:1893:25c8:1946", False, False),
        ("2002:5db8:d822::1", False, False),  # 6to4 of a public address
        ("127.0.0.1", True, False),
        ("::1", True, False),
        ("::ffff:127.0.0.1", True, False),
        ("127.0.0.1", False, True),
        ("::ffff:7f00:1", False, True),
        ("2002:7f00:1::", True, True),  # loopback through a 6to4 relay is never the emulator
        ("10.1.2.3", True, True),
        ("192.168.0.1", False, True),
        ("169.254.169.254", False, True),
        ("fe80::1", False, True),
        ("fd00:ec2::254", False, True),
        ("100.64.0.1", False, True),
        ("224.0.0.1", False, True),
        ("255.255.255.255", False, True),
        ("64:ff9b::7f00:1", False, True),
        ("64:ff9b::5db8:d822", False, False),  # NAT64 of a public address
    ],
)
def test_address_problem(address: str, loopback_ok: bool, refused: bool) -> None:
    ip = parse_address(address)
    assert ip is not None
    assert (address_problem(ip, allow_loopback=loopback_ok) is not None) == refused


# -- saved files: names and permissions --------------------------------------------------------

TYPES_AND_LINKS = [
    ("application/octet-stream", "/f/x.exe", ".bin"),
    ("application/x-sh", "/f/run.sh", ".bin"),
    ("text/html", "/f/page", ".bin"),
    ("text/html", "/f/page.html", ".bin"),
    ("application/octet-stream", "/f/model.pth", ".bin"),
    ("image/png", "/f/x.exe", ".png"),
    ("image/webp; charset=binary", "/f/x.html", ".webp"),
    ("application/octet-stream", "/f/x.webp", ".webp"),
    ("", "/f/x.JPEG", ".jpg"),
    ("video/mp4", "/f/x", ".mp4"),
    ("audio/mpeg", "/f/x", ".mp3"),
    ("application/x-msdownload", "/f/x.png", ".bin"),
]


@pytest.mark.anyio
async def test_the_extension_comes_from_an_allowed_media_type_never_the_link(
    tmp_path: Path,
) -> None:
    def handler(request: Request) -> Answer:
        content_type = TYPES_AND_LINKS[int(request.path.split("/")[1])][0]
        headers = [("content-type", content_type)] if content_type else []
        return Answer(headers=headers, body=WEBP)

    saved = []
    async with hostile_server(scripted(handler)) as server, api_client(server.url) as client:
        for i, (_, path, _) in enumerate(TYPES_AND_LINKS):
            task = task_for(f"{server.url}/{i}{path}", task_id=f"task{i}")
            saved.append(await client.download(task, tmp_path))
    assert [p.name for p in saved] == [f"task{i}{e}" for i, (_, _, e) in enumerate(TYPES_AND_LINKS)]


@pytest.mark.parametrize("task_id", ["CON", "nul", "COM1", "lpt9", "Aux", "PRN"])
@pytest.mark.anyio
async def test_reserved_device_names_are_made_safe(tmp_path: Path, task_id: str) -> None:
    async with (
        hostile_server(scripted(lambda _: serving(WEBP))) as server,
        api_client(server.url) as client,
    ):
        path = await client.download(task_for(f"{server.url}/f", task_id=task_id), tmp_path)
    assert path == tmp_path / f"_{task_id}.webp"
    assert path.read_bytes() == WEBP


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
@pytest.mark.anyio
async def test_files_get_the_permissions_the_umask_gives(tmp_path: Path, mask: int) -> None:
    async with (
        hostile_server(scripted(lambda _: serving(WEBP))) as server,
        api_client(server.url) as client,
    ):
        with umask(mask):
            path = await client.download(task_for(f"{server.url}/f"), tmp_path)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


# -- disk errors: one typed line, nothing left behind ------------------------------------------


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes past ``limit`` bytes fail with EFBIG, as they would with ENOSPC on a full disk."""
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)


@pytest.mark.anyio
async def test_a_disk_that_fills_up_mid_file_leaves_no_part_file(tmp_path: Path) -> None:
    body = WEBP + b"\x00" * (1024 * 1024)
    reply = serving(b"")
    reply.body = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    async with (
        hostile_server(scripted(lambda _: reply)) as server,
        api_client(server.url) as client,
    ):
        with file_size_limit(256 * 1024), pytest.raises(FileWriteError) as info:
            await client.download(task_for(f"{server.url}/f"), tmp_path)
    assert isinstance(info.value, OSError)
    assert "\n" not in str(info.value)
    assert "too large" in str(info.value).lower() or "space" in str(info.value).lower()
    assert files(tmp_path) == []


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process may not create files in (root ignores modes: use sysfs then)."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        return locked
    return Path("/sys")


@pytest.mark.anyio
async def test_a_folder_without_write_permission_is_a_one_line_typed_error(
    tmp_path: Path,
) -> None:
    folder = unwritable_folder(tmp_path)
    before = files(folder)
    async with (
        hostile_server(scripted(lambda _: serving(WEBP))) as server,
        api_client(server.url) as client,
    ):
        with pytest.raises(FileWriteError, match="cannot write") as info:
            await client.download(task_for(f"{server.url}/f"), folder)
        with pytest.raises(FileWriteError):
            await client.download(task_for(f"{server.url}/f"), folder / "deeper" / "x.webp")
    assert "\n" not in str(info.value)
    assert files(folder) == before


@pytest.mark.anyio
async def test_a_failing_download_never_blocks_the_next_one(tmp_path: Path) -> None:
    """After a disk error and a refused link, the same client still saves files."""
    async with (
        hostile_server(scripted(lambda _: serving(WEBP))) as server,
        api_client(server.url) as client,
    ):
        with file_size_limit(16), pytest.raises(FileWriteError):
            await client.download(task_for(f"{server.url}/f"), tmp_path)
        with pytest.raises(UnsafeLinkError):
            await client.download(task_for("https://10.0.0.1/x.webp"), tmp_path)
        path = await client.download(task_for(f"{server.url}/f"), tmp_path)
    assert files(tmp_path) == [path.name]


# -- https: the checked address is connected to, the link's name is verified -----------------


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for ``name`` only (no IP address in it), made with the openssl tool."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize("served_name", ["files.example", "other.example"])
@pytest.mark.anyio
async def test_https_goes_to_the_checked_address_and_verifies_the_links_name(
    tmp_path: Path, served_name: str
) -> None:
    cert, key = self_signed(tmp_path, served_name)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    seen: list[bytes] = []

    async def serve_one(stream: anyio.abc.ByteStream) -> None:
        async with stream:
            with contextlib.suppress(Exception):  # a refused handshake ends here
                seen.append(await stream.receive())
                await stream.send(b"HTTP/1.1 200 OK\r\ncontent-type: image/webp\r\n"
                                  b"content-length: %d\r\n\r\n" % len(WEBP) + WEBP)  # fmt: skip

    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = tcp.extra(anyio.abc.SocketAttribute.local_port)
    listener = TLSListener(tcp, server_ctx, standard_compatible=False)
    resolver = TableResolver({"files.example": ["127.0.0.1"]})
    transport = CheckedTransport(
        LinkPolicy(allow_loopback=True),
        resolver=resolver,
        inner=httpx.AsyncHTTPTransport(verify=client_ctx),
    )
    async with (
        listener,
        anyio.create_task_group() as tg,
        httpx.AsyncClient(transport=transport) as http,
    ):
        tg.start_soon(listener.serve, serve_one)
        downloader = Downloader(http_client=http, retry_policy=RetryPolicy(max_retries=0))
        url = f"https://files.example:{port}/a.webp"
        if served_name == "files.example":
            data, ext = await downloader.fetch_bytes(url)
            assert (data, ext) == (WEBP, ".webp")
            assert b"host: files.example" in seen[0].lower()
        else:  # a certificate for another name is refused, though the address was fine
            with pytest.raises(APIConnectionError, match="ConnectError"):
                await downloader.fetch_bytes(url)
            assert seen == []  # no request crossed the refused handshake
        tg.cancel_scope.cancel()
    assert resolver.lookups == ["files.example"]
