"""The durable entry store of the embedded backend: one SQLite file (WAL) in the data dir.

Reads run on the event loop (a primary-key read is tens of microseconds, less than a
thread hop). Writes are queued and committed in batches by one writer thread, so a
response never waits for the disk. Every body carries a checksum that is checked on
read; a row that fails it is deleted, never served.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gateway.entries import Entry

log = logging.getLogger("cachegate.store")
HIT_FLUSH_SECONDS = 1.0

COLUMNS = (
    "key",
    "tenant",
    "namespace",
    "endpoint",
    "model",
    "body",
    "checksum",
    "created_at",
    "expires_at",
    "prompt_tokens",
    "completion_tokens",
    "upstream_ms",
    "context_key",
    "text",
    "vector",
    "hits",
)
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
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_last_used ON entries (last_used_at);
CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires_at);
CREATE INDEX IF NOT EXISTS entries_namespace ON entries (namespace);
CREATE INDEX IF NOT EXISTS entries_model ON entries (model);
"""


class StoreUnavailable(Exception):
    """A shared store cannot be reached; an admin route answers 503 with this message."""


@dataclass(frozen=True, slots=True)
class PurgeFilter:
    """Which entries a purge removes. Fields combine with AND; no field and not `everything`
    removes nothing."""

    everything: bool = False
    namespace: str | None = None
    model: str | None = None
    older_than: float | None = None  # seconds
    key: str | None = None
    tenant: str | None = None

    def _equal(self) -> list[tuple[str, str]]:
        fields = (
            ("namespace", self.namespace),
            ("model", self.model),
            ("key", self.key),
            ("tenant", self.tenant),
        )
        return [(column, value) for column, value in fields if value is not None]

    def where(self, now: float) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        for column, value in self._equal():
            clauses.append(f"{column} = ?")
            args.append(value)
        if self.older_than is not None:
            clauses.append("created_at < ?")
            args.append(now - self.older_than)
        if not clauses and not self.everything:
            return "0", []
        return " AND ".join(clauses) or "1", args

    def matches(self, values: Mapping[str, Any], now: float) -> bool:
        """`where` for one entry's values, for stores without SQL."""
        checks = [values.get(column) == value for column, value in self._equal()]
        if self.older_than is not None:
            created_at = values.get("created_at")
            checks.append(created_at is not None and created_at < now - self.older_than)
        return all(checks) if checks or self.everything else False


class Changes(Protocol):
    """What a store tells the cache in front of it (the Cache implements this)."""

    def load(self, rows: Iterable[tuple[str, str, bytes]]) -> None:
        """Index (key, context_key, vector) rows read from the store, all at once."""

    def learn(self, key: str, context_key: str | None, vector: bytes | None) -> None:
        """Another writer stored `key` (a shared store's other replicas)."""

    def forget(self, keys: list[str]) -> None:
        """The store no longer holds these keys."""

    def reset(self) -> None:
        """The store was replaced (a shared store restarted empty): drop every local copy."""


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def row_to_entry(row: tuple) -> Entry:
    values = dict(zip(COLUMNS, row, strict=True))
    return Entry(**values)


