"""The entry store of the shared backend (a backends.Store): entries in Redis hashes, and the
follower that keeps this replica's memory LRU and FAISS index in step with the others'."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.backends import (
    LISTED,
    STORED_COLUMNS,
    Changes,
    PurgeFilter,
    StoreLimits,
    StoreUnavailable,
    entry_of,
    stored_row,
)
from gateway.entries import BodyCodec, Entry
from gateway.redis.flights import SharedFlights
from gateway.redis.link import (
    BLOCK_MS,
    BYTES,
    CHANGES,
    CHANGES_MAX,
    COMMAND_TIMEOUT,
    ENTRY,
    EPOCH,
    INDEX,
    REFRESH,
    RedisLink,
    StreamEvent,
    redis_client,
    stream_id,
)
from gateway.redis.scripts import HIT_LUA, PUT_LUA, REMOVE_LUA, SWEEP_LUA

log = logging.getLogger("cachegate.redis")

RETRY_SECONDS = 0.5
BATCH = 1000  # keys per pipelined read or removal script

FLOATS = frozenset({"created_at", "expires_at", "upstream_ms"})
INTS = frozenset({"prompt_tokens", "completion_tokens", "hits", "size", "compressed"})
BINARY = frozenset({"body", "vector", "request"})


def encode_entry(values: dict[str, Any], size: int) -> list[Any]:
    """HSET arguments (field, value, ...) of stored_row's values; None values are left out."""
    fields: list[Any] = []
    for name, value in values.items():
        if value is not None:
            fields += [name, value]
    return [*fields, "size", size]


def decode_value(name: str, raw: bytes) -> Any:
    if name in BINARY:
        return raw
    if name in FLOATS:
        return float(raw)
    if name in INTS:
        return int(raw)
    return raw.decode()


def decode_entry(fields: dict[bytes, bytes], codec: BodyCodec) -> Entry | None:
    """The entry of an HGETALL reply, or None when the hash is not a whole, intact entry."""
    try:
        values = {
            name: decode_value(name, fields[name.encode()])
            for name in STORED_COLUMNS
            if name.encode() in fields
        }
    except (TypeError, ValueError, UnicodeDecodeError):
        return None
    return entry_of(values, codec)


def decode_fields(names: Iterable[str], raw: list[bytes | None]) -> dict[str, Any]:
    return {
        name: decode_value(name, value)
        for name, value in zip(names, raw, strict=True)
        if value is not None
    }


