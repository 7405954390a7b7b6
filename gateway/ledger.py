"""The ledger: every request, in `ledger.db` (SQLite, WAL) in the data dir.

Records are queued in memory and written in batches by one thread, so a response never
waits for it. Identical requests of one batch and second (the same cached answer served to
the same tenant, say) share a row whose `requests` says how many it stands for and whose numbers
are their totals: at thousands of hits a second, writing one row each took a sixth of the
gateway's CPU. Stats (`/cache/stats`, `cachegate stats`, the dashboard) are plain SQL
over this table; the README shows the schema and queries to run in `sqlite3`.

Rows that cannot be written (a full or read-only disk) are kept in memory, up to
BACKLOG_ROWS, and written by a later flush once the disk allows; the trouble is logged
once a minute. A damaged `ledger.db` at start is moved aside and a fresh one started.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from gateway.backends import StoreUnavailable
from gateway.datadir import Complaints
from gateway.store import StorageTrouble, open_sqlite

log = logging.getLogger("cachegate.ledger")
# Rows kept in memory while the disk refuses them; past this the oldest go (and are counted).
BACKLOG_ROWS = 100_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,               -- unix time the request arrived
    tenant TEXT NOT NULL,           -- hash of the caller's API key, never the key
    namespace TEXT NOT NULL,
    endpoint TEXT NOT NULL,         -- chat | completions | embeddings | messages | responses
    model TEXT NOT NULL,
    status TEXT NOT NULL,           -- HIT | MISS | BYPASS | REFRESH | STALE | ERROR | REPORTED
    tier TEXT,                      -- exact | semantic (hits; the tier a REPORTED answer came from)
    similarity REAL,                -- calibrated score of a semantic hit
    -- The numbers below are totals over the row's requests.
    prompt_tokens INTEGER NOT NULL, -- of the answers served (saved on hits, spent otherwise)
    completion_tokens INTEGER NOT NULL,
    usd REAL NOT NULL,              -- saved on hits, spent on misses; 0 when unpriced
    priced INTEGER NOT NULL,        -- 0 when the model has no price
    latency_ms REAL NOT NULL,       -- what the clients waited
    upstream_ms REAL NOT NULL,      -- upstream's time on misses; the time saved on hits
    bytes INTEGER NOT NULL,         -- response body sizes
    http_status INTEGER NOT NULL,
    key TEXT,                       -- exact key of the entry served or stored
    prompt TEXT,                    -- the compared text (first 200 chars), for top-prompt reports
    requests INTEGER NOT NULL DEFAULT 1, -- identical requests (one batch, one second) it counts
    request_key TEXT,               -- REPORTED: the exact key of the request it was served to
    -- Why a request that read the cache missed (INTERFACE.md): no_entry | no_candidate |
    -- guard_veto | below_threshold | exact_only | expired
    reason TEXT,
    detail TEXT,                    -- which guard, which exact-only policy, ttl | max-age
    score REAL                      -- calibrated score of the candidate a miss scored
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
-- Rows older than ledger_retention_days, rolled up: one row per UTC day and group, its
-- numbers the totals of the rows it replaced (`ts` the day's first second).
CREATE TABLE IF NOT EXISTS day_totals (
    ts REAL NOT NULL,
    tenant TEXT NOT NULL,
    namespace TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    tier TEXT NOT NULL,             -- '' where the rows had none (a key cannot hold NULLs)
    priced INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    usd REAL NOT NULL,
    latency_ms REAL NOT NULL,
    upstream_ms REAL NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (ts, tenant, namespace, endpoint, model, status, tier, priced)
);
"""
# What stats read: the recent rows and the rolled-up days, as one table (rolled-up days
# keep no miss reasons: their misses group as `miss` by reason).
DAY_GROUP = ("tenant", "namespace", "endpoint", "model", "status", "tier", "priced")
DAY_SUMS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "usd",
    "latency_ms",
    "upstream_ms",
    "bytes",
)
LEDGER_ROWS = (
    f"(SELECT ts, {', '.join(DAY_GROUP)}, {', '.join(DAY_SUMS)}, reason FROM requests "
    f"UNION ALL SELECT ts, {', '.join(DAY_GROUP[:5])}, nullif(tier, ''), priced, "
    f"{', '.join(DAY_SUMS)}, NULL FROM day_totals)"
)
ROLL_UP_SQL = f"""
INSERT INTO day_totals (ts, {", ".join(DAY_GROUP)}, {", ".join(DAY_SUMS)})
SELECT CAST(ts / 86400 AS INTEGER) * 86400 AS day, {", ".join(DAY_GROUP[:5])},
       coalesce(tier, ''), priced, {", ".join(f"sum({name})" for name in DAY_SUMS)}
FROM requests WHERE ts < ?
GROUP BY day, {", ".join(DAY_GROUP)}
ON CONFLICT DO UPDATE SET {", ".join(f"{name} = {name} + excluded.{name}" for name in DAY_SUMS)}
"""


