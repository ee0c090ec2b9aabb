"""What stands between the network and the app: request size and time limits, HEAD, the server.

* :class:`RequestLimits` (ASGI): the body is counted while it streams, so an upload over the limit
  is answered 413 as soon as it crosses it, chunked or not (nothing past the limit is read or
  spooled to disk); a body that does not arrive in ``body_timeout_s`` is answered 408.
* :class:`HeadAsGet` (ASGI): HEAD is answered on every GET route, with the GET's headers.
* :class:`RefuseWhenFull` (ASGI): an upload that would be refused 503 is refused before its body is
  read (45 parallel 20 MB uploads would otherwise spool 13 refused bodies to disk first).
* :func:`run_server`: uvicorn with a header timeout. A client that opens a connection and sends its
  request head slowly (or never) is answered 408 and dropped after ``header_timeout_s``; uvicorn's
  own keep-alive timer only runs between requests and stops at the first byte.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

import uvicorn
from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

CLOSE = {"Connection": "close"}    # the rest of the body is not read: the connection cannot be reused


class RequestLimits:
    def __init__(self, app: ASGIApp, max_bytes: int, body_timeout_s: float):
        self.app, self.max_bytes, self.body_timeout_s = app, max_bytes, body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            status, message = (413, self._too_big()) if length.isdigit() else (400, "invalid Content-Length header")
            await JSONResponse({"detail": message}, status, headers=CLOSE)(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        received, complete = 0, False

        async def limited() -> Message:
            nonlocal received, complete
            if complete:    # after the body only http.disconnect comes, and a download may take long
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise HTTPException(408, f"the request body did not arrive within {self.body_timeout_s:g} s",
                                    headers=CLOSE) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._too_big(), headers=CLOSE)
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, limited, send)

    def _too_big(self) -> str:
        return f"request body is over the {self.max_bytes / 2**20:.0f} MB limit"


class HeadAsGet:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


class RefuseWhenFull:
    """503 for a POST to ``path`` while ``full(app)`` gives a reason; the endpoint checks again as it
    creates the job (the check that holds the limit), so this only spares reading refused bodies."""

    def __init__(self, app: ASGIApp, path: str, full: Callable[[object], str | None]):
        self.app, self.path, self.full = app, path, full

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == self.path:
            reason = self.full(scope["app"])
            if reason is not None:
                await JSONResponse({"detail": reason}, 503, headers=CLOSE)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def header_timeout_protocol(header_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a timer from the connection (or the last response) to the end of
    the next request's head."""

    class HeaderTimeoutProtocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_timed_out)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            if not self.transport.is_closing():
                self.transport.write(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                                     b"Content-Length: 0\r\n\r\n")
                self.transport.close()

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:     # a request's head has arrived
                self._disarm()

        def on_response_complete(self) -> None:
            self._arm()                     # first: a pipelined request may start inside the call
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


def server_config(app: ASGIApp, host: str, port: int, header_timeout_s: float) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, http=header_timeout_protocol(header_timeout_s),
                          log_level="warning")


def run_server(app: ASGIApp, host: str, port: int, header_timeout_s: float) -> None:
    uvicorn.Server(server_config(app, host, port, header_timeout_s)).run()
