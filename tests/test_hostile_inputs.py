"""Hostile inputs and links: unsafe result URLs, path escapes, oversized files, odd Unicode.

Each gets a clear typed error and writes nothing outside the target folder (the tmp tree is
checked). Hostile file hosts are ``httpx.MockTransport``s; the round trips that must be
byte-identical run against the emulator over a real loopback socket.
"""

from __future__ import annotations

import functools
import json
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptunnel_async import AdaptivePolicy, AsyncGPTunnel, InvalidInputError, MediaTask, Poller
from gptunnel_async._errors import APIResponseValidationError
from gptunnel_async._validation import FIELD_MAX_JSON_CHARS
from gptunnel_async.catalog import PROMPT_MAX_LEN, prompt_limit
from gptunnel_async.download import (
    Downloader,
    DownloadError,
    FileTooLargeError,
    LinkPolicy,
    UnsafeLinkError,
)
from gptunnel_async.testing import DurationDist, Emulator, EmulatorConfig, run_in_thread, serve

KEY = "sk-hostile-inputs-0001"
TASK_ID = "65589df803761c00010775ae"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: httpx's own stream generators are left to the GC when a read stops early (the size cap);
#: trio reports that as a ResourceWarning (encode/httpx#3686), which is not what is tested here.
IGNORE_HTTPX_AGEN = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def tree(root: Path) -> list[str]:
    """Every path under ``root`` (files and folders), relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def done_task(url: str, task_id: str = TASK_ID) -> MediaTask:
    return MediaTask(id=task_id, status="done", url=url)


Route = Callable[[httpx.Request], httpx.Response]


def a_png(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})


def file_host(
    routes: dict[str, Route], seen: list[str], default: Route = a_png
) -> httpx.MockTransport:
    """A file host: ``routes`` by path, else ``default``; records every URL it was asked for."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return routes.get(request.url.path, default)(request)

    return httpx.MockTransport(handler)


@asynccontextmanager
async def https_client(
    routes: dict[str, Route] | None = None,
    *,
    default: Route = a_png,
    link_policy: LinkPolicy | None = None,
) -> AsyncIterator[tuple[AsyncGPTunnel, list[str]]]:
    """A client of ``https://api.test`` whose downloader fetches from a mocked file host."""
    seen: list[str] = []
    api_calls: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        api_calls.append(str(request.url))
        return httpx.Response(500)

    async with AsyncGPTunnel(
        KEY, base_url="https://api.test", transport=httpx.MockTransport(api)
    ) as client:
        policy = link_policy or client.downloader.link_policy
        await client.downloader.aclose()
        client._downloader = Downloader(
            http_client=httpx.AsyncClient(transport=file_host(routes or {}, seen, default)),
            link_policy=policy,
            retry_policy=client.downloader.retry_policy,
        )
        try:
            yield client, seen
        finally:
            await client.downloader._http.aclose()
    assert api_calls == []  # a download never talks to the API (and so never sends the key)


# -- links ------------------------------------------------------------------------------------

UNSAFE_LINKS = [
    "http://files.example.com/a.png",  # plain http
    "ftp://files.example.com/a.png",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "data:image/png;base64,iVBORw0KGgo=",
    "//files.example.com/a.png",
    "https:///a.png",
    "https://10.0.0.1/a.png",
    "https://172.16.5.4/a.png",
    "https://192.168.1.1/a.png",
    "https://169.254.169.254/latest/meta-data/",
    "https://100.100.100.200/latest/meta-data/",  # shared address space (a metadata service)
    "https://0.0.0.0/a.png",
    "https://[::]/a.png",
    "https://[fc00::1]/a.png",
    "https://[fe80::1]/a.png",
    "https://[::ffff:10.0.0.1]/a.png",
    "https://[::ffff:127.0.0.1]/a.png",
    "https://224.0.0.1/a.png",
    "https://127.0.0.1/a.png",
    "https://[::1]/a.png",
    "https://localhost/a.png",
    "https://LOCALHOST./a.png",  # a trailing dot still resolves to localhost
    "https://127.1/a.png",  # legacy IPv4 forms the resolver accepts for 127.0.0.1
    "https://2130706433/a.png",
    "https://0x7f000001/a.png",
    "https://0177.0.0.1/a.png",
    "https://10.1/a.png",
    "https://printer.local/a.png",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://api.localhost/a.png",
    "https://files.example.com/a.png\x00",
]


