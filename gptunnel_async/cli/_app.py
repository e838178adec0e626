"""The click commands: options in, one SDK call (or run) each, results out.

Each command resolves its options, then does its async work inside ``_session.run`` (one event
loop per invocation), so errors, Ctrl-C and exit codes are handled the same way everywhere.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._errors import InvalidInputError, NotFoundError, TaskTimeoutError
from .._version import __version__
from ..catalog import MODELS
from ._batch import JOURNAL_NAME, MANIFEST_NAME
from ._inputs import FORMATS, Defaults, InputFileError, detect_format, parse_params, scan
from ._interrupt import run_interruptibly
from ._logging import disable_debug, enable_debug
from ._manifest import manifest
from ._output import (
    balance_fields,
    catalogue_json,
    catalogue_table,
    clean_json,
    describe,
    echo,
    echo_json,
    record_table,
    remote_kind,
    remote_models_table,
    show,
    status,
)
from ._session import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    Settings,
    open_client,
    run,
)

if TYPE_CHECKING:
    from .. import AsyncGPTunnel, SharedLimits

# The SDK, anyio, rich and the emulator are imported inside the commands that use them, so
# ``gptunnel --help`` (and a usage error) costs click and little else.

DEFAULT_MODEL = "google-imagen-3"
KINDS = ("media", "midjourney", "faceswap", "bgremover")
#: Keyword arguments of ``media.generate`` that a ``--param`` must not shadow.
_RESERVED = frozenset({"model", "prompt", "ar", "images", "timeout", "on_progress"})


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--api-key", metavar="KEY", help="API key (default: $GPTUNNEL_API_KEY).")
@click.option("--base-url", metavar="URL", help="API base URL (default: $GPTUNNEL_BASE_URL).")
@click.option(
    "--offline", is_flag=True, help="Run against the built-in emulator (no key, no network)."
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging to stderr (key redacted).")
@click.option("--backend", type=click.Choice(["asyncio", "trio"]), default="asyncio", hidden=True)
@click.option(
    "--clock-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    hidden=True,
    help="The server runs this much faster than real time (emulators; offline time scale).",
)
@click.version_option(__version__, prog_name="gptunnel")
@click.pass_context
def cli(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    offline: bool,
    verbose: bool,
    backend: str,
    clock_scale: float | None,
) -> None:
    """GPTunnel media generation from the command line.

    \b
    Exit codes: 0 ok; 1 runtime/API error (or a batch with failures);
    2 usage/configuration error; 130 interrupted.
    """
    if offline and base_url:
        raise click.UsageError("--offline and --base-url exclude each other")
    if backend == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:
            raise CLIError("--backend trio needs trio: pip install trio", exit_code=2) from None
    settings = Settings(api_key, base_url, offline, verbose, backend, clock_scale)
    ctx.obj = settings
    if verbose:
        handler = enable_debug(settings.key)
        ctx.call_on_close(lambda: disable_debug(handler))


def _extra(params: tuple[str, ...]) -> dict[str, Any]:
    try:
        extra = parse_params(params)
    except InputFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--param") from None
    clash = _RESERVED.intersection(extra)
    if clash:
        raise click.BadParameter(f"use the option, not --param, for {sorted(clash)}")
    return extra


_json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of text."
)

OFFLINE_NOT_FOUND = (
    "With --offline each command runs its own emulator, which does not know the tasks of an "
    "earlier command. To keep tasks between commands, run `gptunnel emulator` in another "
    "shell and point GPTUNNEL_BASE_URL at it."
)


def wait_command(task_id: str, kind: str) -> str:
    """The command that picks a task up again: ``gptunnel wait ID`` (with its ``--kind``)."""
    return f"gptunnel wait {task_id}" + ("" if kind == "media" else f" --kind {kind}")


@contextmanager
def explained(settings: Settings, kind: str = "media") -> Iterator[None]:
    """Errors about one task, told in terms of this command line rather than the SDK's API."""
    try:
        yield
    except TaskTimeoutError as exc:
        task_id = exc.task_id or "?"
        if settings.offline:
            later = "offline, the emulator stops with this command, so the task is gone"
        else:
            later = f"it may still finish: {wait_command(task_id, kind)} picks it up"
        raise CLIError(f"timed out: task {task_id} did not finish in time; {later}") from None
    except NotFoundError as exc:
        if not settings.offline:
            raise
        raise CLIError(describe(exc), hint=OFFLINE_NOT_FOUND) from None


