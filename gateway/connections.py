"""Client connections that hold a socket without sending a request are closed.

aiohttp closes an idle keep-alive connection after `keepalive_timeout` (our
`client_idle_timeout`), but has no deadline for a request's headers: a client that sends
half a header line and stops would hold its socket (and a slot of the process's file
descriptors) until that idle timeout, or for ever while it trickles a byte at a time.
ClientDeadlines closes a connection that has not sent complete request headers within
`client_header_timeout`: from the moment it connects, and from the first byte of each
later request on a kept-alive connection. (Bodies have their own deadline, between
chunks: Gateway.read_body.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler


class ClientDeadlines(RequestHandler):
    """aiohttp's connection handler with a deadline for request headers. It reads two of
    aiohttp's own fields: `_request_count` (requests whose headers were parsed) and
    `_waiter` (set while the connection waits for its next request)."""

    __slots__ = ("_header_deadline", "_header_timeout")

    def __init__(self, *args: Any, client_header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = client_header_timeout
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._expect_headers()

    def data_received(self, data: bytes) -> None:
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:
            self._drop_deadline()
        elif data and self._header_deadline is None and self._waiter is not None:
            self._expect_headers()  # the first bytes of the next request on this connection

    def connection_lost(self, exc: BaseException | None) -> None:
        self._drop_deadline()
        super().connection_lost(exc)

    def _expect_headers(self) -> None:
        self._header_deadline = self._loop.call_later(
            self._header_timeout, self._headers_late, self._request_count
        )

    def _drop_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self, parsed: int) -> None:
        self._header_deadline = None
        if self._request_count == parsed:
            self.force_close()


class DeadlineServer(web.Server):
    def __call__(self) -> RequestHandler:
        return ClientDeadlines(self, loop=self._loop, **self._kwargs)


class DeadlineRunner(web.AppRunner):
    """web.AppRunner whose connections are ClientDeadlines; takes `client_header_timeout`
    besides AppRunner's own arguments."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = DeadlineServer  # the app's own server, handing out ClientDeadlines
        return server
