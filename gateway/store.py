"""The durable entry store of the embedded backend: one SQLite file (WAL) in the data dir.

Reads run on the event loop (a primary-key read is tens of microseconds, less than a
thread hop). Writes are queued and committed in batches by one writer thread, so a
response never waits for the disk. Every body carries a checksum that is checked on
read; a row that fails it, or cannot be read at all, is deleted, never served.

The cache is disposable, so the store never stops the gateway: a file that is not a
database at start is moved aside (datadir.set_aside) and a fresh one started; a disk that
cannot hold one (read-only, full) leaves the entries in memory for this run; writes that
fail are dropped (the memory tier still has those entries) and logged once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gateway.backends import (
    LISTED,
    STORED_COLUMNS,
    Changes,
    PurgeFilter,
    StoreLimits,
    StoreUnavailable,
    entry_of,
    regexp,
    stored_row,
)
from gateway.datadir import Complaints, set_aside
from gateway.entries import BodyCodec, Entry

log = logging.getLogger("cachegate.store")
HIT_FLUSH_SECONDS = 1.0
# Bound on the entries kept by a store that could not open its file (held in memory).
IN_MEMORY_MAX_BYTES = 256 * 2**20

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    namespace TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    body BLOB NOT NULL,
    checksum TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    upstream_ms REAL NOT NULL DEFAULT 0,
    context_key TEXT,
    text TEXT,
    vector BLOB,
    hits INTEGER NOT NULL DEFAULT 0,
    last_used_at REAL NOT NULL,
    size INTEGER NOT NULL,
    request BLOB
);
CREATE INDEX IF NOT EXISTS entries_last_used ON entries (last_used_at);
CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires_at);
CREATE INDEX IF NOT EXISTS entries_namespace ON entries (namespace);
CREATE INDEX IF NOT EXISTS entries_model ON entries (model);
"""
# Columns added since the first schema: added at start to files that lack them.
ADDED_COLUMNS = {
    "request": "BLOB",  # refresh-ahead's copy of the request body
    "tags": "TEXT",
    "compressed": "INTEGER NOT NULL DEFAULT 0",
}
# The order entries go in past a bound (StoreLimits.eviction); a tenant's, with the tenant
# first, goes by an index of its own when a quota is set.
# What a removal reads of each row it deletes: text as bytes, as a damaged row's may not be UTF-8.
REMOVED = "rowid, CAST(key AS BLOB), size, CAST(tenant AS BLOB)"
EVICTION_ORDER = {"lru": "last_used_at", "lfu": "hits, last_used_at", "ttl": "expires_at"}


class StorageTrouble(Exception):
    """A SQLite file of the data dir cannot be used; the message says why."""


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.create_function("regexp", 2, regexp, deterministic=True)  # X REGEXP Y (purges)
    return conn


def text(value: bytes | None) -> str:
    """A text column read as bytes (a damaged row's may not be UTF-8), decoded leniently."""
    return bytes(value or b"").decode(errors="replace")


def create_schema(conn: sqlite3.Connection, limits: StoreLimits) -> None:
    """The entries table, its newer columns added to an older file, and the indexes the
    eviction order needs."""
    conn.executescript(SCHEMA)
    have = {row[1] for row in conn.execute("PRAGMA table_info(entries)")}
    for name, kind in ADDED_COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE entries ADD COLUMN {name} {kind}")
    order = EVICTION_ORDER[limits.eviction]
    if limits.eviction == "lfu":
        conn.execute(f"CREATE INDEX IF NOT EXISTS entries_lfu ON entries ({order})")
    if limits.max_entries_per_tenant is not None:
        conn.execute(
            f"CREATE INDEX IF NOT EXISTS entries_tenant_{limits.eviction} "
            f"ON entries (tenant, {order})"
        )


def damage(exc: sqlite3.Error) -> bool:
    """Whether SQLite says the file is damaged (rather than the disk refusing it)."""
    name = getattr(exc, "sqlite_errorname", "")
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


def open_sqlite(
    path: Path, prepare: Callable[[sqlite3.Connection], None]
) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """A writer and a reader connection to `path`, `prepare` run on the writer first (it
    should read the whole file, so damage shows now). A file that is not a database (cut
    short, overwritten, a directory in its place) is moved aside once and a fresh one
    started; StorageTrouble when the disk cannot hold one (read-only, full)."""
    for attempt in (1, 2):
        conns: list[sqlite3.Connection] = []
        try:
            if path.is_dir():
                raise sqlite3.DatabaseError("a directory is in its place")
            path.parent.mkdir(parents=True, exist_ok=True)
            conns.append(connect(path))
            prepare(conns[0])
            conns.append(connect(path))
            return conns[0], conns[1]
        except sqlite3.Error as exc:
            for conn in conns:
                conn.close()
            damaged = path.is_dir() or damage(exc)
            if attempt == 1 and damaged and set_aside(path, str(exc)) is not None:
                continue
            raise StorageTrouble(f"{path} cannot be used: {exc}") from None
        except OSError as exc:
            raise StorageTrouble(f"{path} cannot be used: {exc.strerror}") from None
    raise AssertionError("unreachable")


