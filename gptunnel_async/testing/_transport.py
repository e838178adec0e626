"""An httpx transport that calls the emulator in-process: no socket, same behaviour."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

import httpx

from ._app import Emulator
from ._http import Request, Response


class EmulatorTransport(httpx.AsyncBaseTransport):
    """Use as ``httpx.AsyncClient(transport=EmulatorTransport(emu), base_url="http://emulator")``.

    A dropped connection raises ``httpx.RemoteProtocolError`` exactly as on a real socket.
    """

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        url = request.url
        ours = Request(
            method=request.method,
            path=url.path,
            query=dict(parse_qsl(url.query.decode("ascii"), keep_blank_values=True)),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            base_url=f"{url.scheme}://{url.netloc.decode('ascii')}",
            received=time.monotonic(),
        )
        answer = await self.emulator.handle(ours)
        if not isinstance(answer, Response):
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        headers = list(answer.headers)
        if not any(k == "content-length" for k, _ in headers):
            headers.append(("content-length", str(len(answer.body))))
        return httpx.Response(answer.status, headers=headers, content=answer.body, request=request)