@pytest.mark.parametrize("url", UNSAFE_LINKS)
def test_unsafe_links_are_refused_by_the_default_policy(url: str) -> None:
    with pytest.raises(UnsafeLinkError):
        LinkPolicy().check(url)


@pytest.mark.parametrize(
    "url",
    ["https://10.0.0.1/a.png", "http://192.168.0.2/a.png", "http://10.1/a.png"],
)
def test_opting_into_http_or_loopback_never_opens_private_addresses(url: str) -> None:
    with pytest.raises(UnsafeLinkError):
        LinkPolicy(allow_insecure=True, allow_loopback=True).check(url)


def test_plain_http_needs_an_explicit_opt_in_and_loopback_needs_the_emulator() -> None:
    assert LinkPolicy(allow_insecure=True).check("http://files.example.com/a.png")
    assert LinkPolicy(allow_loopback=True).check("http://127.0.0.1:8787/files/a.png")
    assert LinkPolicy().check("https://files.example.com/a.png")
    with pytest.raises(UnsafeLinkError):
        LinkPolicy(allow_insecure=True).check("http://127.0.0.1:8787/files/a.png")


@pytest.mark.parametrize("url", UNSAFE_LINKS[:20])
@pytest.mark.anyio
async def test_client_download_refuses_unsafe_links_before_any_request(
    url: str, tmp_path: Path
) -> None:
    target = tmp_path / "out"
    async with https_client() as (client, seen):
        with pytest.raises(UnsafeLinkError):
            await client.download(done_task(url), target)
        with pytest.raises(UnsafeLinkError):
            await client.download_bytes(done_task(url))
    assert seen == []
    assert not target.exists() or tree(target) == []


@pytest.mark.anyio
async def test_the_emulators_loopback_links_are_refused_when_the_api_is_not_on_loopback(
    tmp_path: Path,
) -> None:
    """A loopback link is the emulator's only while the API itself is on loopback."""
    emu = Emulator(EmulatorConfig(time_scale=1000.0, seed=3))
    emu.config.durations["google-imagen-3"] = DurationDist.fixed(5.0)
    async with (
        serve(emu) as server,
        AsyncGPTunnel(
            KEY, base_url=server.url, poll_policy=AdaptivePolicy(clock_scale=1000.0)
        ) as local,
    ):
        task = await local.media.generate(model="google-imagen-3", prompt="a file")
        assert task.url is not None and task.url.startswith("http://127.0.0.1")
        (tmp_path / "ok").mkdir()
        saved = await local.download(task, tmp_path / "ok")  # the emulator's own link: fine
        assert saved.parent == tmp_path / "ok"
        files_before = emu.counters.requests_by_route["GET /files"]
        async with AsyncGPTunnel(KEY, base_url="https://api.test") as remote:
            assert remote.downloader.link_policy.allow_loopback is False
            with pytest.raises(UnsafeLinkError, match="loopback"):
                await remote.download(task, tmp_path / "refused")
        assert emu.counters.requests_by_route["GET /files"] == files_before  # nothing fetched
    assert tree(tmp_path) == ["ok", f"ok/{task.id}.webp"]