# What one row's values can raise, as opposed to the database failing as a whole.
ROW_ERRORS = (
    UnicodeEncodeError,
    OverflowError,
    sqlite3.InterfaceError,
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
)


class Record(NamedTuple):
    """One request's ledger record; a tuple, so queueing it copies nothing."""

    ts: float
    tenant: str
    namespace: str
    endpoint: str
    model: str
    status: str
    tier: str | None
    similarity: float | None
    prompt_tokens: int
    completion_tokens: int
    usd: float
    priced: int
    latency_ms: float
    upstream_ms: float
    bytes: int
    http_status: int
    key: str | None
    prompt: str | None
    # Fields added later go last: the Redis ledger reads older, shorter rows by position.
    request_key: str | None = None
    reason: str | None = None
    detail: str | None = None
    score: float | None = None


COLUMNS = list(Record._fields)
# Records of one second that differ only in VARYING share a row: it keeps the first one's
# time and adds up SUMMED (so every sum over the table stays a sum over requests).
VARYING = ("ts", "latency_ms", "upstream_ms", "bytes")
SUMMED = ("prompt_tokens", "completion_tokens", "usd", "latency_ms", "upstream_ms", "bytes")
IDENTITY = tuple(i for i, name in enumerate(COLUMNS) if name not in VARYING)
ADDED = tuple(COLUMNS.index(name) for name in SUMMED)
INSERT_SQL = (
    f"INSERT INTO requests ({', '.join(COLUMNS)}, requests) "
    f"VALUES ({', '.join('?' * (len(COLUMNS) + 1))})"
)


def merge_identical(records: list[Record]) -> list[list]:
    """Rows for `records`: records of the same second that differ only in time, latency
    and size share one row (the first one's time, the others' numbers added, `requests`
    counting them). The second bounds it: a batch buffered through a Redis outage still
    reports by hour and day as the requests came."""
    rows: dict[tuple, list] = {}
    for record in records:
        identity = (int(record.ts), *(record[i] for i in IDENTITY))
        row = rows.get(identity)
        if row is None:
            rows[identity] = [*record, 1]
        else:
            for i in ADDED:
                row[i] += record[i]
            row[-1] += 1
    return list(rows.values())


# An answer an app reported bad (POST /cache/feedback): a ledger row, not a request.
REPORTED = "REPORTED"
# Requests that upstream was paid for (their tokens and dollars are spent, not saved).
PAID_STATUSES = ("MISS", "REFRESH", "BYPASS")
PAID = "('" + "', '".join(PAID_STATUSES) + "')"
GROUPS = {
    "model": "model",
    "tenant": "tenant",
    "namespace": "namespace",
    "tier": "coalesce(tier, lower(status))",
    "status": "status",
    "endpoint": "endpoint",
    "reason": "coalesce(reason, lower(status))",
    "day": "strftime('%Y-%m-%d', ts, 'unixepoch')",
    "hour": "strftime('%Y-%m-%dT%H:00', ts, 'unixepoch')",
}
TOTALS = f"""
    coalesce(sum(CASE WHEN status != '{REPORTED}' THEN requests END), 0) AS requests,
    coalesce(sum(CASE WHEN status = 'HIT' THEN requests END), 0) AS hits,
    coalesce(sum(CASE WHEN status = 'HIT' AND tier = 'exact' THEN requests END), 0) AS exact_hits,
    coalesce(sum(CASE WHEN status = 'HIT' AND tier = 'semantic' THEN requests END), 0)
        AS semantic_hits,
    coalesce(sum(CASE WHEN status = 'MISS' THEN requests END), 0) AS misses,
    coalesce(sum(CASE WHEN status = 'BYPASS' THEN requests END), 0) AS bypass,
    coalesce(sum(CASE WHEN status = 'REFRESH' THEN requests END), 0) AS refresh,
    coalesce(sum(CASE WHEN status = 'STALE' THEN requests END), 0) AS stale,
    coalesce(sum(CASE WHEN status = 'ERROR' THEN requests END), 0) AS errors,
    coalesce(sum(CASE WHEN status = '{REPORTED}' THEN requests END), 0) AS reported_bad,
    coalesce(sum(CASE WHEN status = 'HIT' THEN prompt_tokens END), 0) AS saved_prompt,
    coalesce(sum(CASE WHEN status = 'HIT' THEN completion_tokens END), 0) AS saved_completion,
    coalesce(sum(CASE WHEN status IN {PAID} THEN prompt_tokens END), 0) AS spent_prompt,
    coalesce(sum(CASE WHEN status IN {PAID} THEN completion_tokens END), 0) AS spent_completion,
    coalesce(sum(CASE WHEN status = 'HIT' THEN usd END), 0) AS usd_saved,
    coalesce(sum(CASE WHEN status IN {PAID} THEN usd END), 0) AS usd_spent,
    coalesce(sum(CASE WHEN status = 'HIT' THEN upstream_ms END), 0) AS time_saved_ms
"""