@cli.command()
@click.argument("prompt")
@click.option("-m", "--model", default=DEFAULT_MODEL, show_default=True, help="Model id.")
@click.option("--ar", help="Aspect ratio, e.g. 16:9 (checked against the catalogue).")
@click.option("--image", "images", multiple=True, metavar="URL", help="Input image (repeatable).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Extra body field.")
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for the file (named after the task id).",
)
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="Seconds to wait.")
@_json_option
@click.pass_obj
def generate(
    settings: Settings,
    prompt: str,
    model: str,
    ar: str | None,
    images: tuple[str, ...],
    params: tuple[str, ...],
    out: Path,
    timeout: float,
    as_json: bool,
) -> None:
    """Generate one PROMPT and save the file; prints its path."""
    extra = _extra(params)
    settings.require_key()
    created: list[str] = []  # the task id, printed the moment the create is answered

    async def go() -> tuple[Any, Path]:
        import anyio

        async with open_client(settings) as client:
            with status(f"generating with {model}…"), explained(settings):
                task = await client.media.create(
                    model=model, prompt=prompt, ar=ar, images=list(images) or None, **extra
                )
                created.append(task.id)  # no await between the answer and this line
                click.echo(f"created task {task.id}", err=True)
                task = await client.media.wait(task, timeout=timeout)
                await anyio.Path(out).mkdir(parents=True, exist_ok=True)
                return task, await task.download(out)  # every file (a Suno song: each track)

    try:
        task, path = run(settings, go)
    except CLIError as exc:  # failed or timed out after the create: the task is paid for
        told = f"gptunnel wait {created[0]}" in f"{exc.message} {exc.hint}" if created else True
        if not told and not settings.offline:
            exc.hint = "\n".join(filter(None, [exc.hint, _wait_hint(created[0], out)]))
        raise
    except click.exceptions.Exit:  # interrupted ("interrupted" is printed already)
        if created and not settings.offline:
            click.echo(_wait_hint(created[0], out), err=True)
        raise
    if as_json:
        echo_json({"task_id": task.id, "path": str(path), "url": getattr(task, "url", None)})
    else:
        echo(str(path))


def _wait_hint(task_id: str, out: Path) -> str:
    return f"task {task_id} was created (and billed); get it with: gptunnel wait {task_id} -o {out}"


