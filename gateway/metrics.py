"""Prometheus metrics, in a registry of the app's own (no process-global state).

A request only adds to plain numbers; they become Prometheus families when /metrics is
scraped. prometheus-client's labelled counters take a lock and a label lookup per call,
which on the exact-hit path cost more than the cache lookup itself.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from gateway.backends import EVICTION_REASONS
from gateway.ledger import PAID_STATUSES, REPORTED, Record

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
GAUGES = {
    "cachegate_entries": "Entries stored",
    "cachegate_entry_bytes": "Bytes of entries stored",
    "cachegate_memory_entries": "Entries in the memory LRU",
    "cachegate_semantic_vectors": "Vectors in the semantic index",
    "cachegate_semantic_rebuilds": "Semantic index builds under way in the background",
}


class Latency:
    """One histogram's counts: per bucket (not cumulative), plus the sum of the values."""

    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, str]] = Counter()  # (endpoint, status, tier)
        self.tokens: Counter[tuple[str, str]] = Counter()  # (saved|spent, prompt|completion)
        self.usd: defaultdict[str, float] = defaultdict(float)  # saved | spent
        self.reported_bad: Counter[str] = Counter()  # by the tier the answer came from
        self.misses: Counter[str] = Counter()  # by reason (the ledger's `reason`)
        self.latency: dict[str, Latency] = {}  # by outcome
        self.gauges: dict[str, float] = dict.fromkeys(GAUGES, 0.0)
        self.model_runs: dict[str, int] = {}  # by model; read from the cache when scraped
        self.evictions: Mapping[str, int] = {}  # by reason; read from the store when scraped
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def observe(self, record: Record) -> None:
        status = record.status
        if status == REPORTED:  # feedback on an answer, not a request of a cached route
            self.reported_bad[record.tier or "unknown"] += 1
            return
        self.requests[record.endpoint, status, record.tier or ""] += 1
        if status == "HIT":
            outcome, account = "hit", "saved"
        elif status in PAID_STATUSES:
            outcome, account = "miss", "spent"
            if record.reason is not None:
                self.misses[record.reason] += 1
        else:
            outcome, account = status.lower(), None
        if account is not None:
            self.tokens[account, "prompt"] += record.prompt_tokens
            self.tokens[account, "completion"] += record.completion_tokens
            self.usd[account] += record.usd
        seconds = record.latency_ms / 1000
        latency = self.latency.get(outcome) or self.latency.setdefault(outcome, Latency())
        latency.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        latency.total += seconds

    def collect(self) -> Iterator[Metric]:
        """Called by the registry when /metrics is scraped."""
        requests = CounterMetricFamily(
            "cachegate_requests",
            "Requests by cache status and tier",
            labels=["endpoint", "status", "tier"],
        )
        for labels, count in sorted(self.requests.items()):
            requests.add_metric(list(labels), count)
        yield requests
        for kind, help_text in (
            ("saved", "Tokens served from cache"),
            ("spent", "Tokens paid for upstream"),
        ):
            tokens = CounterMetricFamily(f"cachegate_tokens_{kind}", help_text, labels=["kind"])
            for part in ("prompt", "completion"):
                tokens.add_metric([part], self.tokens[kind, part])
            yield tokens
        misses = CounterMetricFamily(
            "cachegate_misses", "Misses by why they missed", labels=["reason"]
        )
        for reason, count in sorted(self.misses.items()):
            misses.add_metric([reason], count)
        yield misses
        yield CounterMetricFamily(
            "cachegate_usd_saved", "USD saved by cache hits", value=self.usd["saved"]
        )
        yield CounterMetricFamily(
            "cachegate_usd_spent", "USD spent on upstream calls", value=self.usd["spent"]
        )
        reported = CounterMetricFamily(
            "cachegate_reported_bad",
            "Answers reported bad through POST /cache/feedback, by the tier they came from",
            labels=["tier"],
        )
        for tier in sorted({"exact", "semantic", *self.reported_bad}):  # 0 before any report
            reported.add_metric([tier], self.reported_bad[tier])
        yield reported
        histogram = HistogramMetricFamily(
            "cachegate_request_seconds", "Time to answer, by outcome", labels=["outcome"]
        )
        for outcome, latency in sorted(self.latency.items()):
            bounds = [*map(floatToGoString, LATENCY_BUCKETS), "+Inf"]
            cumulative, running = [], 0
            for bound, count in zip(bounds, latency.buckets, strict=True):
                running += count
                cumulative.append((bound, running))
            histogram.add_metric([outcome], cumulative, latency.total)
        yield histogram
        runs = CounterMetricFamily(
            "cachegate_model_runs",
            "Inputs run through the embedder or the verifier (remembered matches run neither)",
            labels=["model"],
        )
        for model, count in sorted(self.model_runs.items()):
            runs.add_metric([model], count)
        yield runs
        evictions = CounterMetricFamily(
            "cachegate_evictions",
            "Entries evicted to keep a bound: max_entries, max_store_bytes, tenant_quota",
            labels=["reason"],
        )
        for reason in EVICTION_REASONS:
            evictions.add_metric([reason], self.evictions.get(reason, 0))
        yield evictions
        for name, help_text in GAUGES.items():
            yield GaugeMetricFamily(name, help_text, value=self.gauges[name])

    def render(self) -> bytes:
        return generate_latest(self.registry)
