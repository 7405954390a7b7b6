"""The ledger of the shared backend (a backends.Ledger): rows on the stream `cg:ledger`, and
a private SQLite copy of it, so the ledger's own SQL answers stats over every replica."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway import ledger as ledger_sql
from gateway.ledger import Record, merge_identical, query_latency, query_stats, query_top_prompts
from gateway.redis.link import (
    COMMAND_TIMEOUT,
    DAYS,
    DAYS_THROUGH,
    LEDGER,
    ROLL_UP_LOCK,
    RedisLink,
    StreamEvent,
    redis_client,
    stream_id,
)

log = logging.getLogger("cachegate.redis")

LEDGER_MAX_ROWS = 1_000_000  # ledger rows kept in Redis (the window stats can cover)
LEDGER_BUFFER_ROWS = 100_000  # rows held while Redis is down; the oldest go first past this
ROLL_UP_LOCK_MS = 300_000  # a replica that dies mid roll-up holds it no longer than this
DAY_COLUMNS = ("ts", *ledger_sql.DAY_GROUP, *ledger_sql.DAY_SUMS)
DAY_INSERT = (
    f"INSERT INTO day_totals ({', '.join(DAY_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(DAY_COLUMNS))})"
)
GROUP_WIDTH = 1 + len(ledger_sql.DAY_GROUP)  # a day-totals row: the day, the group, the sums


class LedgerMirror:
    """The shared ledger stream copied into a private SQLite database (a temporary file
    that SQLite deletes on close), so the ledger's own SQL runs over every replica's rows.
    Each query first copies the rows added since the last one."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect("", check_same_thread=False)
        ledger_sql.create_schema(self.conn)
        self._last = "0-0"
        self._epoch: bytes | None = None
        self._lock = asyncio.Lock()

    async def catch_up(self, client: Redis, epoch: bytes | None) -> None:
        async with self._lock:
            if epoch != self._epoch:  # another Redis (or it restarted empty): start over
                self.conn.execute("DELETE FROM requests")
                self._last, self._epoch = "0-0", epoch
            # At once: a roll-up moves rows from the stream into the days in one step too.
            async with client.pipeline(transaction=True) as pipe:
                pipe.xrange(LEDGER, count=1)
                pipe.hgetall(DAYS)
                pipe.get(DAYS_THROUGH)
                first, days, through = await pipe.execute()
            if first:  # rows Redis trimmed are gone for every replica alike
                self.conn.execute("DELETE FROM requests WHERE id < ?", (row_id(first[0][0]),))
            if through:  # rows rolled up: counted in the days from now on
                self.conn.execute("DELETE FROM requests WHERE id <= ?", (row_id(through),))
                if stream_id(through) > stream_id(self._last):
                    self._last = through.decode()
            self.conn.execute("DELETE FROM day_totals")
            self.conn.executemany(
                DAY_INSERT,
                [(*orjson.loads(group), *orjson.loads(sums)) for group, sums in days.items()],
            )
            while True:
                millis, seq = stream_id(self._last)
                batch = cast(
                    list[StreamEvent],
                    await client.xrange(LEDGER, min=f"{millis}-{seq + 1}", count=10_000),
                )
                if not batch:
                    return
                self.conn.executemany(
                    MIRROR_INSERT, [(row_id(event), *mirror_row(fields)) for event, fields in batch]
                )
                self._last = batch[-1][0].decode()

    def close(self) -> None:
        self.conn.close()


def row_id(event: bytes) -> int:
    """A stream id as one integer that sorts the same way."""
    millis, seq = stream_id(event)
    return millis << 20 | seq


# The fields of the first ledger rows (before `requests`, and every field added after it).
FIRST_FIELDS = 18
MIRROR_INSERT = (
    f"INSERT OR IGNORE INTO requests (id, {', '.join(ledger_sql.COLUMNS)}, requests) "
    f"VALUES ({', '.join('?' * (len(ledger_sql.COLUMNS) + 2))})"
)


def mirror_row(fields: dict[bytes, bytes]) -> list:
    """A stream entry's row: the Record's values, then `requests`. Replicas of earlier
    versions wrote fewer values: the Record's first FIRST_FIELDS and, before rows counted
    requests, no `requests` (those stand for one); the fields added since read as None."""
    row = orjson.loads(fields[b"r"])
    if len(row) == FIRST_FIELDS:
        row.append(1)
    *values, requests = row
    return [*values, *[None] * (len(ledger_sql.COLUMNS) - len(values)), requests]


