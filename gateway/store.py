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
import logging
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gateway.backends import LISTED, Changes, PurgeFilter, StoreUnavailable
from gateway.datadir import Complaints, set_aside
from gateway.entries import Entry

log = logging.getLogger("cachegate.store")
HIT_FLUSH_SECONDS = 1.0
# Bound on the entries kept by a store that could not open its file (held in memory).
IN_MEMORY_MAX_BYTES = 256 * 2**20

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
    "request",
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
    size INTEGER NOT NULL,
    request BLOB
);
CREATE INDEX IF NOT EXISTS entries_last_used ON entries (last_used_at);
CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires_at);
CREATE INDEX IF NOT EXISTS entries_namespace ON entries (namespace);
CREATE INDEX IF NOT EXISTS entries_model ON entries (model);
"""


class StorageTrouble(Exception):
    """A SQLite file of the data dir cannot be used; the message says why."""


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


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


def row_to_entry(row: tuple) -> Entry:
    values = dict(zip(COLUMNS, row, strict=True))
    return Entry(**values)


def read_live_entries(path: Path, now: float) -> Iterator[Entry]:
    """Every intact entry of the file at `path` still fresh at `now`, read through a
    read-only connection (a gateway may be serving the file meanwhile)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        have = {row[1] for row in conn.execute("PRAGMA table_info(entries)")}
        columns = [c if c in have else f"NULL AS {c}" for c in COLUMNS]  # an older file
        rows = conn.execute(
            f"SELECT {', '.join(columns)} FROM entries WHERE expires_at > ? ORDER BY created_at",
            (now,),
        )
        for row in rows:
            try:
                entry = row_to_entry(row)
            except TypeError:  # a damaged row: the gateway drops it when it reads it
                continue
            if entry.intact():
                yield entry
    finally:
        conn.close()


class SqliteStore:
    """The entry store of the embedded backend (a backends.Store)."""

    available = True  # an embedded file does not go away; a shared store may (RedisStore)

    def __init__(self, path: Path, max_entries: int, max_bytes: int) -> None:
        self.path = path
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        # Set by start(): whom to tell about evictions, and on which loop.
        self._changes: Changes | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="cachegate-store")
        self._complaints = Complaints(log)
        self.count, self.bytes = 0, 0

        def prepare(conn: sqlite3.Connection) -> None:
            conn.executescript(SCHEMA)
            if "request" not in {row[1] for row in conn.execute("PRAGMA table_info(entries)")}:
                conn.execute("ALTER TABLE entries ADD COLUMN request BLOB")  # an older file
            self.count, self.bytes = conn.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM entries"
            ).fetchone()

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
            self._max_bytes = min(max_bytes, IN_MEMORY_MAX_BYTES)
        self._pending: list[Entry] = []
        self._hits: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._flush_scheduled = False
        self._hits_flushed_at = 0.0

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
                f"SELECT {', '.join(COLUMNS)} FROM entries WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            entry = row_to_entry(row)
            damaged = None if entry.intact() else "it failed its checksum"
        except (sqlite3.Error, TypeError) as exc:  # a text that is not UTF-8, a bad page
            damaged = str(exc)
        if damaged is None:
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
            "CAST(endpoint AS BLOB), CAST(text AS BLOB), created_at, expires_at, hits, size, "
            "prompt_tokens, completion_tokens FROM entries"
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
                texts = [bytes(v or b"").decode(errors="replace") for v in row[:5]]
                if prompt is not None and not prompt.search(texts[4]):
                    continue
                found.append(dict(zip(LISTED, (*texts, *row[5:]), strict=True)))
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
        count_before, bytes_before = self.count, self.bytes
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
        except sqlite3.Error as exc:  # a full or read-only disk, say: memory still has them
            self.count, self.bytes = count_before, bytes_before
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
        if evicted and self._changes is not None and self._loop is not None:
            # Evictions happen on the writer thread; the cache forgets on its loop.
            self._loop.call_soon_threadsafe(self._changes.forget, evicted)

    def _rollback(self) -> None:
        """End a failed write's transaction, or every later BEGIN would fail too."""
        if self._write_conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._write_conn.rollback()

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
            rows = conn.execute(
                f"SELECT CAST(key AS BLOB), size FROM entries WHERE {clause}", args
            ).fetchall()
            conn.execute(f"DELETE FROM entries WHERE {clause}", args)
            conn.execute("COMMIT")
        except sqlite3.Error:
            self._rollback()
            raise
        self.count -= len(rows)
        self.bytes -= sum(s for _, s in rows)
        return [bytes(k).decode(errors="replace") for k, _ in rows]

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