def redirect_to(location: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(302, headers={"location": location})


@pytest.mark.parametrize(
    "location",
    [
        "https://10.0.0.7/a.png",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/a.png",
        "https://127.1/a.png",
        "http://files.example.com/a.png",
        "file:///etc/passwd",
        "gopher://files.example.com/",
    ],
)
@pytest.mark.anyio
async def test_a_redirect_to_an_unsafe_link_is_refused_and_not_followed(
    location: str, tmp_path: Path
) -> None:
    routes = {"/r": redirect_to(location)}
    async with https_client(routes) as (client, seen):
        with pytest.raises(UnsafeLinkError):
            await client.download(done_task("https://files.example.com/r"), tmp_path)
    assert seen == ["https://files.example.com/r"]  # only the first hop was requested
    assert tree(tmp_path) == []


@pytest.mark.anyio
async def test_a_redirect_loop_is_a_download_error(tmp_path: Path) -> None:
    routes = {"/loop": redirect_to("/loop")}
    async with https_client(routes) as (client, seen):
        with pytest.raises(DownloadError, match="redirects"):
            await client.download(done_task("https://files.example.com/loop"), tmp_path)
    assert 1 < len(seen) <= 10
    assert tree(tmp_path) == []


@pytest.mark.anyio
async def test_a_safe_redirect_is_followed(tmp_path: Path) -> None:
    routes = {"/r": redirect_to("https://cdn.example.com/final.png")}
    async with https_client(routes) as (client, _):
        path = await client.download(done_task("https://files.example.com/r"), tmp_path)
    assert path == tmp_path / f"{TASK_ID}.png"
    assert path.read_bytes() == PNG


def oversized(total: int, *, declare: bool) -> Callable[[httpx.Request], httpx.Response]:
    piece = b"\x89PNG" + b"\0" * (64 * 1024 - 4)

    async def chunks() -> AsyncIterator[bytes]:
        sent = 0
        while sent < total:
            sent += len(piece)
            yield piece

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "image/png"}
        if declare:
            headers["content-length"] = str(total)
        return httpx.Response(200, headers=headers, content=chunks())

    return handler


@IGNORE_HTTPX_AGEN
@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
@pytest.mark.anyio
async def test_a_file_over_the_size_cap_is_refused_and_leaves_nothing(
    declare: bool, tmp_path: Path
) -> None:
    routes = {"/big.png": oversized(5 * 1024 * 1024, declare=declare)}
    task = done_task("https://files.example.com/big.png")
    async with https_client(routes) as (client, _):
        with pytest.raises(FileTooLargeError):
            await client.download(task, tmp_path / "out", max_bytes=1024 * 1024)
        with pytest.raises(FileTooLargeError):
            await client.download_bytes(task, max_bytes=1024 * 1024)
        with pytest.raises(FileTooLargeError):
            await client.download(task, tmp_path / "dir" / "named.png", max_bytes=1024 * 1024)
    assert tree(tmp_path) == ["dir"]  # the folder was made; no file, no .part left behind


@pytest.mark.anyio
async def test_a_body_that_does_not_match_its_content_encoding_is_a_download_error(
    tmp_path: Path,
) -> None:
    def corrupt(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "image/png", "content-encoding": "gzip"}
        return httpx.Response(200, content=b"not gzip at all", headers=headers)

    async with https_client({"/z.png": corrupt}) as (client, _):
        with pytest.raises(DownloadError, match="decoded"):
            await client.download(done_task("https://files.example.com/z.png"), tmp_path)
    assert tree(tmp_path) == []


# -- names that try to leave the output folder ------------------------------------------------

ESCAPING_IDS = [
    "../escaped",
    "../../escaped",
    "..",
    ".",
    "",
    "/etc/passwd",
    "/tmp/escaped",
    "a/../../escaped",
    "a/b",
    "a\\..\\escaped",
    "a\x00b",
    "abc\n",
    "abc\r\n",
    "~root",
    "a" * 129,
    "a" * 10_000,
    "ünïcode",
    "C:escaped",
]


@pytest.fixture
def arena(tmp_path: Path) -> tuple[Path, Path]:
    """``(root, target)``: downloads go to ``target``, two levels below ``root``."""
    root = tmp_path / "root"
    target = root / "out" / "deeper"
    target.mkdir(parents=True)
    return root, target


@contextmanager
def nothing_written(root: Path, target: Path) -> Iterator[None]:
    before = tree(root.parent)
    yield
    assert tree(root.parent) == before
    assert list(target.iterdir()) == []