class RedisLedger:
    """The ledger of the shared backend, over the stream `cg:ledger`."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self._queue: deque[Record] = deque(maxlen=LEDGER_BUFFER_ROWS)
        self._mirror = LedgerMirror()
        self._overflowed = False
        self._flushing = asyncio.Lock()  # a stats query waits for rows already on their way

    def record(self, record: Record) -> None:
        if len(self._queue) == self._queue.maxlen and not self._overflowed:
            self._overflowed = True
            log.warning(
                "ledger buffer full (%d rows) while redis is away: dropping the oldest rows",
                LEDGER_BUFFER_ROWS,
            )
        self._queue.append(record)

    async def flush(self) -> None:
        """Send the buffered rows; while Redis is away they stay buffered."""
        async with self._flushing:
            if not self._queue or not self.link.up:
                return
            records = list(self._queue)
            self._queue.clear()
            try:
                async with self.link.client.pipeline(transaction=True) as pipe:
                    for row in merge_identical(records):
                        pipe.xadd(
                            LEDGER,
                            {"r": orjson.dumps(row)},
                            maxlen=LEDGER_MAX_ROWS,
                            approximate=True,
                        )
                    await pipe.execute()
                self._overflowed = False
            except RedisError as exc:
                self.link.failed(exc)
                self._queue.extendleft(reversed(records))  # past the bound the newest go

    async def _caught_up(self) -> sqlite3.Connection:
        await self.flush()
        if self.link.up:
            try:
                await self._mirror.catch_up(self.link.client, self.link.epoch)
            except RedisError as exc:  # answer from the rows copied so far
                self.link.failed(exc)
        return self._mirror.conn

    async def stats(self, since: str | None, by: str | None) -> dict[str, Any]:
        return query_stats(await self._caught_up(), since, by)

    async def top_prompts(self, since: str | None, limit: int) -> list[dict[str, Any]]:
        return query_top_prompts(await self._caught_up(), since, limit)

    async def latency(self, since: str | None, bucket: str) -> dict[str, Any]:
        return query_latency(await self._caught_up(), since, bucket)

    async def roll_up(self, before: float) -> int:
        """Roll the stream's rows added before `before` into the day totals in Redis (one
        replica at a time, under a lock); how many rows went."""
        if not self.link.up:
            return 0
        await self.flush()
        client = self.link.client
        try:
            if not await client.set(ROLL_UP_LOCK, self.link.writer, nx=True, px=ROLL_UP_LOCK_MS):
                return 0  # another replica is at it
            try:
                return await self._roll_up(client, int(before * 1000))
            finally:
                await client.delete(ROLL_UP_LOCK)
        except RedisError as exc:
            self.link.failed(exc)
            return 0

    async def _roll_up(self, client: Redis, before_ms: int) -> int:
        # The ledger's own roll-up SQL, over the rows in a scratch database.
        scratch = sqlite3.connect("", isolation_level=None)  # roll_up runs its own transaction
        try:
            ledger_sql.create_schema(scratch)
            rolled, last, start = 0, None, "-"
            while True:
                batch = cast(
                    list[StreamEvent],
                    await client.xrange(LEDGER, min=start, max=f"({before_ms}-0", count=10_000),
                )
                if not batch:
                    break
                scratch.executemany(
                    MIRROR_INSERT, [(row_id(event), *mirror_row(fields)) for event, fields in batch]
                )
                rolled += len(batch)
                last = batch[-1][0]
                start = f"({last.decode()}"
            if last is None:
                return 0
            ledger_sql.roll_up(scratch, float("inf"))
            rows = scratch.execute(f"SELECT {', '.join(DAY_COLUMNS)} FROM day_totals").fetchall()
        finally:
            scratch.close()
        groups = [orjson.dumps(row[:GROUP_WIDTH]) for row in rows]
        before = cast(list[bytes | None], await client.hmget(DAYS, groups))
        no_sums = [0] * len(ledger_sql.DAY_SUMS)
        totals = {  # added to what earlier roll-ups left for the same day and group
            group: orjson.dumps(
                [
                    a + b
                    for a, b in zip(
                        row[GROUP_WIDTH:], orjson.loads(old) if old else no_sums, strict=True
                    )
                ]
            )
            for group, row, old in zip(groups, rows, before, strict=True)
        }
        millis, seq = stream_id(last)
        async with client.pipeline(transaction=True) as pipe:
            pipe.hset(DAYS, mapping=cast(dict, totals))
            pipe.set(DAYS_THROUGH, last)
            pipe.xtrim(LEDGER, minid=f"{millis}-{seq + 1}")
            await pipe.execute()
        return rolled

    async def close(self) -> None:
        await self.flush()
        if self._queue:
            log.warning("%d ledger rows not written: redis is unreachable", len(self._queue))
        self._mirror.close()


async def read_shared_ledger(url: str) -> sqlite3.Connection:
    """Every ledger row in the Redis at `url`, in a private SQLite (for `cachegate stats`)."""
    client = redis_client(url, COMMAND_TIMEOUT)
    mirror = LedgerMirror()
    try:
        await mirror.catch_up(client, None)
    finally:
        await client.aclose()
    return mirror.conn
