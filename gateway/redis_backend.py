"""The shared backend: entries, vectors and the ledger of every replica in one Redis.

Where things live (all under the prefix `cg:`; Redis 6 or later, no modules):

    cg:e:<key>    hash: one entry (the columns of store.COLUMNS plus `size`); its Redis TTL
                  ends `max_stale` after the entry expires, when nothing may serve it any more
    cg:index      sorted set: every entry key, scored by that deadline (ms); sweeps, purges,
                  listings and the start-up load walk it
    cg:sizes      hash: key -> size, and cg:bytes their sum (the store's size bound)
    cg:changes    stream of `add` (key, context_key, writer) and `remove` (keys) events;
                  every replica follows it to keep its memory LRU and FAISS index in step
    cg:ledger     stream: ledger rows (identical requests of a batch share one), every replica
    cg:epoch      a random id; a Redis that restarted empty has none (or another), and each
                  replica then drops what it holds locally and loads again

Writes that touch several keys run as Lua scripts, so a put, its size accounting, its change
event and any eviction are one atomic step. Entry writes are batched per event-loop turn
and never awaited by a request.

When Redis cannot be reached the link goes down (one log line): the cache reads nothing
(requests pass through), writes are dropped, ledger rows are buffered (bounded), and the
follower retries in the background. It brings the link up again once the local copies are
in step: after catching up on the change stream, or after a full reload when the epoch
changed or the stream no longer reaches back to the last event this replica saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Iterable
from string import Template
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway import ledger as ledger_sql
from gateway.entries import Entry
from gateway.ledger import Ledger, Record, merge_identical, query_stats, query_top_prompts
from gateway.store import COLUMNS, Changes, PurgeFilter, StoreUnavailable

if TYPE_CHECKING:
    from gateway.config import Config

log = logging.getLogger("cachegate.redis")

ENTRY = "cg:e:"
INDEX = "cg:index"
SIZES = "cg:sizes"
BYTES = "cg:bytes"
CHANGES = "cg:changes"
LEDGER = "cg:ledger"
EPOCH = "cg:epoch"

CHANGES_MAX = 100_000  # change events kept; a replica further behind reloads everything
LEDGER_MAX_ROWS = 1_000_000  # ledger rows kept in Redis (the window stats can cover)
LEDGER_BUFFER_ROWS = 100_000  # rows held while Redis is down; the oldest go first past this
CONNECT_TIMEOUT = 1.0
COMMAND_TIMEOUT = 2.0
BLOCK_MS = 1000  # the follower's XREAD wait; also how often it checks the epoch
RETRY_SECONDS = 0.5
BATCH = 1000  # keys per pipelined read or removal script
EVICT_STEP = 1000  # evictions per put at the most (the rest on later puts)

FLOATS = frozenset({"created_at", "expires_at", "upstream_ms"})
INTS = frozenset({"prompt_tokens", "completion_tokens", "hits", "size"})
BINARY = frozenset({"body", "vector"})
LISTED = ("key", "model", "namespace", "endpoint", "created_at", "expires_at", "hits", "size")
FILTERED = ("namespace", "model", "tenant", "created_at")

_NAMES = {
    "ENTRY": ENTRY,
    "INDEX": INDEX,
    "SIZES": SIZES,
    "BYTES": BYTES,
    "CHANGES": CHANGES,
    "CHANGES_MAX": CHANGES_MAX,
}
_REMOVE = """
local function remove(key)
  redis.call('DEL', '$ENTRY' .. key)
  local size = redis.call('HGET', '$SIZES', key)
  if size then
    redis.call('HDEL', '$SIZES', key)
    redis.call('DECRBY', '$BYTES', size)
  end
  return redis.call('ZREM', '$INDEX', key) == 1
end
local function announce(removed)
  if #removed > 0 then
    redis.call('XADD', '$CHANGES', 'MAXLEN', '~', $CHANGES_MAX, '*',
               'op', 'remove', 'keys', table.concat(removed, ' '))
  end
  return removed
