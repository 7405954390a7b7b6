"""`cachegate export` and `cachegate import`: live entries as JSON lines, so a cache moves
between data dirs and between SQLite and Redis.

One line per entry: `key`, `tenant`, `namespace`, `endpoint`, `model`, `tags`,
`created_at`, `expires_at`, `request` (what the semantic tier compares, `text` in the
partition `context_key`, and the original request `body` that refresh-ahead resends,
when stored), `response` (the answer as served) and the bookkeeping a hit reports (`usage`,
`upstream_ms`, `hits`). Vectors are not exported: import recomputes them with the
configured embedder, so a file also moves entries to a gateway with another model.
Export only reads (a gateway may serve the data dir meanwhile); import writes the store
directly, so a SQLite data dir must not be served while it runs (a Redis may be: its
replicas learn the imported entries from the change stream).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from gateway import datadir
from gateway.config import Config
from gateway.entries import Entry
from policies.controls import MAX_TAGS, valid_tag

EMBED_BATCH = 64


def entry_record(entry: Entry) -> dict[str, Any]:
    """The JSON object of one exported entry."""
    request: dict[str, Any] = {"context_key": entry.context_key, "text": entry.text}
    if entry.request is not None:
        request["body"] = json.loads(entry.request)
    return {
        "key": entry.key,
        "tenant": entry.tenant,
        "namespace": entry.namespace,
        "endpoint": entry.endpoint,
        "model": entry.model,
        "tags": list(entry.tags),
        "created_at": entry.created_at,
        "expires_at": entry.expires_at,
        "request": request,
        "response": json.loads(entry.body),
        "usage": {
            "prompt_tokens": entry.prompt_tokens,
            "completion_tokens": entry.completion_tokens,
        },
        "upstream_ms": entry.upstream_ms,
        "hits": entry.hits,
    }


def record_entry(record: Any) -> Entry:
    """The entry of one exported line (vector not yet computed); ValueError says what is
    wrong with a line that is not one."""
    try:
        request = record.get("request") or {}
        usage = record.get("usage") or {}
        body = request.get("body")
        entry = Entry(
            key=str(record["key"]),
            tenant=str(record["tenant"]),
            namespace=str(record["namespace"]),
            endpoint=str(record["endpoint"]),
            model=str(record["model"]),
            body=json.dumps(record["response"], separators=(",", ":")).encode(),
            created_at=float(record["created_at"]),
            expires_at=float(record["expires_at"]),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            upstream_ms=float(record.get("upstream_ms") or 0),
            context_key=str(request["context_key"]) if request.get("context_key") else None,
            text=str(request["text"]) if request.get("text") else None,
            hits=int(record.get("hits") or 0),
            request=json.dumps(body, separators=(",", ":")).encode() if body else None,
            tags=tuple(str(tag) for tag in record.get("tags") or ()),
        )
    except KeyError as exc:
        raise ValueError(f"no {exc.args[0]!r}") from None
    except (AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f"a field has the wrong type ({exc})") from None
    if not all(map(valid_tag, entry.tags)) or len(entry.tags) > MAX_TAGS:
        raise ValueError(f"'tags' must be at most {MAX_TAGS} tags as X-Cache-Tags takes them")
    if (entry.text is None) != (entry.context_key is None):
        raise ValueError("'request' needs both 'text' and 'context_key', or neither")
    return entry


async def live_entries(config: Config, now: float) -> AsyncIterator[Entry]:
    """Every entry of `config`'s backend still fresh at `now`, read without writing."""
    if config.backend == "sqlite":
        from gateway.store import read_live_entries

        path = config.data_dir / "entries.db"
        if not path.is_file():
            raise SystemExit(f"cachegate: no entries at {path}; is --data-dir a gateway's?")
        for entry in read_live_entries(path, now):
            yield entry
        return
    from gateway.redis import open_redis

    store, _ = open_redis(config)
    try:
        async for entry in store.live_entries(now):
            yield entry
    finally:
        await store.link.close()


async def export(
    config: Config, out: IO[str], namespace: str | None, tag: str | None, now: float
) -> int:
    """Write the live entries (of one namespace, with one tag, when given); how many."""
    written = 0
    async for entry in live_entries(config, now):
        if (namespace and entry.namespace != namespace) or (tag and tag not in entry.tags):
            continue
        out.write(json.dumps(entry_record(entry), ensure_ascii=False) + "\n")
        written += 1
    return written


def read_records(path: Path, counts: Counter[str], now: float) -> Iterator[Entry]:
    """The entries of an export file still fresh at `now`; bad lines are said and counted."""
    with path.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, 1):
            if not text.strip():
                continue
            try:
                entry = record_entry(json.loads(text))
            except ValueError as exc:
                print(f"line {number}: not an exported entry: {exc}")
                counts["failed"] += 1
                continue
            if entry.expires_at <= now:
                counts["expired"] += 1
            else:
                yield entry


async def import_entries(config: Config, path: Path, now: float) -> Counter[str]:
    """Store the fresh entries of `path` in `config`'s backend, vectors recomputed; counts
    of `imported`, `expired` (skipped) and `failed` lines."""
    from gateway.app import make_backend

    counts: Counter[str] = Counter()
    entries = list(read_records(path, counts, now))
    vectors = embed_texts(config, [entry.text for entry in entries if entry.text is not None])
    lock = None
    if config.backend == "sqlite":
        try:
            lock = datadir.hold(config.data_dir)
        except datadir.DataDirInUse as exc:
            raise SystemExit(
                f"cachegate: {exc}; stop it to import, or warm it through its API instead"
            ) from None
        if lock is None or not os.access(config.data_dir, os.W_OK):
            # A store there would be a memory one, gone when this ends.
            raise SystemExit(f"cachegate: cannot write to {config.data_dir}; nothing imported")
    store, ledger = make_backend(config)
    try:
        await writable(store)
        for entry in entries:
            if entry.text is not None:  # no vector with the semantic tier off
                entry.vector = vectors.get(entry.text)
            store.put(entry)
            counts["imported"] += 1
        await store.flush()
    finally:
        await store.close()
        await ledger.close()
        if lock is not None:
            lock.close()
    return counts


async def writable(store: Any) -> None:
    """A Redis store writes once its link is up (a gateway's is, after its start)."""
    from gateway.redis import RedisStore

    if isinstance(store, RedisStore):
        await store.link.claim_epoch()
        store.link.back()


def embed_texts(config: Config, texts: list[str]) -> dict[str, bytes]:
    """float32 vectors of `texts` by the configured embedder ({} with semantic off)."""
    if not texts or not config.semantic.enabled:
        return {}
    from embeddings import load_embedder

    embedder = load_embedder(config.semantic.embedder, config.semantic.threads)
    unique = list(dict.fromkeys(texts))
    vectors: dict[str, bytes] = {}
    for start in range(0, len(unique), EMBED_BATCH):
        batch = unique[start : start + EMBED_BATCH]
        matrix = np.asarray(embedder.encode(batch), dtype=np.float32)
        vectors.update(zip(batch, (row.tobytes() for row in matrix), strict=True))
    return vectors
