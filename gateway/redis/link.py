"""One Redis for this process: the names of its keys, clients that fail fast, and whether
the cache may use it (the link goes down on the first connection failure anywhere)."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("cachegate.redis")

# Replies come as bytes (no client here decodes them); redis-py types every reply for
# either way, so the code that reads one casts it to what it is.
StreamEvent = tuple[bytes, dict[bytes, bytes]]

ENTRY = "cg:e:"
INDEX = "cg:index"
USED = "cg:used"
FREQ = "cg:freq"
SIZES = "cg:sizes"
BYTES = "cg:bytes"
OWNERS = "cg:owners"
TENANTS = "cg:tenants"
TENANT = "cg:t:"
CHANGES = "cg:changes"
LEDGER = "cg:ledger"
DAYS = "cg:days"  # the ledger's rolled-up days: JSON group -> JSON totals (ledger.DAY_*)
DAYS_THROUGH = "cg:days:through"  # the last ledger stream id rolled into DAYS
ROLL_UP_LOCK = "cg:lock:roll-up"  # held by the one replica rolling up
EPOCH = "cg:epoch"
REFRESH = "cg:refresh:"  # <key>:<expiry ms>: the replica refreshing that version
FLIGHT = "cg:flight:"
CHANGES_MAX = 100_000  # change events kept; a replica further behind reloads everything
CONNECT_TIMEOUT = 1.0
COMMAND_TIMEOUT = 2.0
BLOCK_MS = 1000  # the follower's XREAD wait; also how often it checks the epoch


def stream_id(value: bytes | str) -> tuple[int, int]:
    millis, _, seq = (value.decode() if isinstance(value, bytes) else value).partition("-")
    return int(millis), int(seq or 0)


def redis_client(url: str, socket_timeout: float) -> Redis:
    """A client that fails fast: no retries, so the first failure tells the link at once."""
    return Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=CONNECT_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )


class RedisLink:
    """One Redis for this process: its clients, its epoch, and whether the cache may use it.

    `up` turns False on the first connection failure anywhere (logged once) and True again
    only when the follower has reconnected and brought the local copies in step.
    """

    def __init__(self, url: str) -> None:
        try:
            self.client = redis_client(url, COMMAND_TIMEOUT)
            self.blocking = redis_client(url, BLOCK_MS / 1000 + COMMAND_TIMEOUT)
        except ValueError as exc:
            raise SystemExit(f"cannot use backend {url!r}: {exc}") from None
        kwargs = self.client.connection_pool.connection_kwargs
        self.name = (
            f"{kwargs.get('host', kwargs.get('path'))}:{kwargs.get('port', '')}"
            f"/{kwargs.get('db', 0)}"
        )
        self.writer = os.urandom(8).hex()  # tells this replica's change events from others'
        self.epoch: bytes | None = None
        self.up = False
        self._said_down = False
        self._last_error = ""

    def failed(self, exc: RedisError) -> None:
        """Note a failed command: connection trouble takes the link down, anything else is
        logged once per distinct message (the command's work is dropped either way)."""
        if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
            self.down(exc)
        elif str(exc) != self._last_error:
            self._last_error = str(exc)
            log.warning("redis at %s refused a command (%s); it was dropped", self.name, exc)

    def down(self, exc: Exception) -> None:
        if self.up or not self._said_down:
            log.warning(
                "redis at %s is unreachable (%s): passing requests through uncached and "
                "retrying in the background",
                self.name,
                exc,
            )
        self.up = False
        self._said_down = True

    def back(self) -> None:
        if self._said_down:
            log.info("redis at %s is back: caching again", self.name)
        self.up = True
        self._said_down = False
        self._last_error = ""

    async def claim_epoch(self) -> bytes:
        """The epoch of the Redis now answering, written first if it has none."""
        await self.client.set(EPOCH, os.urandom(8).hex(), nx=True)
        epoch = cast(bytes | None, await self.client.get(EPOCH))
        assert epoch is not None
        return epoch

    async def close(self) -> None:
        for client in (self.client, self.blocking):
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()