end
"""
# ARGV: key, deadline ms, size, max entries, max bytes, writer, context key, then fields.
PUT_LUA = Template(
    _REMOVE
    + """
local key, deadline, size = ARGV[1], ARGV[2], tonumber(ARGV[3])
local old = tonumber(redis.call('HGET', '$SIZES', key) or '0')
redis.call('DEL', '$ENTRY' .. key)
redis.call('HSET', '$ENTRY' .. key, unpack(ARGV, 8))
redis.call('PEXPIREAT', '$ENTRY' .. key, deadline)
redis.call('ZADD', '$INDEX', deadline, key)
redis.call('HSET', '$SIZES', key, size)
redis.call('INCRBY', '$BYTES', size - old)
redis.call('XADD', '$CHANGES', 'MAXLEN', '~', $CHANGES_MAX, '*',
           'op', 'add', 'key', key, 'src', ARGV[6], 'ctx', ARGV[7])
local evicted = {}
while #evicted < $EVICT_STEP and (redis.call('ZCARD', '$INDEX') > tonumber(ARGV[4])
       or tonumber(redis.call('GET', '$BYTES') or '0') > tonumber(ARGV[5])) do
  local victim = redis.call('ZRANGE', '$INDEX', 0, 0)[1]
  if not victim then break end
  remove(victim)
  table.insert(evicted, victim)
end
return announce(evicted)
"""
).substitute(_NAMES, EVICT_STEP=EVICT_STEP)
# ARGV: the keys to remove.
REMOVE_LUA = Template(
    _REMOVE
    + """
local removed = {}
for _, key in ipairs(ARGV) do
  if remove(key) then table.insert(removed, key) end
end
return announce(removed)
"""
).substitute(_NAMES)
# ARGV: now (ms), how many at the most.
SWEEP_LUA = Template(
    _REMOVE
    + """
