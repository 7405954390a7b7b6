"""Prometheus metrics, in a registry of the app's own (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gateway.ledger import Record

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "cachegate_requests",
            "Requests by cache status and tier",
            ["endpoint", "status", "tier"],
            registry=r,
        )
        self.tokens_saved = Counter(
            "cachegate_tokens_saved", "Tokens served from cache", ["kind"], registry=r
        )
        self.tokens_spent = Counter(
            "cachegate_tokens_spent", "Tokens paid for upstream", ["kind"], registry=r
        )
        self.usd_saved = Counter("cachegate_usd_saved", "USD saved by cache hits", registry=r)
        self.usd_spent = Counter("cachegate_usd_spent", "USD spent on upstream calls", registry=r)
        self.latency = Histogram(
            "cachegate_request_seconds",
            "Time to answer, by outcome",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.entries = Gauge("cachegate_entries", "Entries stored", registry=r)
        self.entry_bytes = Gauge("cachegate_entry_bytes", "Bytes of entries stored", registry=r)
        self.memory_entries = Gauge(
            "cachegate_memory_entries", "Entries in the memory LRU", registry=r
        )
        self.vectors = Gauge(
            "cachegate_semantic_vectors", "Vectors in the semantic index", registry=r
        )

    def observe(self, record: Record) -> None:
        self.requests.labels(record.endpoint, record.status, record.tier or "").inc()
        hit = record.status == "HIT"
        if hit:
            self.tokens_saved.labels("prompt").inc(record.prompt_tokens)
            self.tokens_saved.labels("completion").inc(record.completion_tokens)
            self.usd_saved.inc(record.usd)
        elif record.status in ("MISS", "REFRESH", "BYPASS"):
            self.tokens_spent.labels("prompt").inc(record.prompt_tokens)
            self.tokens_spent.labels("completion").inc(record.completion_tokens)
            self.usd_spent.inc(record.usd)
        outcome = (
            "hit"
            if hit
            else "miss"
            if record.status in ("MISS", "REFRESH", "BYPASS")
            else record.status.lower()
        )
        self.latency.labels(outcome).observe(record.latency_ms / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)