class RedisStore:
    """The entry store of the shared backend."""

    def __init__(self, link: RedisLink, limits: StoreLimits, max_stale: float):
        self.link = link
        self.limits = limits
        self._codec = BodyCodec(limits.compress_min_bytes)
        self._max_stale = max_stale
        self.evictions: Counter[str] = Counter()  # by reason, evicted by this replica's puts
        client = link.client
        self._put = client.register_script(PUT_LUA)
        self._remove = client.register_script(REMOVE_LUA)
        self._sweep = client.register_script(SWEEP_LUA)
        self._hit = client.register_script(HIT_LUA)
        self._flights = SharedFlights(link)
        self._pending: list[Entry] = []
        self._hits: dict[str, tuple[int, float]] = {}  # key -> (count, last hit)
        self._writing: asyncio.Task | None = None
        self._changes: Changes | None = None
        self._follower: asyncio.Task | None = None
        self._last_event = "0-0"  # the last change event applied here
        self.count = 0  # entries and their bytes in Redis, as of the follower's last look
        self.bytes = 0

    @property
    def available(self) -> bool:
        return self.link.up

    async def claim_flight(self, key: str) -> str | None:
        return await self._flights.claim(key)

    async def release_flight(self, key: str, token: str) -> None:
        await self._flights.release(key, token)

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
        vectors: list[tuple[str, str, bytes]] = []  # at once: the index takes a partition whole
        async for keys in self._index_batches():
            rows = await self._fields(keys, ("context_key", "vector"))
            vectors.extend(
                (key, row["context_key"], row["vector"])
                for key, row in zip(keys, rows, strict=True)
                if "vector" in row and "context_key" in row
            )
        self._changes.load(vectors)
        self.link.epoch = epoch
        self._last_event = cast(bytes, mark).decode()

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
            pipe.get(EPOCH)
            pipe.xrange(CHANGES, count=1)
            pipe.zcard(INDEX)
            pipe.get(BYTES)
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
        reply = cast(
            list[tuple[bytes, list[StreamEvent]]],
            await self.link.blocking.xread(
                {CHANGES: self._last_event}, count=BATCH, block=BLOCK_MS
            ),
        )
        if reply:
            await self._apply(reply[0][1])

    async def _apply(self, events: list[StreamEvent]) -> None:
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
            fields = cast(dict[bytes, bytes], await self.link.client.hgetall(ENTRY + key))
        except RedisError as exc:
            self.link.failed(exc)
            return None
        if not fields:
            return None
        entry = decode_entry(fields, self._codec)
        if entry is None:
            log.warning("entry %s is damaged in redis; deleting it", key)
            with contextlib.suppress(StoreUnavailable):
                await self.delete(PurgeFilter(key=key), now=0)
            return None
        return entry

    async def list_entries(
        self, namespace: str | None, limit: int, prompt: re.Pattern[str] | None = None
    ) -> list[dict[str, Any]]:
        """Entries newest first (by the end of their stale window), optionally of a
        namespace, or whose compared text `prompt` finds."""
        if not self.link.up:
            raise StoreUnavailable(f"redis at {self.link.name} is unreachable")
        found: list[dict[str, Any]] = []
        start = 0
        try:
            while len(found) < limit:
                members = cast(
                    list[bytes], await self.link.client.zrevrange(INDEX, start, start + BATCH - 1)
                )
                keys = [member.decode() for member in members]
                if not keys:
                    break
                start += len(keys)
                for key, row in zip(keys, await self._fields(keys, LISTED[1:]), strict=True):
                    if (
                        "created_at" in row
                        and (not namespace or row.get("namespace") == namespace)
                        and (prompt is None or prompt.search(row.get("text") or ""))
                    ):
                        found.append({"key": key, **{n: row.get(n) for n in LISTED[1:]}})
        except RedisError as exc:
            raise self._unavailable(exc, "cannot list entries") from None
        found.sort(key=lambda row: row["created_at"], reverse=True)
        return found[:limit]

    async def live_entries(self, now: float) -> AsyncIterator[Entry]:
        """Every intact entry still fresh at `now` (for export: reads, never writes)."""
        async for keys in self._index_batches():
            async with self.link.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(ENTRY + key)
                replies = await pipe.execute()
            for fields in replies:
                entry = decode_entry(fields, self._codec) if fields else None
                if entry is not None and entry.expires_at > now:
                    yield entry

    async def _fields(self, keys: list[str], names: tuple[str, ...]) -> list[dict[str, Any]]:
        return await entry_fields(self.link.client, keys, names)

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
            count, _ = self._hits.get(key, (0, now))
            self._hits[key] = (count + 1, now)
            self._schedule()

    async def claim_refresh(self, key: str, expires_at: float) -> bool:
        """Whether this replica refreshes the version of `key` expiring at `expires_at`:
        the first to set its lock, held until that expiry, does."""
        expiry_ms = int(expires_at * 1000)
        try:
            return bool(
                await self.link.client.set(
                    f"{REFRESH}{key}:{expiry_ms}", self.link.writer, nx=True, pxat=expiry_ms
                )
            )
        except RedisError as exc:
            self.link.failed(exc)
            return False

    def _schedule(self) -> None:
        if self._writing is None:
            self._writing = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        try:
            while self._pending or self._hits:
                pending, self._pending = self._pending, []
                hits, self._hits = self._hits, {}
                # An entry larger than the store could never fit: the rest are kept instead.
                rows = [stored_row(entry, self._codec) for entry in pending]
                rows = [(v, size) for v, size in rows if size <= self.limits.max_bytes]
                async with self.link.client.pipeline(transaction=False) as pipe:
                    for values, size in rows:
                        await self._put(args=self._put_args(values, size), client=pipe)
                    for key, (count, at) in hits.items():
                        await self._hit(args=[key, count, int(at * 1000)], client=pipe)
                    replies = await pipe.execute()
                for _, reasons in replies[: len(rows)]:
                    self.evictions.update(reason.decode() for reason in reasons)
        except RedisError as exc:
            self.link.failed(exc)
            self._pending, self._hits = [], {}
        finally:
            self._writing = None

    def _put_args(self, values: dict[str, Any], size: int) -> list[Any]:
        deadline_ms = int((values["expires_at"] + self._max_stale) * 1000)
        limits = self.limits
        return [
            values["key"],
            deadline_ms,
            size,
            limits.max_entries,
            limits.max_bytes,
            self.link.writer,
            values["context_key"] or "",
            values["tenant"],
            limits.max_entries_per_tenant or 0,
            limits.eviction,
            int(values["created_at"] * 1000),  # its last use: when it was stored
            values["hits"],
            *encode_entry(values, size),
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
                rows = await self._fields(keys, where.columns)
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


async def entry_fields(
    client: Redis, keys: list[str], names: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Some fields of many entries in one round trip; {} for an entry that is gone."""
    if not keys:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hmget(ENTRY + key, names)
        replies = await pipe.execute()
    return [decode_fields(names, raw) for raw in replies]


async def read_entry_fields(url: str) -> list[tuple[int, int, float]]:
    """(hits, size, expires_at) of every entry in the Redis at `url` (for `cachegate
    analyze`), read in pipelined batches."""
    client = redis_client(url, COMMAND_TIMEOUT)
    names = ("hits", "size", "expires_at")
    rows: list[dict[str, Any]] = []
    try:
        keys: list[str] = []
        async for member, _ in client.zscan_iter(INDEX, count=BATCH):
            keys.append(member.decode())
            if len(keys) >= BATCH:
                rows += await entry_fields(client, keys, names)
                keys = []
        rows += await entry_fields(client, keys, names)
    finally:
        await client.aclose()
    return [
        (row.get("hits", 0), row["size"], row["expires_at"])
        for row in rows
        if "size" in row and "expires_at" in row
    ]