local removed = {}
for _, key in ipairs(redis.call('ZRANGEBYSCORE', '$INDEX', '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])) do
  if remove(key) then table.insert(removed, key) end
end
return announce(removed)
"""
).substitute(_NAMES)
# ARGV: key, count. Never creates a hash for an entry that is gone.
HIT_LUA = Template(
    """
if redis.call('EXISTS', '$ENTRY' .. ARGV[1]) == 1 then
  redis.call('HINCRBY', '$ENTRY' .. ARGV[1], 'hits', ARGV[2])
end
"""
).substitute(_NAMES)


def stream_id(value: bytes | str) -> tuple[int, int]:
    millis, _, seq = (value.decode() if isinstance(value, bytes) else value).partition("-")
    return int(millis), int(seq or 0)


def encode_entry(entry: Entry) -> list[Any]:
    """HSET arguments (field, value, ...) of an entry; None values are left out."""
    fields: list[Any] = []
    for name in COLUMNS:
        value = getattr(entry, name)
        if value is not None:
            fields += [name, value]
    return [*fields, "size", entry.size]


def decode_value(name: str, raw: bytes) -> Any:
    if name in BINARY:
        return raw
    if name in FLOATS:
        return float(raw)
    if name in INTS:
        return int(raw)
    return raw.decode()


def decode_entry(fields: dict[bytes, bytes]) -> Entry | None:
    """The entry of an HGETALL reply, or None when the hash is not a whole entry."""
    try:
        values = {
            name: decode_value(name, fields[name.encode()])
            for name in COLUMNS
            if name.encode() in fields
        }
        return Entry(**values)
    except (TypeError, ValueError, UnicodeDecodeError):
        return None


def decode_fields(names: Iterable[str], raw: list[bytes | None]) -> dict[str, Any]:
    return {
        name: decode_value(name, value)
        for name, value in zip(names, raw, strict=True)
        if value is not None
    }


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
        epoch = await self.client.get(EPOCH)
        assert epoch is not None
        return epoch

    async def close(self) -> None:
        for client in (self.client, self.blocking):
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()


class RedisStore:
    """The entry store of the shared backend: the methods and attributes of SqliteStore."""

    def __init__(self, link: RedisLink, max_entries: int, max_bytes: int, max_stale: float):
        self.link = link
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._max_stale = max_stale
        client = link.client
        self._put = client.register_script(PUT_LUA)
        self._remove = client.register_script(REMOVE_LUA)
        self._sweep = client.register_script(SWEEP_LUA)
        self._hit = client.register_script(HIT_LUA)
        self._pending: list[Entry] = []
        self._hits: dict[str, int] = {}
        self._writing: asyncio.Task | None = None
        self._changes: Changes | None = None
        self._follower: asyncio.Task | None = None
        self._last_event = "0-0"  # the last change event applied here
        self.count = 0  # entries and their bytes in Redis, as of the follower's last look
        self.bytes = 0

    @property
    def available(self) -> bool:
        return self.link.up

    # -- start and follow ---------------------------------------------------------------
    async def start(self, changes: Changes, oldest_expiry: float) -> None:
        """Load every vector and start following other replicas. A Redis that is down now
        does not stop the start: the follower loads once it answers."""
        self._changes = changes
        try:
            await self._sync()
            self.link.back()
            log.info("entries and analytics shared in redis at %s", self.link.name)
        except RedisError as exc:
            self.link.failed(exc)
        self._follower = asyncio.create_task(self._follow_forever())

    async def _sync(self) -> None:
        """Make the local copies match this Redis from scratch: claim the epoch, mark the
        change stream, drop what is held locally, load every vector, follow from the mark."""
        assert self._changes is not None
        self.link.epoch = None  # until the load is complete: an interrupted one starts over
        epoch = await self.link.claim_epoch()
        mark = await self.link.client.xadd(
            CHANGES, {"op": "sync", "src": self.link.writer}, maxlen=CHANGES_MAX, approximate=True
        )
        self._changes.reset()
        vectors = []  # loaded at once: the index takes each partition whole
        async for keys in self._index_batches():
            rows = await self._fields(keys, ("context_key", "vector"))
            vectors.extend(
                (key, row["context_key"], row["vector"])
                for key, row in zip(keys, rows, strict=True)
                if "vector" in row and "context_key" in row
            )
        self._changes.load(vectors)
        self.link.epoch = epoch
        self._last_event = mark.decode()

    async def _follow_forever(self) -> None:
        while True:
            try:
                await self._follow_once()
            except RedisError as exc:
                self.link.failed(exc)
                await asyncio.sleep(RETRY_SECONDS)
            except Exception:
                log.exception("following redis changes failed; retrying")
                await asyncio.sleep(RETRY_SECONDS)

    async def _follow_once(self) -> None:
        async with self.link.client.pipeline(transaction=False) as pipe:
            pipe.get(EPOCH).xrange(CHANGES, count=1).zcard(INDEX).get(BYTES)
            epoch, first, count, size = await pipe.execute()
        self.count, self.bytes = count, int(size or 0)
        missed = bool(first) and stream_id(first[0][0]) > stream_id(self._last_event)
        if epoch is None or epoch != self.link.epoch or missed:
            if self.link.up:
                log.warning(
                    "redis at %s %s: reloading the local copies",
                    self.link.name,
                    "lost its data" if epoch != self.link.epoch else "trimmed unseen changes",
                )
            self.link.up = False
            await self._sync()
        if not self.link.up:
            await self.link.client.connection_pool.disconnect(inuse_connections=False)
            self.link.back()
        reply = await self.link.blocking.xread(
            {CHANGES: self._last_event}, count=BATCH, block=BLOCK_MS
        )
        if reply:
            await self._apply(reply[0][1])

    async def _apply(self, events: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Replay other replicas' changes on the local memory LRU and index, in order."""
        assert self._changes is not None
        mine = self.link.writer.encode()
        semantic = [
            fields[b"key"].decode()
            for _, fields in events
            if fields.get(b"op") == b"add" and fields.get(b"src") != mine and fields.get(b"ctx")
        ]
        vectors = dict(
            zip(semantic, await self._fields(semantic, ("context_key", "vector")), strict=True)
        )
        for _, fields in events:
            op = fields.get(b"op")
            if op == b"add" and fields.get(b"src") != mine:
                key = fields[b"key"].decode()
                found = vectors.get(key, {})
                self._changes.learn(key, found.get("context_key"), found.get("vector"))
            elif op == b"remove":
                self._changes.forget(fields[b"keys"].decode().split())
        self._last_event = events[-1][0].decode()

    # -- reads --------------------------------------------------------------------------
    async def get(self, key: str) -> Entry | None:
        if not self.link.up:
            return None
        try:
            fields = await self.link.client.hgetall(ENTRY + key)
        except RedisError as exc:
            self.link.failed(exc)
            return None
        if not fields:
            return None
        entry = decode_entry(fields)
        if entry is None or not entry.intact():
            log.warning("entry %s is damaged in redis; deleting it", key)
            with contextlib.suppress(StoreUnavailable):
                await self.delete(PurgeFilter(key=key), now=0)
            return None
        return entry

    async def list(self, namespace: str | None, limit: int) -> list[dict[str, Any]]:
        """Entries newest first (by the end of their stale window), optionally of a namespace."""
        if not self.link.up:
            raise StoreUnavailable(f"redis at {self.link.name} is unreachable")
        found: list[dict[str, Any]] = []
        start = 0
        try:
            while len(found) < limit:
                members = await self.link.client.zrevrange(INDEX, start, start + BATCH - 1)
                keys = [member.decode() for member in members]
                if not keys:
                    break
                start += len(keys)
                for key, row in zip(keys, await self._fields(keys, LISTED[1:]), strict=True):
                    if "created_at" in row and (not namespace or row.get("namespace") == namespace):
                        found.append({"key": key, **{n: row.get(n) for n in LISTED[1:]}})
        except RedisError as exc:
            raise self._unavailable(exc, "cannot list entries") from None
        found.sort(key=lambda row: row["created_at"], reverse=True)
        return found[:limit]

    async def _fields(self, keys: list[str], names: tuple[str, ...]) -> list[dict[str, Any]]:
        """Some fields of many entries in one round trip; {} for an entry that is gone."""
        if not keys:
            return []
        async with self.link.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(ENTRY + key, names)
            replies = await pipe.execute()
        return [decode_fields(names, raw) for raw in replies]

    async def _index_batches(self) -> AsyncIterator[list[str]]:
        keys: list[str] = []
        async for member, _ in self.link.client.zscan_iter(INDEX, count=BATCH):
            keys.append(member.decode())
            if len(keys) >= BATCH:
                yield keys
                keys = []
        if keys:
            yield keys

    # -- writes (batched per event-loop turn, never awaited by a request) ----------------
    def put(self, entry: Entry) -> None:
        if self.link.up:
            self._pending.append(entry)
            self._schedule()

    def hit(self, key: str, now: float) -> None:
        if self.link.up:
            self._hits[key] = self._hits.get(key, 0) + 1
            self._schedule()

    def _schedule(self) -> None:
        if self._writing is None:
            self._writing = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        try:
            while self._pending or self._hits:
                pending, self._pending = self._pending, []
                hits, self._hits = self._hits, {}
                async with self.link.client.pipeline(transaction=False) as pipe:
                    for entry in pending:
                        await self._put(args=self._put_args(entry), client=pipe)
                    for key, count in hits.items():
                        await self._hit(args=[key, count], client=pipe)
                    await pipe.execute()
        except RedisError as exc:
            self.link.failed(exc)
            self._pending, self._hits = [], {}
        finally:
            self._writing = None

    def _put_args(self, entry: Entry) -> list[Any]:
        deadline_ms = int((entry.expires_at + self._max_stale) * 1000)
        return [
            entry.key,
            deadline_ms,
            entry.size,
            self._max_entries,
            self._max_bytes,
            self.link.writer,
            entry.context_key or "",
            *encode_entry(entry),
        ]

    async def flush(self) -> None:
        """Wait until the writes made so far have reached Redis (or were dropped)."""
        while self._writing is not None:
            await asyncio.shield(self._writing)

    async def delete(self, where: PurgeFilter, now: float) -> list[str]:
        """Remove matching entries everywhere (other replicas learn it from the change
        stream); returns their keys. Raises StoreUnavailable when Redis is down."""
        if not self.link.up:
            raise StoreUnavailable(f"redis at {self.link.name} is unreachable; nothing was purged")
        try:
            await self.flush()
            if where.key is not None:
                batches: AsyncIterator[list[str]] = _one_batch([where.key])
            else:
                batches = self._index_batches()
            matched: list[str] = []
            async for keys in batches:
                rows = await self._fields(keys, FILTERED)
                matched += [
                    key
                    for key, row in zip(keys, rows, strict=True)
                    if where.matches({**row, "key": key}, now)
                ]
            removed: list[str] = []
            for start in range(0, len(matched), BATCH):
                reply = await self._remove(args=matched[start : start + BATCH])
                removed += [key.decode() for key in reply]
        except RedisError as exc:
            raise self._unavailable(exc, "the purge stopped") from None
        return removed

    async def sweep(self, now: float, max_stale: float) -> list[str]:
        """Drop index entries past their stale window (Redis expired their hashes already)."""
        if not self.link.up:
            return []
        removed: list[str] = []
        try:
            while True:
                reply = await self._sweep(args=[int(now * 1000), BATCH])
                removed += [key.decode() for key in reply]
                if len(reply) < BATCH:
                    return removed
        except RedisError as exc:
            self.link.failed(exc)
            return removed

    def _unavailable(self, exc: RedisError, what: str) -> StoreUnavailable:
        self.link.failed(exc)
        return StoreUnavailable(f"redis at {self.link.name} failed ({exc}); {what}")

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        await self.flush()
        await self.link.close()


async def _one_batch(keys: list[str]) -> AsyncIterator[list[str]]:
    yield keys


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
            first = await client.xrange(LEDGER, count=1)
            if first:  # rows Redis trimmed are gone for every replica alike
                self.conn.execute("DELETE FROM requests WHERE id < ?", (row_id(first[0][0]),))
            while True:
                millis, seq = stream_id(self._last)
                batch = await client.xrange(LEDGER, min=f"{millis}-{seq + 1}", count=10_000)
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


MIRROR_INSERT = (
    f"INSERT OR IGNORE INTO requests (id, {', '.join(ledger_sql.COLUMNS)}, requests) "
    f"VALUES ({', '.join('?' * (len(ledger_sql.COLUMNS) + 2))})"
)


def mirror_row(fields: dict[bytes, bytes]) -> list:
    """A stream entry's row; entries written before rows counted requests stand for one."""
    row = orjson.loads(fields[b"r"])
    return row if len(row) > len(ledger_sql.COLUMNS) else [*row, 1]


class RedisLedger:
    """The ledger of the shared backend: the methods of Ledger, over the stream `cg:ledger`."""

    def __init__(self, link: RedisLink, flush_seconds: float) -> None:
        self.link = link
        self._flush_seconds = flush_seconds
        self._queue: deque[tuple] = deque(maxlen=LEDGER_BUFFER_ROWS)
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

    run = Ledger.run  # the same loop: flush every `flush_seconds` until cancelled

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

    async def close(self) -> None:
        await self.flush()
        if self._queue:
            log.warning("%d ledger rows not written: redis is unreachable", len(self._queue))
        self._mirror.close()


def open_redis(config: Config) -> tuple[RedisStore, RedisLedger]:
    """The store and the ledger of `config.backend` (redis://HOST:PORT/DB), on one link."""
    link = RedisLink(config.backend)
    store = RedisStore(link, config.max_entries, config.max_store_bytes, config.max_stale)
    return store, RedisLedger(link, config.ledger_flush_seconds)


async def read_shared_ledger(url: str) -> sqlite3.Connection:
    """Every ledger row in the Redis at `url`, in a private SQLite (for `cachegate stats`)."""
    client = redis_client(url, COMMAND_TIMEOUT)
    mirror = LedgerMirror()
    try:
        await mirror.catch_up(client, None)
    finally:
        await client.aclose()
    return mirror.conn