@pytest.mark.parametrize("task_id", ESCAPING_IDS, ids=repr)
@pytest.mark.anyio
async def test_a_hostile_task_id_cannot_escape_the_output_folder(
    task_id: str, arena: tuple[Path, Path]
) -> None:
    root, target = arena
    task = done_task("https://files.example.com/a.png", task_id=task_id)
    async with https_client() as (client, seen):
        with nothing_written(root, target):
            with pytest.raises(InvalidInputError, match="task id"):
                await client.download(task, target)
            with pytest.raises(InvalidInputError, match="task id"):
                await task.bind(client).download(target)
            with pytest.raises(InvalidInputError, match="task id"):
                await client.media.result(task_id)
            with pytest.raises(InvalidInputError, match="task id"):
                await client.midjourney.result(task_id)
            with pytest.raises(InvalidInputError, match="task id"):
                await client.faceswap.result(task_id)
            with pytest.raises(InvalidInputError, match="task id"):
                await client.media.wait(task_id)
            async with Poller(client) as poller:
                with pytest.raises(InvalidInputError, match="task id"):
                    poller.add(task_id)
                with pytest.raises(InvalidInputError, match="task id"):
                    poller.add(task)
    assert seen == []  # nothing was requested


@pytest.mark.anyio
async def test_a_server_sent_task_id_that_escapes_is_refused_at_download(
    arena: tuple[Path, Path],
) -> None:
    """The id comes from the response this time: still checked before it names a file."""
    root, target = arena

    def api(request: httpx.Request) -> httpx.Response:
        body = {"id": "../../../escaped", "status": "done", "url": "https://files.example.com/a"}
        return httpx.Response(200, json=body)

    async with AsyncGPTunnel(
        KEY, base_url="https://api.test", transport=httpx.MockTransport(api)
    ) as client:
        with pytest.raises(APIResponseValidationError):  # not the task asked about
            await client.media.result(TASK_ID)
        task = await client.media.create(model="google-imagen-3", prompt="a fox")
        with nothing_written(root, target):
            with pytest.raises(InvalidInputError, match="task id"):
                await task.download(target)
            async with Poller(client) as poller:
                with pytest.raises(InvalidInputError, match="task id"):
                    poller.add(task)


@pytest.mark.parametrize("destination", ["a\x00b", "sub/a\x00b.png", "a\x00/"], ids=repr)
@pytest.mark.anyio
async def test_a_destination_with_a_nul_byte_is_a_typed_error(
    destination: str, arena: tuple[Path, Path]
) -> None:
    root, target = arena
    async with https_client() as (client, seen):
        with nothing_written(root, target), pytest.raises(InvalidInputError, match="NUL"):
            await client.download(
                done_task("https://files.example.com/a.png"), target / destination
            )
    assert seen == []


@pytest.mark.parametrize(
    "path",
    [
        "/x/..%2F..%2Fescaped.png",
        "/x/escaped.png%00.sh",
        "/x/a.png/../../../../escaped",
        "/x/.htaccess",
        "/x/a.%2e%2e",
    ],
)
@pytest.mark.anyio
async def test_the_link_path_never_chooses_the_folder(path: str, arena: tuple[Path, Path]) -> None:
    """The file name is the task id; the link only lends an extension, and only a plain one."""
    root, target = arena
    octet = {"content-type": "application/octet-stream"}

    def any_path(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=PNG, headers=octet)

    async with https_client(default=any_path) as (client, _):
        saved = await client.download(done_task("https://files.example.com" + path), target)
    assert saved.parent == target
    assert saved.name.startswith(TASK_ID)
    assert tree(root) == ["out", "out/deeper", f"out/deeper/{saved.name}"]


ids_strategy = st.one_of(
    st.text(max_size=140),
    st.text(alphabet="./\\\x00~-_aZ9", max_size=40),
    st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True),
)


