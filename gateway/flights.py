"""Single-flight: concurrent identical requests share one upstream call.

The first request for a key leads: it calls upstream and publishes what it receives
(status, headers, body chunks as they arrive). Followers replay that, chunk by chunk,
so a follower of a stream receives it as it is produced. A leader that fails passes
its error to every follower; nobody waits for a leader that is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable, Mapping

from multidict import CIMultiDict

from gateway.upstream import UpstreamError
from policies.pricing import Usage


class Flight:
    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: CIMultiDict = CIMultiDict()
        self.chunks: list[bytes] = []
        self.done = False
        self.error: Exception | None = None
        self.usage = Usage(0, 0)  # tokens of the answer
        self._changed = asyncio.Event()

    def start(self, status: int, headers: Mapping[str, str]) -> None:
        self.status = status
        self.headers = CIMultiDict(headers)
        self._pulse()

    def publish(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self._pulse()

    def finish(self, error: Exception | None = None) -> None:
        if not self.done:
            self.done, self.error = True, error
            self._pulse()

    def _pulse(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def started(self) -> None:
        """Wait until the leader has a status, or has failed (then raise its error)."""
        while self.status is None and not self.done:
            await self._changed.wait()
        if self.status is None:
            raise self.error or UpstreamError(
                502, "the identical request this one waited for ended without an answer; retry"
            )

    async def follow(self) -> AsyncIterator[bytes]:
        """The body chunks, as the leader receives them."""
        sent = 0
        while True:
            changed = self._changed
            while sent < len(self.chunks):
                yield self.chunks[sent]
                sent += 1
            if self.done:
                if self.error:
                    raise self.error
                return
            await changed.wait()


class Flights:
    """The flights in the air, by key and wire form (Decision.wire_form): a follower
    replays the leader's bytes, so only requests that want the same bytes share one."""

    def __init__(self) -> None:
        self._flights: dict[tuple[str, Hashable], Flight] = {}

    def join(self, key: str, form: Hashable) -> tuple[Flight, bool]:
        """The flight for this key and form, and whether the caller leads it."""
        flight = self._flights.get((key, form))
        if flight is not None:
            return flight, False
        flight = self._flights[(key, form)] = Flight()
        return flight, True

    def land(self, key: str, form: Hashable, error: Exception | None = None) -> None:
        flight = self._flights.pop((key, form), None)
        if flight:
            flight.finish(error)