def read_live_entries(path: Path, now: float) -> Iterator[Entry]:
    """Every intact entry of the file at `path` still fresh at `now`, read through a
    read-only connection (a gateway may be serving the file meanwhile)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    codec = BodyCodec(None)  # reads compressed bodies whatever the bound they were written at
    try:
        have = {row[1] for row in conn.execute("PRAGMA table_info(entries)")}
        columns = [c if c in have else f"NULL AS {c}" for c in STORED_COLUMNS]  # an older file
        rows = conn.execute(
            f"SELECT {', '.join(columns)} FROM entries WHERE expires_at > ? ORDER BY created_at",
            (now,),
        )
        for row in rows:
            # None for a damaged row: the gateway drops it when it reads it.
            entry = entry_of(dict(zip(STORED_COLUMNS, row, strict=True)), codec)
            if entry is not None:
                yield entry
    finally:
        conn.close()


class SqliteStore:
    """The entry store of the embedded backend (a backends.Store)."""

    available = True  # an embedded file does not go away; a shared store may (RedisStore)

    def __init__(self, path: Path, limits: StoreLimits) -> None:
        self.path = path
        self.limits = limits
        self._codec = BodyCodec(limits.compress_min_bytes)
        self.evictions: Counter[str] = Counter()  # by reason, for /metrics
        # Set by start(): whom to tell about evictions, and on which loop.
        self._changes: Changes | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="cachegate-store")
        self._complaints = Complaints(log)
        # Entries and their stored bytes, in total and by tenant (for a tenant quota),
        # kept by the writer thread as it writes.
        self.count, self.bytes = 0, 0
        self._tenants: Counter[str] = Counter()

        def prepare(conn: sqlite3.Connection) -> None:
            create_schema(conn, limits)
            self._recount(conn)

        try:
            self._write_conn, self._read_conn = open_sqlite(path, prepare)
        except StorageTrouble as exc:
            log.error(
                "%s; entries are kept in memory only (up to %d MiB) until a restart finds "
                "the disk usable",
                exc,
                IN_MEMORY_MAX_BYTES // 2**20,
            )
            # One connection for both: a memory database is private to its connection.
            self._write_conn = self._read_conn = sqlite3.connect(
                ":memory:", check_same_thread=False, isolation_level=None
            )
            prepare(self._write_conn)
            self.limits = dataclasses.replace(
                limits, max_bytes=min(limits.max_bytes, IN_MEMORY_MAX_BYTES)
            )
        self._pending: list[Entry] = []
        self._hits: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._flush_scheduled = False
        self._hits_flushed_at = 0.0

    def _recount(self, conn: sqlite3.Connection) -> None:
        self.count, self.bytes = conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM entries"
        ).fetchone()
        if self.limits.max_entries_per_tenant is not None:
            rows = conn.execute(
                "SELECT CAST(tenant AS BLOB), count(*) FROM entries GROUP BY tenant"
            )
            self._tenants = Counter({text(tenant): count for tenant, count in rows})

    async def start(self, changes: Changes, oldest_expiry: float) -> None:
        """Hand the cache every vector to index; nothing else writes this file."""
        self._changes, self._loop = changes, asyncio.get_running_loop()
        try:
            changes.load(self.semantic_rows(oldest_expiry))
        except sqlite3.Error as exc:  # damage the first reads did not reach
            log.error("cannot read the vectors in %s (%s); indexing none", self.path, exc)

    # -- reads (event loop) -------------------------------------------------------------
    async def get(self, key: str) -> Entry | None:
        """The entry under `key`; None (and the row deleted) when it is damaged: the
        request goes upstream and stores a good one."""
        try:
            row = self._read_conn.execute(
                f"SELECT {', '.join(STORED_COLUMNS)} FROM entries WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            entry = entry_of(dict(zip(STORED_COLUMNS, row, strict=True)), self._codec)
            damaged = None if entry is not None else "its body does not unpack or check out"
        except (sqlite3.Error, TypeError) as exc:  # a text that is not UTF-8, a bad page
            damaged = str(exc)
        if damaged is None and entry is not None:
            return entry
        self._complaints.say("read", "entry %s cannot be served (%s); dropping it", key, damaged)
        with contextlib.suppress(StoreUnavailable):  # not now: the next read drops it
            await self.delete(PurgeFilter(key=key), now=0)
        return None

    def semantic_rows(self, now: float) -> Iterator[tuple[str, str, bytes]]:
        """(key, context_key, vector) of every semantic entry still within its stale
        window; a row whose key or context is not UTF-8 is skipped (a read drops it)."""
        rows = self._read_conn.execute(
            "SELECT CAST(key AS BLOB), CAST(context_key AS BLOB), vector FROM entries "
            "WHERE vector IS NOT NULL AND expires_at > ? ORDER BY created_at",
            (now,),
        )
        for key, context_key, vector in rows:
            try:
                yield key.decode(), context_key.decode(), vector
            except (UnicodeDecodeError, AttributeError):
                continue

    async def list_entries(
        self, namespace: str | None, limit: int, prompt: re.Pattern[str] | None = None
    ) -> list[dict[str, Any]]:
        # Text read as bytes and decoded leniently: one damaged row must not fail the list.
        sql = (
            "SELECT CAST(key AS BLOB), CAST(model AS BLOB), CAST(namespace AS BLOB), "
            "CAST(endpoint AS BLOB), CAST(text AS BLOB), CAST(tags AS BLOB), created_at, "
            "expires_at, hits, size, prompt_tokens, completion_tokens FROM entries"
        )
        args: list[Any] = []
        if namespace:
            sql += " WHERE namespace = ?"
            args.append(namespace)
        sql += " ORDER BY created_at DESC"
        if prompt is None:
            sql += " LIMIT ?"
            args.append(limit)
        found = []
        try:
            for row in self._read_conn.execute(sql, args):  # searched newest first, to `limit`
                texts = [bytes(v or b"").decode(errors="replace") for v in row[:6]]
                if prompt is not None and not prompt.search(texts[4]):
                    continue
                found.append(dict(zip(LISTED, (*texts, *row[6:]), strict=True)))
                if len(found) >= limit:
                    break
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot read {self.path}: {exc}") from None
        return found

    # -- writes (writer thread) ---------------------------------------------------------
    def put(self, entry: Entry) -> None:
        with self._lock:
            self._pending.append(entry)
        self._schedule_flush()

    def hit(self, key: str, now: float) -> None:
        with self._lock:
            count, _ = self._hits.get(key, (0, now))
            self._hits[key] = (count + 1, now)
        # Hit counts are bookkeeping: write them at most once a second, not per hit (a
        # profile under load showed per-hit flushes taking a core from the event loop).
        if now - self._hits_flushed_at >= HIT_FLUSH_SECONDS:
            self._hits_flushed_at = now
            self._schedule_flush()

    async def claim_refresh(self, key: str, expires_at: float) -> bool:
        """Always: one gateway holds the data dir, and it refreshes each version once."""
        return True

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._writer.submit(self._flush)

    def _flush(self) -> None:
        with self._lock:
            self._flush_scheduled = False
            pending, self._pending = self._pending, []
            hits, self._hits = self._hits, {}
        if not pending and not hits:
            return
        conn = self._write_conn
        before = self.count, self.bytes, self._tenants.copy()
        evicted: list[tuple[str, str]] = []  # (key, reason)
        try:
            conn.execute("BEGIN IMMEDIATE")
            # The hits first: an eviction by use or by frequency counts them.
            conn.executemany(
                "UPDATE entries SET hits = hits + ?, last_used_at = ? WHERE key = ?",
                [(count, at, key) for key, (count, at) in hits.items()],
            )
            for entry in pending:
                evicted += self._insert(conn, entry)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:  # a full or read-only disk, say: memory still has them
            self.count, self.bytes, self._tenants = before
            self._rollback()
            self._complaints.say(
                "write",
                "cannot write %d entries to %s (%s); serving from memory and upstream",
                len(pending),
                self.path,
                exc,
            )
            return
        self._complaints.resolved("write", "%s is written again", self.path)
        self.evictions.update(reason for _, reason in evicted)
        if evicted and self._changes is not None and self._loop is not None:
            # Evictions happen on the writer thread; the cache forgets on its loop.
            self._loop.call_soon_threadsafe(self._changes.forget, [key for key, _ in evicted])

    def _rollback(self) -> None:
        """End a failed write's transaction, or every later BEGIN would fail too."""
        if self._write_conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._write_conn.rollback()

    def _insert(self, conn: sqlite3.Connection, entry: Entry) -> list[tuple[str, str]]:
        """Write one entry (inside the transaction), first evicting exactly what the bounds
        need to make room for it; returns the evicted (key, reason)."""
        values, size = stored_row(entry, self._codec)
        limits = self.limits
        if size > limits.max_bytes:
            return []  # it could never fit: keep the others rather than evict them all
        old = conn.execute("SELECT size FROM entries WHERE key = ?", (entry.key,)).fetchone()
        evicted: list[tuple[str, str]] = []
        if old is None:
            quota = limits.max_entries_per_tenant
            if quota is not None and self._tenants[entry.tenant] >= quota:
                excess = self._tenants[entry.tenant] - quota + 1
                evicted += self._evict(conn, entry, "tenant_quota", count=excess)
            if self.count >= limits.max_entries:
                excess = self.count - limits.max_entries + 1
                evicted += self._evict(conn, entry, "max_entries", count=excess)
        over = self.bytes + size - (old[0] if old else 0) - limits.max_bytes
        if over > 0:
            evicted += self._evict(conn, entry, "max_store_bytes", freed=over)
        conn.execute(
            f"INSERT OR REPLACE INTO entries ({', '.join(STORED_COLUMNS)}, last_used_at, size) "
            f"VALUES ({', '.join('?' * (len(STORED_COLUMNS) + 2))})",
            (*values.values(), entry.created_at, size),
        )
        if old is None:
            self.count += 1
            if limits.max_entries_per_tenant is not None:
                self._tenants[entry.tenant] += 1
        self.bytes += size - (old[0] if old else 0)
        return evicted

    def _evict(
        self,
        conn: sqlite3.Connection,
        entry: Entry,
        reason: str,
        count: int | None = None,
        freed: int | None = None,
    ) -> list[tuple[str, str]]:
        """Remove the first `count` entries in eviction order, or the first that together
        free `freed` bytes; never `entry` itself, and for a tenant quota only its tenant's."""
        where, args = "key != ?", [entry.key]
        if reason == "tenant_quota":
            where, args = f"{where} AND tenant = ?", [*args, entry.tenant]
        sql = (
            f"SELECT {REMOVED} FROM entries WHERE {where} "
            f"ORDER BY {EVICTION_ORDER[self.limits.eviction]}"
        )
        if count is not None:
            rows = conn.execute(f"{sql} LIMIT ?", [*args, count]).fetchall()
        else:
            rows, total = [], 0
            cursor = conn.execute(sql, args)
            for row in cursor:
                rows.append(row)
                total += row[2]
                if total >= (freed or 0):
                    break
            cursor.close()
        conn.executemany("DELETE FROM entries WHERE rowid = ?", [(row[0],) for row in rows])
        return [(key, reason) for key in self._removed([row[1:] for row in rows])]

    def _removed(self, rows: list[tuple[bytes, int, bytes]]) -> list[str]:
        """Count out deleted (key, size, tenant) rows; their keys."""
        self.count -= len(rows)
        self.bytes -= sum(size for _, size, _ in rows)
        if self.limits.max_entries_per_tenant is not None:
            self._tenants.subtract(text(tenant) for _, _, tenant in rows)
        return [text(key) for key, _, _ in rows]

    async def delete(self, where: PurgeFilter, now: float) -> list[str]:
        """Remove matching entries; returns their keys."""
        return await asyncio.wrap_future(self._writer.submit(self._delete, where, now))

    def _delete(self, where: PurgeFilter, now: float) -> list[str]:
        self._flush()
        clause, args = where.where(now)
        try:
            return self._remove(clause, args)
        except sqlite3.Error as exc:
            raise StoreUnavailable(
                f"cannot remove entries from {self.path} ({exc}); nothing was purged, "
                "retry when the disk can be written"
            ) from None

    def _remove(self, clause: str, args: list[Any]) -> list[str]:
        """Delete the rows matching `clause`; their keys."""
        conn = self._write_conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(f"SELECT {REMOVED} FROM entries WHERE {clause}", args).fetchall()
            conn.executemany("DELETE FROM entries WHERE rowid = ?", [(row[0],) for row in rows])
            conn.execute("COMMIT")
        except sqlite3.Error:
            self._rollback()
            raise
        return self._removed([row[1:] for row in rows])

    async def sweep(self, now: float, max_stale: float) -> list[str]:
        """Drop entries past their stale window (expired longer than `max_stale` ago)."""
        return await asyncio.wrap_future(self._writer.submit(self._sweep, now - max_stale))

    def _sweep(self, cutoff: float) -> list[str]:
        try:
            return self._remove("expires_at < ?", [cutoff])
        except sqlite3.Error as exc:
            self._complaints.say("sweep", "cannot drop expired entries (%s): %s", self.path, exc)
            return []

    async def flush(self) -> None:
        await asyncio.wrap_future(self._writer.submit(self._flush))

    async def claim_flight(self, key: str) -> str | None:
        return ""  # one process: the gateway's own Flights collapse its requests

    async def release_flight(self, key: str, token: str) -> None:
        pass

    async def close(self) -> None:
        await self.flush()
        self._writer.shutdown(wait=True)
        self._write_conn.close()
        self._read_conn.close()