@cli.command()
@click.argument("input_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out"),
    show_default=True,
    help="Folder for the files, the manifest and the journal.",
)
@click.option("-m", "--model", default=DEFAULT_MODEL, show_default=True, help="Default model.")
@click.option("--ar", help="Default aspect ratio.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Default extra field.")
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), help="Input format (default: by extension)."
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Simultaneous API requests (creates and polls).",
)
@click.option("--rps", type=click.FloatRange(min=0, min_open=True), help="Max requests per second.")
@click.option(
    "--max-pending",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Tasks created and not yet finished, at most.",
)
@click.option("--task-timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds.")
@click.option("--deadline", type=click.FloatRange(min=0, min_open=True), help="Whole run, s.")
@click.option(
    "--journal",
    metavar="PATH|URL",
    help=f"Resume journal (default: OUT/{JOURNAL_NAME}); a postgresql:// URL is a journal "
    "shared by every run of the batch, on any machine.",
)
@click.option(
    "--batch",
    "batch_name",
    metavar="NAME",
    help="A shared journal's batch (default: the input file's name and a hash of its content).",
)
@click.option(
    "--journal-outage-timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="A postgresql:// journal lost mid-run: creates wait this long for it (polls go on), "
    "then the run stops (default: 120).",
)
@click.option("--no-journal", is_flag=True, help="Do not keep a journal (no resume).")
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Manifest path (default: OUT/{MANIFEST_NAME}).",
)
@click.option("--no-progress", is_flag=True, help="No live progress bar.")
@click.option(
    "--limits",
    metavar="POSTGRESQL_URL",
    envvar="GPTUNNEL_LIMITS",
    help="Share --concurrency, --rps and 429 pauses with every process using this key and "
    "this database (e.g. postgresql://user@host/db; default: $GPTUNNEL_LIMITS).",
)
@click.pass_obj
def batch(
    settings: Settings,
    input_file: Path,
    out: Path,
    model: str,
    ar: str | None,
    params: tuple[str, ...],
    fmt: str | None,
    concurrency: int,
    rps: float | None,
    max_pending: int,
    task_timeout: float | None,
    deadline: float | None,
    journal: str | None,
    batch_name: str | None,
    journal_outage_timeout: float | None,
    no_journal: bool,
    manifest: Path | None,
    no_progress: bool,
    limits: str | None,
) -> None:
    """Generate every prompt of INPUT_FILE into a folder, with a manifest.jsonl.

    \b
    INPUT_FILE: text (one prompt a line), CSV (a 'prompt' column; optional
    'model', 'ar'; other columns are extra fields) or JSONL (one object a line).
    Rerun the same command to resume an interrupted batch.
    """
    defaults = Defaults(model=model, ar=ar, params=_extra(params))
    settings.require_key()
    shared = _shared_limits(settings, limits, concurrency, rps)
    try:
        kind = detect_format(input_file, fmt)
        total = scan(input_file, kind)
    except InputFileError as exc:
        raise CLIError(str(exc), exit_code=EXIT_USAGE) from None
    where: Path | str | None = None if journal is None else _journal_location(journal)
    if no_journal:
        where = None
    elif where is None:  # offline too: the emulator's tasks are kept beside the journal
        where = out / JOURNAL_NAME
    if isinstance(where, str) and batch_name is None:
        batch_name = _batch_name(input_file)
    from ..poller import PollerOptions
    from ._batch import BatchOptions

    opts = BatchOptions(
        source=input_file,
        fmt=kind,
        out=out,
        defaults=defaults,
        manifest=manifest or out / MANIFEST_NAME,
        journal=where,
        batch=batch_name,
        journal_outage_timeout=journal_outage_timeout,
        poller=PollerOptions(
            max_concurrency=concurrency,
            requests_per_second=None if shared else rps,  # with --limits: the shared budget
            task_timeout=task_timeout,
            deadline=deadline,
        ),
        max_pending=max_pending,
        progress=not no_progress,
    )

    async def go() -> Any:
        from ._batch import emulator_state, run_batch

        state = emulator_state(where) if isinstance(where, Path) else None
        async with open_client(settings, limits=shared, emulator_state=state) as client:
            return await run_batch(client, opts, total)

    hint = "interrupted: rerun the same command to resume" if where else "interrupted"
    summary = run(settings, go, interrupted=hint)
    resumed = f"; {summary.journal_note()}" if summary.resumed else ""
    if summary.elsewhere:
        resumed += f", {summary.elsewhere} done by other runs of the batch"
    echo(
        f"{summary.ok} ok, {summary.failed} failed of {summary.total}{resumed}; "
        f"manifest: {opts.manifest}",
        err=True,
    )
    for index, reason in summary.first_failures:  # the rest are in the manifest
        echo(f"  request {index}: {reason}", err=True)
    if summary.failed > len(summary.first_failures):
        echo(f"  … and {summary.failed - len(summary.first_failures)} more", err=True)
    if summary.failed:
        raise CLIError(f"{summary.failed} of {summary.total} requests failed (see the manifest)")


def _journal_location(text: str) -> Path | str:
    """A journal file, or (a URL or libpq string) a shared journal's location, kept as text."""
    conninfo = re.match(r"\s*(host|hostaddr|dbname|user|port|service)\s*=", text)
    return text if "://" in text or conninfo else Path(text)


def _batch_name(source: Path) -> str:
    """A batch named by its input: the same file on every machine names the same batch."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    return f"{source.name}-{digest}"


def _shared_limits(
    settings: Settings, url: str | None, concurrency: int, rps: float | None
) -> SharedLimits | None:
    """``--limits``: the budget of ``--concurrency``/``--rps`` shared through PostgreSQL."""
    if not url:
        return None
    if settings.offline:
        raise CLIError("--limits shares a real key's budget: not with --offline", exit_code=2)
    from .. import SharedLimits

    try:
        return SharedLimits(url, max_concurrency=concurrency, requests_per_second=rps)
    except InvalidInputError as exc:
        raise CLIError(str(exc), exit_code=EXIT_USAGE) from None


def _resource(client: AsyncGPTunnel, kind: str) -> Any:
    return getattr(client, kind)


def _task_fields(task: Any) -> dict[str, Any]:
    names = ("id", "status", "percent", "model", "prompt", "url", "result", "message", "error")
    fields = {name: getattr(task, name, None) for name in names}
    fields["expires_at"] = getattr(task, "expires_at", None)
    return fields


_kind_option = click.option(
    "--kind", type=click.Choice(KINDS), default="media", show_default=True, help="Task family."
)


@cli.command()
@click.argument("task_id")
@_kind_option
@click.option("--json", "as_json", is_flag=True, help="The raw task as JSON.")
@click.pass_obj
def result(settings: Settings, task_id: str, kind: str, as_json: bool) -> None:
    """Show a task's current state (one request)."""
    settings.require_key()

    async def go() -> Any:
        async with open_client(settings) as client:
            with explained(settings, kind):
                return await _resource(client, kind).result(task_id)

    task = run(settings, go)
    if as_json:
        click.echo(clean_json(task.model_dump_json(indent=2)))
    else:
        show(record_table(_task_fields(task)))