def parse_since(text: str | None) -> float | None:
    """'90s', '15m', '24h', '7d', '4w' to seconds; None or 'all' for everything."""
    if text is None or text in ("", "all"):
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise ValueError(f"cannot read duration {text!r}: use a number and s, m, h, d or w (24h)")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return float(match.group(1)) * unit


def _shape(row: sqlite3.Row) -> dict[str, Any]:
    hits, misses = row["hits"], row["misses"]
    return {
        "requests": row["requests"],
        "hits": hits,
        "exact_hits": row["exact_hits"],
        "semantic_hits": row["semantic_hits"],
        "misses": misses,
        "bypass": row["bypass"],
        "refresh": row["refresh"],
        "stale": row["stale"],
        "errors": row["errors"],
        "reported_bad": row["reported_bad"],
        "hit_rate": round(hits / (hits + misses), 6) if hits + misses else 0.0,
        "tokens_saved": {"prompt": row["saved_prompt"], "completion": row["saved_completion"]},
        "tokens_spent": {"prompt": row["spent_prompt"], "completion": row["spent_completion"]},
        "usd_saved": round(row["usd_saved"], 8),
        "usd_spent": round(row["usd_spent"], 8),
        "time_saved_ms": round(row["time_saved_ms"], 3),
    }


def query_stats(
    conn: sqlite3.Connection, since: str | None, by: str | None, now: float | None = None
) -> dict[str, Any]:
    """The numbers of INTERFACE.md `/cache/stats`, straight from the ledger's rows and its
    rolled-up days (a rolled-up day counts whole in a window that holds its first second)."""
    if by is not None and by not in GROUPS:
        raise ValueError(f"cannot group by {by!r}: use one of {', '.join(GROUPS)}")
    window = parse_since(since)
    cutoff = (now or time.time()) - window if window is not None else 0.0
    conn.row_factory = sqlite3.Row
    total = _shape(
        conn.execute(f"SELECT {TOTALS} FROM {LEDGER_ROWS} WHERE ts >= ?", (cutoff,)).fetchone()
    )
    unpriced = [
        r[0]
        for r in conn.execute(
            f"SELECT DISTINCT model FROM {LEDGER_ROWS} WHERE ts >= ? AND priced = 0 ORDER BY model",
            (cutoff,),
        )
    ]
    result = {**total, "unpriced_models": unpriced, "since": since or "all"}
    if by:
        rows = conn.execute(
            f"SELECT {GROUPS[by]} AS name, {TOTALS} FROM {LEDGER_ROWS} WHERE ts >= ? "
            f"GROUP BY name ORDER BY name",
            (cutoff,),
        )
        result["by"] = by
        result["groups"] = [{"name": row["name"], **_shape(row)} for row in rows]
    return result


def query_top_prompts(
    conn: sqlite3.Connection, since: str | None, limit: int, now: float | None = None
) -> list[dict[str, Any]]:
    window = parse_since(since)
    cutoff = (now or time.time()) - window if window is not None else 0.0
    rows = conn.execute(
        "SELECT key, model, namespace, max(prompt), "
        "sum(CASE WHEN status = 'HIT' THEN requests ELSE 0 END) AS hits, "
        "sum(CASE WHEN status = 'HIT' THEN usd ELSE 0 END), "
        "sum(CASE WHEN status = 'HIT' THEN prompt_tokens + completion_tokens ELSE 0 END) AS saved "
        "FROM requests WHERE ts >= ? AND key IS NOT NULL GROUP BY key "
        "HAVING hits > 0 ORDER BY 6 DESC, 5 DESC LIMIT ?",
        (cutoff, limit),
    )
    names = ("key", "model", "namespace", "prompt", "hits", "usd_saved", "tokens_saved")
    return [dict(zip(names, row, strict=True)) for row in rows]