@SETTINGS
@given(task_id=ids_strategy)
def test_any_task_id_either_names_a_file_inside_the_folder_or_is_refused(
    task_id: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("arena")
    target = root / "out"
    target.mkdir()

    async def go() -> Path | None:
        async with https_client() as (client, _):
            try:
                return await client.download(done_task("https://f.example.com/a", task_id), target)
            except InvalidInputError:
                return None

    saved = anyio.run(go)
    if saved is None:
        assert tree(root) == ["out"]
    else:
        assert saved == target / f"{task_id}.png"
        assert tree(root) == ["out", f"out/{task_id}.png"]


# -- prompts ----------------------------------------------------------------------------------


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: Strings the API can take: valid Unicode, not blank.
sendable = st.text(min_size=1, max_size=60).filter(lambda s: bool(s.strip()) and _encodable(s))
NASTY_PROMPTS = [
    "a fox 🦊 in the snow ❄️",
    "\u202eRTL override\u202c and עברית and العربية",
    "NUL \x00 inside",
    "line\r\nbreaks\tand\x0bcontrols\x7f",
    "\ufeffBOM first",
    "e\u0301 combining, \u200dZWJ 👩‍👩‍👧",
    "noncharacters \uffff \ufffe \U0010ffff",
    '"quotes" \\ backslashes \\" and {json}',
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 astral",
]


@pytest.mark.parametrize("prompt", NASTY_PROMPTS, ids=range(len(NASTY_PROMPTS)))
@pytest.mark.anyio
async def test_unicode_prompts_round_trip_byte_identically_over_a_socket(prompt: str) -> None:
    emu = Emulator(EmulatorConfig(time_scale=1000.0, seed=5))
    async with (
        serve(emu) as server,
        AsyncGPTunnel(KEY, base_url=server.url) as client,
    ):
        task = await client.media.create(model="google-imagen-3", prompt=prompt)
        grid = await client.midjourney.imagine(prompt)
    assert task.prompt == prompt
    assert emu.counters.creates_by_prompt[prompt] == 2
    assert list(emu.counters.creates_by_prompt) == [prompt]
    (seen,) = emu.counters.creates_by_prompt
    assert seen.encode("utf-8") == prompt.encode("utf-8")
    assert grid.id


@SETTINGS
@given(prompt=sendable)
def test_any_valid_unicode_prompt_round_trips_through_the_emulator(prompt: str) -> None:
    emu = Emulator(EmulatorConfig(time_scale=1000.0, seed=6))
    with run_in_thread(emu) as url:

        async def go() -> MediaTask:
            async with AsyncGPTunnel(KEY, base_url=url) as client:
                return await client.media.create(model="flux-dev", prompt=prompt)

        task = anyio.run(go)
    assert task.prompt == prompt
    assert dict(emu.counters.creates_by_prompt) == {prompt: 1}
    (seen,) = emu.counters.creates_by_prompt
    assert seen.encode("utf-8") == prompt.encode("utf-8")


LONE_SURROGATES = ["\ud800", "a\udfffb", "fox \udc80", "\ud83d", "🦊\ud83e"]


def _capture_api() -> tuple[httpx.MockTransport, list[bytes]]:
    sent: list[bytes] = []

    def api(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        return httpx.Response(200, json={"id": TASK_ID, "status": "idle"})

    return httpx.MockTransport(api), sent


@pytest.mark.parametrize("bad", LONE_SURROGATES, ids=repr)
@pytest.mark.anyio
async def test_a_lone_surrogate_is_refused_before_sending(bad: str) -> None:
    transport, sent = _capture_api()
    async with AsyncGPTunnel(KEY, base_url="https://api.test", transport=transport) as client:
        attempts: list[Callable[[], Any]] = [
            lambda: client.media.create(model="google-imagen-3", prompt=bad),
            lambda: client.media.create(model="no-such-model", prompt=bad),
            lambda: client.media.create(model="no-such-model", prompt="ok", ar=bad),
            lambda: client.media.create(model="gpt-image-1-low", prompt="ok", images=[bad]),
            lambda: client.media.create(model=bad, prompt="ok"),
            lambda: client.media.create_suno("ok", lyric=bad),
            lambda: client.media.generate_sync(prompt=bad),
            lambda: client.midjourney.imagine(bad),
        ]
        for attempt in attempts:
            with pytest.raises(InvalidInputError, match="surrogate"):
                await attempt()
    assert sent == []


@pytest.mark.anyio
async def test_a_lone_surrogate_in_an_extra_create_field_is_refused_before_sending() -> None:
    transport, sent = _capture_api()
    async with AsyncGPTunnel(KEY, base_url="https://api.test", transport=transport) as client:
        with pytest.raises(InvalidInputError):
            await client.media.create(model="no-such-model", prompt="ok", style="\ud800")
    assert sent == []


@SETTINGS
@given(prompt=st.text(max_size=40))
def test_any_prompt_is_sent_exactly_or_refused_with_invalid_input(prompt: str) -> None:
    transport, sent = _capture_api()

    async def go() -> str | None:
        async with AsyncGPTunnel(KEY, base_url="https://api.test", transport=transport) as c:
            try:
                await c.media.create(model="google-imagen-3", prompt=prompt)
            except InvalidInputError as exc:
                return str(exc)
        return None

    refused = anyio.run(go)
    if prompt.strip() and _encodable(prompt):
        assert refused is None
        (body,) = sent
        assert json.loads(body)["prompt"] == prompt
    else:
        assert refused is not None and "prompt" in refused
        assert sent == []


# -- prompt and field limits ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "limit", "named"),
    [
        ("suno", 400, "for model 'suno'"),  # documented [doc]
        ("google-imagen-3", PROMPT_MAX_LEN, "without a documented one"),  # known, no limit given
        ("a-model-from-next-week", PROMPT_MAX_LEN, "without a documented one"),  # unknown
    ],
)
@pytest.mark.anyio
async def test_a_prompt_over_its_models_limit_is_refused_naming_the_limit(
    model: str, limit: int, named: str
) -> None:
    assert prompt_limit(model) == limit
    transport, sent = _capture_api()
    async with AsyncGPTunnel(KEY, base_url="https://api.test", transport=transport) as client:
        with pytest.raises(InvalidInputError) as info:
            await client.media.create(model=model, prompt="x" * (limit + 1))
        assert f"{limit:,}" in str(info.value) and named in str(info.value)
        assert "\n" not in str(info.value) and len(str(info.value)) < 200
        assert sent == []
        await client.media.create(model=model, prompt="x" * limit)  # the limit itself is fine
    assert len(sent) == 1


@pytest.mark.anyio
async def test_a_200mb_prompt_is_refused_at_once_and_never_copied() -> None:
    """The length is checked before anything walks or encodes the text."""
    transport, sent = _capture_api()
    huge = "x" * (200 * 1024 * 1024)
    async with AsyncGPTunnel(KEY, base_url="https://api.test", transport=transport) as client:
        tracemalloc.start()
        try:
            for attempt in (
                lambda: client.media.create(model="flux-dev", prompt=huge),
                lambda: client.media.create(model="new-model", prompt=huge),
                lambda: client.midjourney.imagine(huge),
            ):
                with pytest.raises(InvalidInputError, match="characters long"):
                    await attempt()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 10 * 1024 * 1024
    assert sent == []


@pytest.mark.parametrize(
    "value",
    [
        "x" * (FIELD_MAX_JSON_CHARS + 1),
        ["x" * 1024] * 1100,
        functools.reduce(lambda inner, _: [inner], range(100_000), []),  # nested 100,000 deep
    ],
    ids=["long text", "long list", "deep"],
)
@pytest.mark.anyio
async def test_an_extra_field_that_is_huge_or_deep_is_a_clear_error(value: Any) -> None:
    transport, sent = _capture_api()
    async with AsyncGPTunnel(KEY, base_url="https://api.test", transport=transport) as client:
        with pytest.raises(InvalidInputError, match="style"):
            await client.media.create(model="new-model", prompt="ok", style=value)
    assert sent == []
