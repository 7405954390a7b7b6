"""The two tiers behind one object: where every cached answer is looked up and stored.

    exact:    memory LRU (bounded in bytes)  ->  durable store (SQLite or Redis)
    semantic: embed the text -> FAISS in the request's partition -> prompt guards and
              lexical guards -> verifier (policies/prompts.py, policies/guards.py)

Vectors live in the durable store beside their entries; the FAISS index is rebuilt from
there at start and kept in step with every store, purge, expiry and eviction (with Redis,
also those of other replicas: the store reports them through `learn`, `forget`, `reset`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np

from embeddings import Embedder
from embeddings.batcher import MicroBatcher, ModelWorkers
from embeddings.verifier import Candidate, CrossEncoderVerifier, language_bar
from gateway.backends import PurgeFilter, Store
from gateway.config import SemanticConfig
from gateway.entries import Entry
from gateway.semantic import SemanticIndex
from gateway.tracing import NO_TRACING, Tracing
from policies.decide import SemanticQuery
from policies.keys import digest
from policies.prompts import ENGLISH, Prompt, decompose, judge

log = logging.getLogger("cachegate.cache")
# Verified matches remembered for repeats of the same reworded request (see Cache.semantic).
VERDICTS_KEPT = 20_000
# The same request is answered by construction, not verified, so the cosine floor, which
# spares the verifier, does not bound it: a slip can pull a short prompt's cosine under
# it ("cancel my subcription": 0.59 on CPUs without VNNI). Where the floor is set above
# this cosine (the default is this cosine), the nearest candidates under it are read for
# the same request only.
SAME_REQUEST_FLOOR = 0.5

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


def remember(memo: dict[Key, Value], key: Key, value: Value, limit: int) -> None:
    """Keep `value` under `key`, dropping the oldest entry past `limit` (first in, first
    out: cheaper than an LRU, and whatever is dropped is rebuilt by the next request)."""
    if key not in memo and len(memo) >= limit:
        del memo[next(iter(memo))]
    memo[key] = value


def servable(entry: Entry | None, now: float, max_age: float | None) -> bool:
    """Whether a semantic match may answer: stored, fresh enough, and stored with its text
    (an entry re-stored in exact mode has none, and is no longer a semantic candidate)."""
    return entry is not None and entry.fresh(now, max_age) and entry.text is not None


class MemoryLRU:
    """Hot entries in memory, least recently used dropped first past `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self.bytes = 0

    def get(self, key: str) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, entry: Entry) -> None:
        self.remove([entry.key])
        if entry.size > self._max_bytes:
            return
        self._entries[entry.key] = entry
        self.bytes += entry.size
        while self.bytes > self._max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= dropped.size

    def remove(self, keys: Iterable[str]) -> None:
        for key in keys:
            dropped = self._entries.pop(key, None)
            if dropped is not None:
                self.bytes -= dropped.size

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True, slots=True)
class MissReason:
    """Why a lookup found nothing to serve, as the ledger records it (INTERFACE.md)."""

    reason: str  # no_entry | no_candidate | guard_veto | below_threshold | exact_only | expired
    detail: str | None = None  # which guard, which exact-only policy, or ttl | max-age
    score: float | None = None  # the calibrated score of the candidate that was scored


NO_ENTRY = MissReason("no_entry")
NO_CANDIDATE = MissReason("no_candidate")


class Match(NamedTuple):
    """A request's verified match, remembered: a repeat is served from it without the
    models while its score still clears the repeat's threshold plus `margin`."""

    key: str
    score: float
    margin: float  # its language's margin (Calibration.margin)


@dataclass(slots=True)
class SemanticResult:
    entry: Entry | None  # the verified match, if any
    score: float | None  # its calibrated score
    vector: np.ndarray | None  # the request's embedding, reused when its answer is stored
    why: MissReason | None = None  # why there is no match


class Cache:
    def __init__(
        self,
        store: Store,
        memory_bytes: int,
        semantic: SemanticConfig,
        embedder: Embedder | None,
        verifier: CrossEncoderVerifier | None,
        index_folder: Path | None = None,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self.store = store
        self._tracing = tracing
        self.memory = MemoryLRU(memory_bytes)
        self._semantic = semantic
        self.index = (
            SemanticIndex(embedder.dim, semantic.hnsw_from, snapshots=index_folder)
            if embedder
            else None
        )
        self._workers = ModelWorkers(semantic.worker_count)
        self._embed = (
            MicroBatcher(embedder.encode, semantic.batch_max, self._workers) if embedder else None
        )
        self._verify = (
            MicroBatcher(verifier.scores, semantic.batch_max, self._workers) if verifier else None
        )
        self._calibration = verifier.calibration if verifier else None
        # digest(context key, text) -> its verified match.
        self._verdicts: dict[str, Match] = {}
        # Stored texts taken apart, by text (see `prompt`).
        self._prompts: dict[str, Prompt] = {}

    async def start(self, oldest_expiry: float) -> None:
        """The store loads the semantic index (vectors of entries expiring after
        `oldest_expiry`) and from then on tells this cache what changes under it."""
        await self.store.start(self, oldest_expiry)

    def load(self, rows: Iterable[tuple[str, str, bytes]]) -> None:
        """Index (key, context_key, vector) rows read from the store: all of them, at start
        or when a shared store was replaced, since each partition is loaded whole."""
        if self.index is None:
            return
        by_partition: dict[str, tuple[list[str], list[bytes]]] = {}
        for key, context_key, vector in rows:
            keys, vectors = by_partition.setdefault(context_key, ([], []))
            keys.append(key)
            vectors.append(vector)
        self.index.prune_snapshots(keep=by_partition)
        for context_key, (keys, vectors) in by_partition.items():
            matrix = np.frombuffer(b"".join(vectors), dtype=np.float32).reshape(len(keys), -1)
            if matrix.shape[1] == self.index.dim:
                self.index.load(context_key, keys, matrix)

    # -- lookups ----------------------------------------------------------------------
    async def get(self, key: str) -> Entry | None:
        """The entry under `key`, fresh or not (callers decide what is acceptable)."""
        if not self.store.available:  # a shared store is unreachable: pass requests through
            return None
        entry = self.memory.get(key)
        if entry is None:
            entry = await self.store.get(key)
            if entry is not None:
                self.memory.put(entry)
        return entry

    async def exact(self, key: str, now: float, max_age: float | None) -> Entry | None:
        entry = await self.get(key)
        return entry if entry is not None and entry.fresh(now, max_age) else None

    async def embed(self, text: str) -> np.ndarray:
        assert self._embed is not None, "no embedder is loaded"
        with self._tracing.span("embedding"):
            return await self._embed.submit(text)

    async def verify(self, candidate: Candidate) -> float:
        """The verifier's score of a candidate (the wait for its batch included)."""
        assert self._verify is not None, "no verifier is loaded"
        with self._tracing.span("verification"):
            return float(await self._verify.submit(candidate))

    async def semantic(
        self, query: SemanticQuery, now: float, max_age: float | None
    ) -> SemanticResult:
        """The best verified match in the query's partition, or no entry.

        An empty partition (a new conversation's later turns, a new system prompt) has
        nothing to compare with: the text is embedded only if its answer is stored, after
        upstream answered, so the request reaches upstream without waiting for the model.

        A verdict is a pure function of the two texts, so a repeat of a request that was
        matched before reuses its match and score without running the models, as long as
        the entry can still be served and the score meets this request's bar. (The full
        lookup verifies only the nearest candidate that the guards pass: after a nearer
        entry is stored, it might now miss where the remembered, verified match still hits.)
        """
        assert self._embed is not None and self.index is not None
        if not self.index.holds(query.context_key):
            return SemanticResult(None, None, None, NO_ENTRY)
        asked = digest(query.context_key, query.text)
        known = self._verdicts.get(asked)
        if known is not None and known.score >= language_bar(query.threshold, known.margin):
            entry = await self.get(known.key)
            if servable(entry, now, max_age):
                return SemanticResult(entry, known.score, None)
        vector = await self.embed(query.text)
        prompt = decompose(query.text)
        # Prompts in other languages clear their own bar (Calibration.margin).
        english = prompt.language == ENGLISH
        margin = 0.0 if self._calibration is None else self._calibration.margin(english)
        bar = language_bar(query.threshold, margin)
        floor = self.cosine_floor(bar, english)
        # Why this misses: what stopped the nearest candidate looked at, or the score of
        # the one the verifier scored (which the threshold what-if reads).
        why: MissReason | None = None
        lowest = min(SAME_REQUEST_FLOOR, self._semantic.cosine_floor)
        for key, cosine in self.index.search(query.context_key, vector):
            if cosine < lowest:
                break
            # Under the configured floor only the same request is looked for; such a
            # candidate is no reason for a miss (no_candidate stays "none over the floor").
            under_floor = cosine < self._semantic.cosine_floor
            entry = await self.get(key)
            if not servable(entry, now, max_age):
                if entry is not None and entry.text is not None and not under_floor:
                    why = why or MissReason("expired", entry.too_old(now))
                continue
            assert entry is not None and entry.text is not None  # servable says so
            verdict = judge(prompt, self.prompt(entry.text))
            if under_floor and not verdict.same:
                continue
            # Only the calibrated cross-encoder weighs a swapped word: without it, it vetoes.
            swap_vetoes = verdict.swapped and self._verify is None
            guard = verdict.guard or ("swapped-word" if swap_vetoes else None)
            if guard is not None:
                why = why or MissReason("guard_veto", guard)
                continue
            # Under `floor` only the same request can answer: no verdict could lift it.
            if cosine < floor and not verdict.same:
                # Without a cross-encoder its cosine is its score.
                unverified = round(cosine, 4) if self._verify is None else None
                why = why or MissReason("below_threshold", score=unverified)
                continue
            # The same request but for greetings, thanks, case and the like: its answer is
            # right by construction (score 1), whatever the models would make of the noise.
            # Otherwise the verifier decides on the nearest candidate the guards let through,
            # to the 4 decimals of X-Cache-Similarity, so the header never shows a score
            # under the X-Cache-Threshold it passed, nor equal to one it failed.
            score = round(
                1.0
                if verdict.same
                else cosine
                if self._verify is None
                else await self.verify(
                    Candidate(
                        query.text, entry.text, cosine, verdict.overlap, verdict.swapped, english
                    )
                ),
                4,
            )
            if score >= bar:
                remember(self._verdicts, asked, Match(entry.key, score, margin), VERDICTS_KEPT)
                return SemanticResult(entry, score, vector)
            why = MissReason("below_threshold", score=score)
            break
        return SemanticResult(None, None, vector, why or NO_CANDIDATE)

    def prompt(self, text: str) -> Prompt:
        """A stored text taken apart (policies/prompts.py), kept: it is asked again and again."""
        known = self._prompts.get(text)
        if known is None:
            known = decompose(text)
            remember(self._prompts, text, known, VERDICTS_KEPT)
        return known

    def cosine_floor(self, threshold: float, english: bool = True) -> float:
        """The cosine a candidate needs to be worth verifying: the configured floor, or
        higher where no verdict could lift a lower cosine to `threshold` (most misses'
        nearest neighbours lie there, and each saves a verifier run)."""
        reachable = (
            threshold  # without a cross-encoder the score is the cosine
            if self._calibration is None
            else self._calibration.lowest_cosine(threshold, english)
        )
        return max(self._semantic.cosine_floor, reachable)

    def model_runs(self) -> dict[str, int]:
        """Inputs run through each model so far, for /metrics."""
        batchers = {"embedder": self._embed, "verifier": self._verify}
        return {name: batcher.runs for name, batcher in batchers.items() if batcher is not None}

    # -- changes ----------------------------------------------------------------------
    def put(self, entry: Entry, vector: np.ndarray | None) -> None:
        if not self.store.available:  # nothing is cached that the store would not hold
            return
        if vector is not None and entry.context_key is not None:
            entry.vector = vector.astype(np.float32).tobytes()
        self.memory.put(entry)
        self.store.put(entry)
        if self.index is not None and vector is not None and entry.context_key is not None:
            self.index.add(entry.context_key, entry.key, vector)

    def hit(self, entry: Entry, now: float) -> None:
        entry.hits += 1
        self.store.hit(entry.key, now)

    def forget(self, keys: list[str]) -> None:
        """Drop keys the store no longer holds (purged, expired or evicted)."""
        self.memory.remove(keys)
        if self.index is not None:
            self.index.remove(keys)

    def learn(self, key: str, context_key: str | None, vector: bytes | None) -> None:
        """Another replica stored `key`: drop the copy held here, index its vector."""
        self.memory.remove([key])
        if self.index is not None and context_key is not None and vector is not None:
            row = np.frombuffer(vector, dtype=np.float32).copy()
            if row.size == self.index.dim:
                self.index.add(context_key, key, row)

    def reset(self) -> None:
        """Drop every local copy: the shared store was replaced (Redis restarted empty)."""
        self.memory.clear()
        self._verdicts.clear()
        if self.index is not None:
            self.index.clear()

    async def purge(self, where: PurgeFilter, now: float) -> int:
        keys = await self.store.delete(where, now)
        self.forget(keys)
        return len(keys)

    async def sweep(self, now: float, max_stale: float) -> int:
        keys = await self.store.sweep(now, max_stale)
        self.forget(keys)
        return len(keys)

    async def close(self) -> None:
        self._workers.close()
        await self.store.close()  # the entries first: the saved index is only a shortcut
        if self.index is not None:
            # Seconds at a million vectors, once at a stop: the next start has nothing to add.
            self.index.save_changed()
            self.index.close()