# Latency percentiles by time bucket. A ledger row may stand for several requests
# (`requests`), and keeps their total latency only: each row counts as that many requests
# at their mean, so a percentile is exact where rows are single requests and an
# approximation where identical requests of one second were merged. Rolled-up days keep
# no per-request latency and are left out.
LATENCY_BUCKETS = {
    "hour": GROUPS["hour"],
    "day": GROUPS["day"],
    "minute": ("strftime('%Y-%m-%dT%H:%M', ts, 'unixepoch')"),
}
LATENCY_SQL = """
WITH timed AS (
    SELECT {bucket} AS bucket, CASE WHEN status = 'HIT' THEN tier ELSE 'miss' END AS outcome,
           latency_ms / requests AS mean, requests
    FROM requests WHERE ts >= ? AND status IN ('HIT', 'MISS') AND requests > 0
), ranked AS (
    SELECT bucket, outcome, mean,
           sum(requests) OVER (PARTITION BY bucket, outcome ORDER BY mean
                               ROWS UNBOUNDED PRECEDING) AS running,
           sum(requests) OVER (PARTITION BY bucket, outcome) AS total,
           count(*) OVER (PARTITION BY bucket, outcome) AS rows
    FROM timed
)
SELECT bucket, outcome, max(total), max(rows),
       min(CASE WHEN running >= 0.5 * total THEN mean END),
       min(CASE WHEN running >= 0.95 * total THEN mean END)
FROM ranked GROUP BY bucket, outcome ORDER BY bucket, outcome
"""


def query_latency(
    conn: sqlite3.Connection, since: str | None, bucket: str, now: float | None = None
) -> dict[str, Any]:
    """p50 and p95 of what clients waited, by time bucket and outcome (exact and semantic
    hits, misses), with how many requests and ledger rows each figure rests on."""
    if bucket not in LATENCY_BUCKETS:
        raise ValueError(f"cannot bucket by {bucket!r}: use one of {', '.join(LATENCY_BUCKETS)}")
    window = parse_since(since)
    cutoff = (now or time.time()) - window if window is not None else 0.0
    rows = conn.execute(LATENCY_SQL.format(bucket=LATENCY_BUCKETS[bucket]), (cutoff,))
    buckets: dict[str, dict[str, Any]] = {}
    for name, outcome, requests, merged_rows, p50, p95 in rows:
        figures = {"requests": requests, "rows": merged_rows, "p50_ms": p50, "p95_ms": p95}
        buckets.setdefault(name, {"name": name})[outcome or "exact"] = figures
    return {
        "since": since or "all",
        "bucket": bucket,
        "approximate": "a ledger row standing for several identical requests counts as "
        "that many requests at their mean latency",
        "buckets": list(buckets.values()),
    }


# Columns added since the first ledgers: (name, type, the value older rows read as).
ADDED_COLUMNS = (
    ("requests", "INTEGER NOT NULL DEFAULT 1", "1"),
    ("request_key", "TEXT", "NULL"),
    ("reason", "TEXT", "NULL"),
    ("detail", "TEXT", "NULL"),
    ("score", "REAL", "NULL"),
)


def create_schema(conn: sqlite3.Connection) -> None:
    """The requests and day_totals tables, including on a ledger written before some
    columns of requests existed."""
    conn.executescript(SCHEMA)
    for name, kind, _ in missing_columns(conn):
        conn.execute(f"ALTER TABLE requests ADD COLUMN {name} {kind}")


