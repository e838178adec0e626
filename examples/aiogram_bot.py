"""A Telegram bot (aiogram 3) that draws a picture on ``/imagine [16:9] <prompt>``.

A generation takes seconds to minutes. The handler simply ``await``s it: while one chat waits,
aiogram keeps handling every other update (when polling, each update runs as its own task), so
one slow picture never blocks the other chats. The handler replies "working…", waits for
``client.media.generate(...)``, downloads the file with ``client.download_bytes`` and sends it
as a photo (the link itself would do for Telegram too, but an emulator's loopback link would
not, and the bytes also outlive the link's 48 hours).

One ``AsyncGPTunnel`` serves every chat: it is opened around the polling loop and handed to
handlers through the dispatcher's workflow data (``dispatcher["gptunnel"] = client``), which
aiogram injects into any handler that declares a ``gptunnel`` parameter.

Run it (the bot token comes from the environment and is kept out of the logs):

    TELEGRAM_BOT_TOKEN=123:abc python examples/aiogram_bot.py --offline   # images from the emulator
    TELEGRAM_BOT_TOKEN=123:abc GPTUNNEL_API_KEY=... python examples/aiogram_bot.py
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import BufferedInputFile, Message

from gptunnel_async import (
    AsyncGPTunnel,
    GPTunnelError,
    InsufficientBalanceError,
    InvalidInputError,
    TaskFailedError,
)
from gptunnel_async.testing import offline_client

MODEL = "google-imagen-3"
ASPECT_RATIO = re.compile(r"\d{1,2}:\d{1,2}")
log = logging.getLogger("imagine_bot")


async def imagine(message: Message, command: CommandObject, gptunnel: AsyncGPTunnel) -> None:
    """``/imagine [16:9] <prompt>``: generate one image and send it back to this chat."""
    prompt = (command.args or "").strip()
    ar: str | None = None
    first, _, rest = prompt.partition(" ")
    if ASPECT_RATIO.fullmatch(first) and rest.strip():  # an optional leading aspect ratio
        ar, prompt = first, rest.strip()
    if not prompt:
        await message.answer("Usage: /imagine [aspect ratio, e.g. 16:9] <what to draw>")
        return
    await message.answer("working…")
    try:
        # Awaiting here suspends only this update's task: other chats are served meanwhile.
        # The create is billed; the SDK checks the prompt locally first and never re-sends a
        # create that may have reached the server.
        task = await gptunnel.media.generate(model=MODEL, prompt=prompt, ar=ar, timeout=600)
        image = await gptunnel.download_bytes(task, max_bytes=20 * 1024 * 1024)
    except InvalidInputError as exc:
        await message.answer(f"I can't draw that: {exc}")
        return
    except TaskFailedError as exc:
        await message.answer(f"The generation failed: {exc.message}")
        return
    except InsufficientBalanceError:
        await message.answer("The drawing account is out of funds, sorry.")
        return
    except GPTunnelError:
        log.exception("generation for chat %s failed", message.chat.id)
        await message.answer("Something went wrong on the way; please try again later.")
        return
    # download_bytes does not say the file type; the link's suffix is a good enough hint.
    suffix = PurePosixPath(urlsplit(task.url or "").path).suffix or ".jpg"
    photo = BufferedInputFile(image, filename=f"{task.id}{suffix}")
    await message.answer_photo(photo, caption=prompt[:1024])


def build_dispatcher(client: AsyncGPTunnel) -> Dispatcher:
    """A dispatcher whose handlers get ``gptunnel`` (the shared client) injected."""
    dispatcher = Dispatcher()
    dispatcher["gptunnel"] = client  # workflow data: passed to every handler that asks for it
    router = Router(name="imagine")
    router.message.register(imagine, Command("imagine"))  # i.e. @router.message(Command(...))
    dispatcher.include_router(router)
    return dispatcher


@asynccontextmanager
async def open_client(offline: bool, time_scale: float) -> AsyncIterator[AsyncGPTunnel]:
    """The real API (key from GPTUNNEL_API_KEY), or the emulator on a loopback port."""
    if not offline:
        async with AsyncGPTunnel() as client:
            yield client
        return
    async with offline_client(time_scale=time_scale) as client:
        yield client


class RedactSecret(logging.Filter):
    """Replace a secret (here: the bot token, which is part of every Bot API URL) in log lines."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = message.replace(self.secret, "<bot token>"), None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks are formatted later, from the exception itself: format and scrub now.
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, text.replace(self.secret, "<bot token>")
        return True


async def run(token: str, offline: bool, time_scale: float) -> None:
    bot = Bot(token)
    async with open_client(offline, time_scale) as client:
        dispatcher = build_dispatcher(client)
        try:
            # handle_as_tasks=True (the default): each update runs in its own task, so awaiting
            # a generation never holds up another chat. tasks_concurrency_limit caps them.
            await dispatcher.start_polling(
                bot,
                handle_as_tasks=True,
                tasks_concurrency_limit=100,
                allowed_updates=dispatcher.resolve_used_update_types(),
            )
        finally:
            await bot.session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="An aiogram bot that draws on /imagine.")
    parser.add_argument("--offline", action="store_true", help="use the built-in emulator")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=float(os.environ.get("GPTUNNEL_EXAMPLE_TIME_SCALE", "20")),
        help="offline: how much faster than real time the emulator runs (default 20)",
    )
    args = parser.parse_args()
    token = os.environ.get("TELEGRAM_BOT_TOKEN", "").strip()
    if not token:
        sys.exit("set TELEGRAM_BOT_TOKEN (from @BotFather) to run the bot")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecret(token))  # on the handler: covers every logger's records
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    offline = args.offline or not os.environ.get("GPTUNNEL_API_KEY")
    log.info("generating with %s", "the offline emulator" if offline else "the GPTunnel API")
    asyncio.run(run(token, offline, args.time_scale if offline else 1.0))


if __name__ == "__main__":
    main()
