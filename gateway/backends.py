"""The seams between the cache and where things are kept: a `Store` of entries and a
`Ledger` of requests, and the words they share.

Two backends implement both: SQLite files in the data dir (gateway/store.py, SqliteStore;
gateway/ledger.py, SqliteLedger) and one Redis shared by replicas (gateway/redis/:
RedisStore, RedisLedger). mypy checks each against these protocols where app.make_backend
picks one. A feature that keeps something (a tag, a quota, a count) is added here first,
then to each backend.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from gateway.entries import BodyCodec, DamagedBody, Entry, tags_of, tags_text

if TYPE_CHECKING:  # gateway.ledger imports the SQLite helpers of gateway.store, which import this
    from gateway.config import Config
    from gateway.ledger import Record

log = logging.getLogger("cachegate.ledger")


COLUMNS = (  # an Entry's fields as a store keeps them (tags as tags_text)
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
    "tags",
)
STORED_COLUMNS = (*COLUMNS, "compressed")  # what a store writes: the body maybe packed
# Bits of `compressed`: which of an entry's bytes a store keeps zstd-packed (1 alone, as
# written before requests were kept, is still the body).
BODY_PACKED, REQUEST_PACKED = 1, 2
Eviction = Literal["lru", "lfu", "ttl"]
EVICTION_REASONS = ("max_entries", "max_store_bytes", "tenant_quota")  # for /metrics


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """What a store keeps: its bounds, what goes first past them (least recently used,
    least often hit, nearest to expiry), what it compresses."""

    max_entries: int = 1_000_000
    max_bytes: int = 4 * 2**30
    max_entries_per_tenant: int | None = None  # None: a tenant is bounded by max_entries only
    eviction: Eviction = "lru"
    compress_min_bytes: int | None = 1024  # None: bodies are stored as they are

    @classmethod
    def of(cls, config: Config) -> StoreLimits:
        return cls(
            max_entries=config.max_entries,
            max_bytes=config.max_store_bytes,
            max_entries_per_tenant=config.max_entries_per_tenant,
            eviction=config.eviction,  # type: ignore[arg-type]
            compress_min_bytes=config.compress_min_bytes,
        )


def stored_row(entry: Entry, codec: BodyCodec) -> tuple[dict[str, Any], int]:
    """An entry as a store writes it (STORED_COLUMNS: the body and the request packed
    past the codec's bound, `compressed` saying which, tags as text), and the bytes it
    takes there (what max_store_bytes bounds)."""
    body, body_packed = codec.pack(entry.body)
    request, request_packed = (None, False) if entry.request is None else codec.pack(entry.request)
    values = {name: getattr(entry, name) for name in COLUMNS}
    values.update(
        body=body,
        request=request,
        tags=tags_text(entry.tags),
        compressed=BODY_PACKED * body_packed | REQUEST_PACKED * request_packed,
    )
    return values, len(body) + len(request or b"") + entry.overhead


def entry_of(values: Mapping[str, Any], codec: BodyCodec) -> Entry | None:
    """The entry of stored values (stored_row's, or one written before compression or
    tags), or None when its body does not unpack or fails its checksum."""
    fields = {name: values[name] for name in COLUMNS if values.get(name) is not None}
    try:
        packed = int(values.get("compressed") or 0)
        fields["body"] = codec.unpack(fields["body"], bool(packed & BODY_PACKED))
        if "request" in fields:
            fields["request"] = codec.unpack(fields["request"], bool(packed & REQUEST_PACKED))
        fields["tags"] = tags_of(fields.get("tags"))
        entry = Entry(**fields)
        return entry if entry.intact() else None
    except (DamagedBody, KeyError, TypeError, AttributeError):  # a field of the wrong type
        return None


def regexp(pattern: str, text: str | None) -> bool:
    """Whether `pattern` is found in `text` (re caches compiled patterns)."""
    return text is not None and re.search(pattern, text) is not None


class StoreUnavailable(Exception):
    """A store cannot be reached or written; an admin route answers 503 with this message."""


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
    tag: str | None = None  # entries stored with this tag
    prompt: str | None = None  # a regular expression searched in the stored compared text

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
        if self.tag is not None:
            clauses.append("instr(tags, ?) > 0")
            args.append(tags_text((self.tag,)))
        if self.prompt is not None:
            clauses.append("text REGEXP ?")  # SQLite calls regexp(), store.connect adds it
            args.append(self.prompt)
        if not clauses and not self.everything:
            return "0", []
        return " AND ".join(clauses) or "1", args

    @property
    def columns(self) -> tuple[str, ...]:
        """The stored values `matches` reads."""
        wanted = ("namespace", "model", "tenant", "created_at")
        return (*wanted, *(("tags",) if self.tag else ()), *(("text",) if self.prompt else ()))

    def matches(self, values: Mapping[str, Any], now: float) -> bool:
        """`where` for one entry's values, for stores without SQL."""
        checks = [values.get(column) == value for column, value in self._equal()]
        if self.older_than is not None:
            created_at = values.get("created_at")
            checks.append(created_at is not None and created_at < now - self.older_than)
        if self.tag is not None:
            checks.append(self.tag in tags_of(values.get("tags")))
        if self.prompt is not None:
            checks.append(regexp(self.prompt, values.get("text")))
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


# What list_entries tells of an entry (`text`: the compared text, for the entry browser).
LISTED = (
    "key",
    "model",
    "namespace",
    "endpoint",
    "text",
    "tags",  # as tags_text writes them
    "created_at",
    "expires_at",
    "hits",
    "size",
    "prompt_tokens",
    "completion_tokens",
)


class Store(Protocol):
    """The durable entries behind the cache's memory LRU. Reads are awaited by requests;
    `put` and `hit` queue their writes and return at once, so no response waits for them."""

    count: int  # entries held and their bytes, as last seen (the admin gauges)
    bytes: int

    @property
    def evictions(self) -> Mapping[str, int]:
        """Entries this process evicted, by EVICTION_REASONS (for /metrics)."""

    @property
    def available(self) -> bool:
        """False while a shared store cannot be reached: requests pass through uncached."""

    async def start(self, changes: Changes, oldest_expiry: float) -> None:
        """Hand `changes` every vector of entries expiring after `oldest_expiry`, then tell
        it what changes (other replicas' writes, evictions) until closed."""

    async def get(self, key: str) -> Entry | None:
        """The entry stored under `key`; None when absent or damaged (a damaged one is deleted)."""

    async def list_entries(
        self, namespace: str | None, limit: int, prompt: re.Pattern[str] | None = None
    ) -> list[dict[str, Any]]:
        """Entries newest first (LISTED fields), optionally of one namespace, or whose
        compared text `prompt` finds; raises StoreUnavailable."""

    def put(self, entry: Entry) -> None:
        """Store `entry` (replacing one of its key), first evicting exactly what the
        StoreLimits need, in their eviction order, and never another tenant's entries for
        a tenant at its quota."""

    def hit(self, key: str, now: float) -> None:
        """Count a hit on `key`."""

    async def claim_refresh(self, key: str, expires_at: float) -> bool:
        """Whether the caller is the one to refresh the version of `key` that expires at
        `expires_at` (refresh-ahead's single flight, across replicas of a shared store)."""

    async def delete(self, where: PurgeFilter, now: float) -> list[str]:
        """Remove matching entries; returns their keys. Raises StoreUnavailable."""

    async def sweep(self, now: float, max_stale: float) -> list[str]:
        """Drop entries past their stale window; returns their keys."""

    async def flush(self) -> None:
        """Wait until the writes queued so far are done (or dropped)."""

    async def claim_flight(self, key: str) -> str | None:
        """Single-flight across processes sharing the store: None when another process
        calls upstream for `key` now (wait for its answer); else this one does, and
        releases the returned token after."""

    async def release_flight(self, key: str, token: str) -> None:
        """End the flight claimed with `token`, once its answer is stored (or failed)."""

    async def close(self) -> None:
        """Flush, then let go of files and connections."""


class Ledger(Protocol):
    """Every request, one record each, written in batches off the request path."""

    def record(self, record: Record) -> None:
        """Queue one request's record; never waits."""

    async def flush(self) -> None:
        """Write the queued records (a shared ledger keeps them queued while unreachable)."""

    async def stats(self, since: str | None, by: str | None) -> dict[str, Any]:
        """The numbers of `/cache/stats` over the window `since`, split `by` a column."""

    async def top_prompts(self, since: str | None, limit: int) -> list[dict[str, Any]]:
        """The entries that saved the most dollars over the window `since`."""

    async def latency(self, since: str | None, bucket: str) -> dict[str, Any]:
        """p50/p95 latency of hits and misses by time bucket over the window `since`."""

    async def roll_up(self, before: float) -> int:
        """Roll the rows older than `before` into daily totals (stats still count them);
        how many rows went."""

    async def close(self) -> None:
        """Flush, then let go of files and connections."""


async def roll_up_every(ledger: Ledger, retention: float) -> None:
    """Roll up the ledger's rows older than `retention` seconds now and then daily (or
    every `retention`, when shorter) until cancelled."""
    while True:
        try:
            rolled = await ledger.roll_up(time.time() - retention)
            if rolled:
                log.info(
                    "ledger: %d rows older than %gs rolled up into daily totals", rolled, retention
                )
        except Exception:  # the next round tries again; the rows stay counted meanwhile
            log.exception("ledger roll-up failed; the next one runs as usual")
        await asyncio.sleep(min(86400.0, max(retention, 1.0)))


async def flush_every(ledger: Ledger, seconds: float) -> None:
    """Flush the ledger every `seconds` until cancelled."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await ledger.flush()
        except Exception:  # a batch that could not be written must not stop the next ones
            log.exception("ledger flush failed; the next one runs as usual")