def missing_columns(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    present = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
    return [column for column in ADDED_COLUMNS if column[0] not in present]


def open_read_only(path: Path) -> sqlite3.Connection:
    """The ledger for queries only; one no gateway has opened since a column was added
    reads with that column's old value (a temporary view, the file untouched)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    if missing := missing_columns(conn):
        added = ", ".join(f"{value} AS {name}" for name, _, value in missing)
        conn.execute(f"CREATE TEMP VIEW requests AS SELECT *, {added} FROM main.requests")
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'day_totals'").fetchone():
        # A ledger from before roll-ups: no day rolled up (the shape from SCHEMA, empty).
        table = SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS day_totals") :]
        conn.execute(table.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE", 1))
    return conn


def roll_up(conn: sqlite3.Connection, before: float) -> int:
    """Roll the rows older than `before` into day_totals (added to a day rolled up
    before) and delete them, in one transaction; how many rows went."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(ROLL_UP_SQL, (before,))
        removed = conn.execute("DELETE FROM requests WHERE ts < ?", (before,)).rowcount
        conn.execute("COMMIT")
    finally:
        if conn.in_transaction:
            conn.rollback()
    return removed


class SqliteLedger:
    """The ledger of the embedded backend (a backends.Ledger): `ledger.db` in the data dir."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._complaints = Complaints(log)
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._open()
        self._queue: list[Record] = []
        self._backlog: list[list] = []  # rows the disk refused so far, oldest first
        self._dropped = 0  # rows lost past BACKLOG_ROWS
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="cachegate-ledger")

    def _open(self) -> bool:
        """Open the file if it is not open; False (and said, once a minute) if it cannot be."""
        if self._write_conn is None:
            try:
                self._write_conn, self._read_conn = open_sqlite(self.path, create_schema)
            except StorageTrouble as exc:
                self._complaints.say(
                    "write", "%s; ledger rows are kept in memory until it can be", exc
                )
                return False
        return True

    def record(self, record: Record) -> None:
        self._queue.append(record)

    async def flush(self) -> None:
        rows, self._queue = self._queue, []
        if rows or self._backlog:
            await asyncio.wrap_future(self._writer.submit(self._write, rows))

    def _write(self, records: list[Record]) -> None:
        with self._lock:
            self._backlog += merge_identical(records)
            excess = len(self._backlog) - BACKLOG_ROWS
            if excess > 0:
                del self._backlog[:excess]
                self._dropped += excess
            if not self._open():
                return
            rows = self._backlog
            try:
                self._insert(rows)
            except ROW_ERRORS:  # a value SQLite refuses loses its own row, not the batch
                try:
                    refused = [i for i, row in enumerate(rows) if not self._insert_or_skip(row)]
                except sqlite3.Error as exc:
                    self._refused(exc)
                    return
                log.error(
                    "%d of %d ledger rows had values SQLite refuses (rows %s); the rest "
                    "were written",
                    len(refused),
                    len(rows),
                    refused[:10],
                )
            except sqlite3.Error as exc:  # the database itself (disk full, say): kept
                self._refused(exc)
                return
            self._backlog = []
            self._complaints.resolved(
                "write",
                "%s is written again: the rows kept in memory are in it (%d lost past the %d kept)",
                self.path,
                self._dropped,
                BACKLOG_ROWS,
            )

    def _refused(self, exc: sqlite3.Error) -> None:
        self._complaints.say(
            "write",
            "cannot write the ledger %s (%s); %d rows kept in memory until it can be",
            self.path,
            exc,
            len(self._backlog),
        )

    def _insert(self, rows: list[list]) -> None:
        assert self._write_conn is not None
        try:
            self._write_conn.execute("BEGIN")
            self._write_conn.executemany(INSERT_SQL, rows)
            self._write_conn.execute("COMMIT")
        finally:
            if self._write_conn.in_transaction:  # failed: or every later BEGIN would fail too
                self._write_conn.rollback()

    def _insert_or_skip(self, row: list) -> bool:
        try:
            self._insert([row])
        except ROW_ERRORS:
            return False
        return True

    async def roll_up(self, before: float) -> int:
        """Roll the rows older than `before` into daily totals; how many rows went."""
        await self.flush()
        return await asyncio.wrap_future(self._writer.submit(self._roll_up, before))

    def _roll_up(self, before: float) -> int:
        with self._lock:
            if not self._open():
                return 0
            assert self._write_conn is not None
            conn = self._write_conn
            # No VACUUM: new rows reuse the freed pages, so the file stops growing, and a
            # VACUUM of a large file would hold the writer (and the rows queued behind it).
            try:
                removed = roll_up(conn, before)
            except sqlite3.Error as exc:
                self._complaints.say("roll-up", "cannot roll up %s (%s)", self.path, exc)
                return 0
            return removed

    async def stats(self, since: str | None, by: str | None) -> dict[str, Any]:
        await self.flush()
        return self._query(query_stats, since, by)

    async def top_prompts(self, since: str | None, limit: int) -> list[dict[str, Any]]:
        await self.flush()
        return self._query(query_top_prompts, since, limit)

    async def latency(self, since: str | None, bucket: str) -> dict[str, Any]:
        await self.flush()
        return self._query(query_latency, since, bucket)

    def _query(self, query: Any, *args: Any) -> Any:
        """`query` on the file; StoreUnavailable (a 503, not a 500) when it cannot be read."""
        if self._read_conn is None:
            raise StoreUnavailable(
                f"the ledger {self.path} cannot be opened; requests are counted in memory "
                "until it can be"
            )
        try:
            return query(self._read_conn, *args)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot read the ledger {self.path}: {exc}") from None

    async def close(self) -> None:
        await self.flush()
        self._writer.shutdown(wait=True)
        if self._backlog:
            log.error(
                "%d ledger rows could not be written to %s before the stop; they are lost",
                len(self._backlog),
                self.path,
            )
        for conn in (self._write_conn, self._read_conn):
            if conn is not None:
                conn.close()