@cli.command()
@click.argument("task_id")
@_kind_option
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="Seconds.")
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Save the file here (prints its path); otherwise prints the link.",
)
@_json_option
@click.pass_obj
def wait(
    settings: Settings, task_id: str, kind: str, timeout: float, out: Path | None, as_json: bool
) -> None:
    """Wait for a task to finish; prints its link, or saves it with -o."""
    settings.require_key()

    async def go() -> tuple[str | None, Path | None]:
        import anyio

        async with open_client(settings) as client:
            with status(f"waiting for {task_id}…"), explained(settings, kind):
                task = await _resource(client, kind).wait(task_id, timeout=timeout)
                url = getattr(task, "url", None) or getattr(task, "result", None)
                if out is None:
                    return (str(url) if url else None), None
                await anyio.Path(out).mkdir(parents=True, exist_ok=True)
                return (str(url) if url else None), await task.download(out)

    url, path = run(settings, go)
    if as_json:
        echo_json({"task_id": task_id, "url": url, "path": None if path is None else str(path)})
    else:
        echo(str(path) if path is not None else (url or ""))


@cli.command()
@click.option("--wallet", is_flag=True, help="The personal wallet instead of the organisation.")
@_json_option
@click.pass_obj
def balance(settings: Settings, wallet: bool, as_json: bool) -> None:
    """Show the balance (rubles)."""
    settings.require_key()

    async def go() -> Any:
        async with open_client(settings) as client:
            return await client.balance(use_wallet_balance=wallet)

    fields = balance_fields(run(settings, go))
    if as_json:
        echo_json(fields)
    else:
        show(record_table(fields, "wallet balance" if wallet else "organisation balance"))


@cli.command()
@click.option("--remote", is_flag=True, help="The API's GET /v1/models instead (mostly chat).")
@_json_option
@click.pass_obj
def models(settings: Settings, remote: bool, as_json: bool) -> None:
    """List the media models the SDK knows (no key needed), or the API's with --remote.

    \b
    The API's list holds chat models too (kind 'chat'), which the media API refuses.
    """
    if not remote:
        if as_json:
            echo_json(catalogue_json(MODELS.values()))
        else:
            show(catalogue_table(MODELS.values()))
        return
    settings.require_key()

    async def go() -> Any:
        async with open_client(settings) as client:
            return await client.models()

    listed = run(settings, go)
    if as_json:
        echo_json(
            [{**m.model_dump(mode="json"), "kind": remote_kind(m.id, MODELS)} for m in listed]
        )
    else:
        show(remote_models_table(listed, MODELS))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback only.")
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True)
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Tasks run this many times faster than on the real service.",
)
@click.pass_obj
def emulator(settings: Settings, host: str, port: int, time_scale: float) -> None:
    """Serve the API emulator on a local port until Ctrl-C (then exit 0)."""

    def ready(url: str) -> None:
        click.echo(url)
        sys.stdout.flush()
        click.echo(
            f"emulator at {url} (time scale {time_scale:g}); in another shell:\n"
            f"  export GPTUNNEL_BASE_URL={url} GPTUNNEL_API_KEY=any\n"
            f"Ctrl-C stops it.",
            err=True,
        )

    import anyio

    from ._offline import serve_until_cancelled

    async def go() -> None:
        await serve_until_cancelled(
            host=host, port=port, time_scale=time_scale, api_keys=None, on_ready=ready
        )

    try:
        # Ctrl-C through the CLI's signal watcher: a bare KeyboardInterrupt surfaces as a
        # CancelledError out of asyncio's loop on Python 3.10
        anyio.run(run_interruptibly, go, backend=settings.backend)
    except KeyboardInterrupt:
        raise click.exceptions.Exit(EXIT_OK) from None
    except ValueError as exc:  # not a loopback host
        raise CLIError(str(exc), exit_code=EXIT_USAGE) from None
    except OSError as exc:  # e.g. the port is taken
        raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


cli.add_command(manifest)  # `gptunnel manifest`: a batch's manifest from its journal

__all__ = ["EXIT_ERROR", "cli"]