class SqliteStore:
    available = True  # an embedded file does not go away; a shared store may (RedisStore)

    def __init__(self, path: Path, max_entries: int, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        # Set by start(): whom to tell about evictions, and on which loop.
        self._changes: Changes | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="cachegate-store")
        self._write_conn = connect(path)
        self._write_conn.executescript(SCHEMA)
        self._read_conn = connect(path)
        self._pending: list[Entry] = []
        self._hits: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._flush_scheduled = False
        self._hits_flushed_at = 0.0
        self.count, self.bytes = self._read_conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM entries"
        ).fetchone()

    async def start(self, changes: Changes, oldest_expiry: float) -> None:
        """Hand the cache every vector to index; nothing else writes this file."""
        self._changes, self._loop = changes, asyncio.get_running_loop()
        changes.load(self.semantic_rows(oldest_expiry))

    # -- reads (event loop) -------------------------------------------------------------
    async def get(self, key: str) -> Entry | None:
        row = self._read_conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM entries WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        entry = row_to_entry(row)
        if not entry.intact():
            log.warning("entry %s failed its checksum; deleting it", key)
            await self.delete(PurgeFilter(key=key), now=0)
            return None
        return entry

    def semantic_rows(self, now: float) -> Iterator[tuple[str, str, bytes]]:
        """(key, context_key, vector) of every semantic entry still within its stale window."""
        return self._read_conn.execute(
            "SELECT key, context_key, vector FROM entries WHERE vector IS NOT NULL "
            "AND expires_at > ? ORDER BY created_at",
            (now,),
        )

    async def list(self, namespace: str | None, limit: int) -> list[dict[str, Any]]:
        sql = (
            "SELECT key, model, namespace, endpoint, created_at, expires_at, hits, size "
            "FROM entries"
        )
        args: list[Any] = []
        if namespace:
            sql += " WHERE namespace = ?"
            args.append(namespace)
        sql += " ORDER BY created_at DESC LIMIT ?"
        rows = self._read_conn.execute(sql, [*args, limit]).fetchall()
        names = (
            "key",
            "model",
            "namespace",
            "endpoint",
            "created_at",
            "expires_at",
            "hits",
            "size",
        )
        return [dict(zip(names, row, strict=True)) for row in rows]

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
        try:
            conn.execute("BEGIN IMMEDIATE")
            for entry in pending:
                old = conn.execute(
                    "SELECT size FROM entries WHERE key = ?", (entry.key,)
                ).fetchone()
                conn.execute(
                    f"INSERT OR REPLACE INTO entries ({', '.join(COLUMNS)}, last_used_at, size) "
                    f"VALUES ({', '.join('?' * (len(COLUMNS) + 2))})",
                    (*(getattr(entry, c) for c in COLUMNS), entry.created_at, entry.size),
                )
                self.count += 0 if old else 1
                self.bytes += entry.size - (old[0] if old else 0)
            conn.executemany(
                "UPDATE entries SET hits = hits + ?, last_used_at = ? WHERE key = ?",
                [(count, at, key) for key, (count, at) in hits.items()],
            )
            evicted = self._evict(conn)
            conn.execute("COMMIT")
        except sqlite3.Error:
            log.exception("could not write %d entries to %s", len(pending), self.path)
            conn.execute("ROLLBACK") if conn.in_transaction else None
            return
        if evicted and self._changes is not None and self._loop is not None:
            # Evictions happen on the writer thread; the cache forgets on its loop.
            self._loop.call_soon_threadsafe(self._changes.forget, evicted)

    def _evict(self, conn: sqlite3.Connection) -> list[str]:
        """Least recently used entries past the count or size bound (inside the transaction)."""
        evicted: list[str] = []
        while self.count > self._max_entries or self.bytes > self._max_bytes:
            excess = max(self.count - self._max_entries, 1)
            rows = conn.execute(
                "SELECT key, size FROM entries ORDER BY last_used_at LIMIT ?",
                (min(max(excess, 64), 10000),),
            ).fetchall()
            if not rows:
                break
            conn.executemany("DELETE FROM entries WHERE key = ?", [(k,) for k, _ in rows])
            evicted += [k for k, _ in rows]
            self.count -= len(rows)
            self.bytes -= sum(s for _, s in rows)
        return evicted

    async def delete(self, where: PurgeFilter, now: float) -> list[str]:
        """Remove matching entries; returns their keys."""
        return await asyncio.wrap_future(self._writer.submit(self._delete, where, now))

    def _delete(self, where: PurgeFilter, now: float) -> list[str]:
        self._flush()
        clause, args = where.where(now)
        conn = self._write_conn
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute(f"SELECT key, size FROM entries WHERE {clause}", args).fetchall()
        conn.execute(f"DELETE FROM entries WHERE {clause}", args)
        conn.execute("COMMIT")
        self.count -= len(rows)
        self.bytes -= sum(s for _, s in rows)
        return [k for k, _ in rows]

    async def sweep(self, now: float, max_stale: float) -> list[str]:
        """Drop entries past their stale window (expired longer than `max_stale` ago)."""
        return await asyncio.wrap_future(self._writer.submit(self._sweep, now - max_stale))

    def _sweep(self, cutoff: float) -> list[str]:
        conn = self._write_conn
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute(
            "SELECT key, size FROM entries WHERE expires_at < ?", (cutoff,)
        ).fetchall()
        conn.execute("DELETE FROM entries WHERE expires_at < ?", (cutoff,))
        conn.execute("COMMIT")
        self.count -= len(rows)
        self.bytes -= sum(s for _, s in rows)
        return [k for k, _ in rows]

    async def flush(self) -> None:
        await asyncio.wrap_future(self._writer.submit(self._flush))

    async def close(self) -> None:
        await self.flush()
        self._writer.shutdown(wait=True)
        self._write_conn.close()
        self._read_conn.close()
