"""`cachegate analyze`: what the ledger and the entries say about a cache's settings.

The computations here are pure functions over rows already read (no I/O, no clock: `now`
is passed in), so each is tested on rows made by hand; `read_ledger` and the entry readers
in the CLI fetch those rows. Every recommendation carries the figure behind it.
"""

from __future__ import annotations

import sqlite3
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway.ledger import parse_since, query_stats, query_top_prompts

# Thresholds the what-if tries, besides the configured one.
WHAT_IF_THRESHOLDS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
# Misses a namespace or model needs before "it never hits" is advice rather than noise.
NEVER_HIT_MIN_MISSES = 10
HOTTEST = 10


@dataclass(frozen=True, slots=True)
class LedgerRows:
    """What analyze reads from the ledger, for a window."""

    stats: dict[str, Any]  # query_stats totals
    reasons: list[tuple[str | None, str | None, int]]  # (reason, detail, misses)
    # (kind, score, requests): kind "hit" for a semantic hit's similarity, "miss" for the
    # score of the candidate a below_threshold miss scored.
    scores: list[tuple[str, float, int]]
    # (key, ts, status, reason, requests) of every row of a key that missed as expired
    # (ttl), oldest first: when its answer was stored, when it was asked again.
    expired_keys: list[tuple[str, float, str, str | None, int]]
    hottest: list[dict[str, Any]]
    namespaces: list[dict[str, Any]]
    models: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class EntrySummary:
    entries: int
    bytes: int
    hit_entries: int  # entries served at least once: the hot set
    hit_bytes: int
    expired: int  # expired, still held until the sweep (max_stale)
    expired_unused: int  # of those, never served


@dataclass(frozen=True, slots=True)
class Settings:
    """The configured values the advice compares with."""

    threshold: float
    default_ttl: float
    memory_bytes: int


def read_ledger(conn: sqlite3.Connection, since: str | None, now: float) -> LedgerRows:
    """The ledger rows analyze needs (SQL aggregates: a ledger may hold millions of rows)."""
    window = parse_since(since)
    cutoff = now - window if window is not None else 0.0
    reasons = conn.execute(
        "SELECT reason, detail, sum(requests) FROM requests WHERE ts >= ? AND status = 'MISS' "
        "GROUP BY reason, detail ORDER BY 3 DESC",
        (cutoff,),
    ).fetchall()
    scores = conn.execute(
        "SELECT CASE WHEN status = 'HIT' THEN 'hit' ELSE 'miss' END, "
        "coalesce(score, similarity) AS s, sum(requests) FROM requests WHERE ts >= ? AND ("
        "(status = 'HIT' AND tier = 'semantic' AND similarity IS NOT NULL) OR "
        "(status = 'MISS' AND reason = 'below_threshold' AND score IS NOT NULL)) "
        "GROUP BY 1, 2",
        (cutoff,),
    ).fetchall()
    expired_keys = conn.execute(
        "SELECT key, ts, status, reason, requests FROM requests WHERE key IN ("
        "SELECT key FROM requests WHERE ts >= ? AND status = 'MISS' AND reason = 'expired' "
        "AND detail = 'ttl') ORDER BY key, ts",
        (cutoff,),
    ).fetchall()
    return LedgerRows(
        stats=query_stats(conn, since, None, now),
        reasons=[(reason, detail, int(count)) for reason, detail, count in reasons],
        scores=[(kind, float(score), int(count)) for kind, score, count in scores],
        expired_keys=expired_keys,
        hottest=query_top_prompts(conn, since, HOTTEST, now),
        namespaces=query_stats(conn, since, "namespace", now)["groups"],
        models=query_stats(conn, since, "model", now)["groups"],
    )


def summarize_entries(rows: Iterable[tuple[int, int, float]], now: float) -> EntrySummary:
    """(hits, size, expires_at) of every stored entry."""
    entries = size_sum = hit_entries = hit_bytes = expired = expired_unused = 0
    for hits, size, expires_at in rows:
        entries += 1
        size_sum += size
        if hits > 0:
            hit_entries += 1
            hit_bytes += size
        if expires_at <= now:
            expired += 1
            expired_unused += hits == 0
    return EntrySummary(entries, size_sum, hit_entries, hit_bytes, expired, expired_unused)


# -- the parts of the report --------------------------------------------------------------
def tiers(stats: dict[str, Any]) -> dict[str, Any]:
    looked = stats["hits"] + stats["misses"]

    def rate(count: int) -> float:
        return round(count / looked, 6) if looked else 0.0

    return {
        "requests": stats["requests"],
        "hits": stats["hits"],
        "misses": stats["misses"],
        "hit_rate": rate(stats["hits"]),
        "exact_hits": stats["exact_hits"],
        "exact_hit_rate": rate(stats["exact_hits"]),
        "semantic_hits": stats["semantic_hits"],
        "semantic_hit_rate": rate(stats["semantic_hits"]),
    }


def miss_reasons(rows: list[tuple[str | None, str | None, int]]) -> list[dict[str, Any]]:
    """Misses by reason, most first, each with its share and its details (which guard,
    which policy, ttl or max-age). Rows written before reasons were kept read `unknown`."""
    total = sum(count for _, _, count in rows)
    by_reason: dict[str, dict[str, Any]] = {}
    for reason, detail, count in rows:
        group = by_reason.setdefault(
            reason or "unknown", {"reason": reason or "unknown", "misses": 0, "details": {}}
        )
        group["misses"] += count
        if detail is not None:
            group["details"][detail] = group["details"].get(detail, 0) + count
    ordered = sorted(by_reason.values(), key=lambda g: (-g["misses"], g["reason"]))
    for group in ordered:
        group["share"] = round(group["misses"] / total, 6) if total else 0.0
        group["details"] = dict(sorted(group["details"].items(), key=lambda d: (-d[1], d[0])))
    return ordered


def threshold_what_if(
    scores: list[tuple[str, float, int]], current: float, thresholds: Iterable[float]
) -> list[dict[str, Any]]:
    """For each threshold: the semantic hits that would have been lost (their score under
    it) and the misses that would have hit (a scored candidate at or over it). Misses
    whose nearest candidate was never scored (no candidate near enough, a guard's veto, or
    a cosine no verdict could lift) are not counted: the figures are a lower bound."""
    rows = []
    for threshold in sorted({*thresholds, round(current, 4)}):
        gained = sum(n for kind, score, n in scores if kind == "miss" and score >= threshold)
        lost = sum(n for kind, score, n in scores if kind == "hit" and score < threshold)
        rows.append(
            {
                "threshold": threshold,
                "current": threshold == round(current, 4),
                "hits_gained": gained,
                "hits_lost": lost,
                "net": gained - lost,
            }
        )
    return rows


def reask_ages(rows: list[tuple[str, float, str, str | None, int]], since: float) -> list[float]:
    """Seconds between storing an answer and asking for it again after it expired: for
    each expired (ttl) miss at or after `since`, the time since the last miss or refresh
    of the same key before it (when its answer was stored)."""
    ages: list[float] = []
    stored: dict[str, float] = {}
    for key, ts, status, reason, requests in rows:
        if status == "MISS" and reason == "expired" and ts >= since and key in stored:
            ages += [ts - stored[key]] * requests
        if status in ("MISS", "REFRESH"):
            stored[key] = ts
    return ages


def never_hit(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Groups (namespaces, models) that missed and never hit, most misses first."""
    found = [
        {"name": g["name"], "misses": g["misses"]}
        for g in groups
        if g["hits"] == 0 and g["misses"] > 0
    ]
    return sorted(found, key=lambda g: (-g["misses"], str(g["name"])))


# -- advice ---------------------------------------------------------------------------------
def duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.3g}s"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}{'es' if noun[-1] == 's' else 's'}"


def megabytes(count: int) -> str:
    return f"{count / 2**20:.1f} MiB"


def ttl_advice(
    reasons: list[dict[str, Any]], ages: list[float], entries: EntrySummary | None, ttl: float
) -> list[dict[str, Any]]:
    advice = []
    misses = sum(g["misses"] for g in reasons)
    expired = next((g for g in reasons if g["reason"] == "expired"), None)
    by_ttl = expired["details"].get("ttl", 0) if expired else 0
    by_max_age = expired["details"].get("max-age", 0) if expired else 0
    if by_ttl:
        text = (
            f"{by_ttl} of {misses} misses ({by_ttl / misses:.0%}) asked again for an answer "
            "whose TTL had run out"
        )
        figure: dict[str, Any] = {"expired_misses": by_ttl, "misses": misses, "ttl": ttl}
        if ages:
            median, longest = statistics.median(ages), max(ages)
            text += (
                f", a median {duration(median)} after it was stored (at most "
                f"{duration(longest)}): a TTL of {duration(longest)} or more would have "
                "served them; "
                + (
                    f"raise default_ttl from {duration(ttl)}"
                    if longest > ttl
                    else f"they were stored with less than the default {duration(ttl)}, "
                    "by X-Cache-TTL or a rule's ttl: raise that"
                )
            )
            figure |= {"median_reask_seconds": median, "longest_reask_seconds": longest}
        else:
            text += f" (the default TTL is {duration(ttl)}): a longer TTL would have served them"
        advice.append({"topic": "ttl", "text": text + ".", "figure": figure})
    if by_max_age:
        advice.append(
            {
                "topic": "ttl",
                "text": (
                    f"{plural(by_max_age, 'miss')} found their answer stored but older than the "
                    "request's Cache-Control max-age: the clients' max-age, not the TTL, "
                    "turned them away."
                ),
                "figure": {"max_age_misses": by_max_age},
            }
        )
    if entries is not None and entries.expired_unused:
        advice.append(
            {
                "topic": "ttl",
                "text": (
                    f"{entries.expired_unused} of {entries.expired} expired entries still "
                    "held were never served: those answers are not asked again within the "
                    "TTL, and a longer one would only keep them longer."
                ),
                "figure": {"expired_unused": entries.expired_unused, "expired": entries.expired},
            }
        )
    return advice


def threshold_advice(what_if: list[dict[str, Any]]) -> list[dict[str, Any]]:
    current = next((row for row in what_if if row["current"]), None)
    best = max(what_if, key=lambda row: (row["net"], -abs(row["threshold"] - 1)), default=None)
    if current is None or best is None or best["net"] <= current["net"]:
        return []
    gained, lost = best["hits_gained"] - current["hits_gained"], best["hits_lost"]
    return [
        {
            "topic": "threshold",
            "text": (
                f"At threshold {best['threshold']:g} instead of {current['threshold']:g}, "
                f"{plural(gained, 'more request')} would have hit and "
                f"{plural(lost - current['hits_lost'], 'semantic hit')} would have been lost "
                "(from the scores kept for misses and "
                "hits); a lower threshold also serves more wrong answers, so check it with "
                "`make eval` before setting semantic.threshold."
            ),
            "figure": {
                "threshold": best["threshold"],
                "current_threshold": current["threshold"],
                "hits_gained": gained,
                "hits_lost": lost - current["hits_lost"],
            },
        }
    ]


def memory_advice(
    entries: EntrySummary | None, memory_bytes: int, exact_hits: int
) -> list[dict[str, Any]]:
    if entries is None or not exact_hits or entries.hit_bytes <= memory_bytes:
        return []
    return [
        {
            "topic": "memory",
            "text": (
                f"The {entries.hit_entries} entries served at least once take "
                f"{megabytes(entries.hit_bytes)}, more than the memory tier's "
                f"{megabytes(memory_bytes)}: some of the {exact_hits} exact hits were read "
                f"from disk; memory_bytes of {megabytes(entries.hit_bytes)} would hold them all."
            ),
            "figure": {
                "hot_entries": entries.hit_entries,
                "hot_bytes": entries.hit_bytes,
                "memory_bytes": memory_bytes,
            },
        }
    ]


def never_hit_advice(kind: str, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "topic": kind,
            "text": (
                f"{kind.capitalize()} {group['name']!r} never hit in {group['misses']} "
                f"misses: its requests may not repeat; a rule with mode: off for it saves "
                "the lookups and the storage."
            ),
            "figure": {kind: group["name"], "misses": group["misses"], "hits": 0},
        }
        for group in groups
        if group["misses"] >= NEVER_HIT_MIN_MISSES
    ]


def analyze(
    ledger: LedgerRows,
    entries: EntrySummary | None,
    settings: Settings,
    since: str | None,
    now: float,
) -> dict[str, Any]:
    """The whole report, as `cachegate analyze --json` prints it."""
    window = parse_since(since)
    reasons = miss_reasons(ledger.reasons)
    what_if = threshold_what_if(ledger.scores, settings.threshold, WHAT_IF_THRESHOLDS)
    ages = reask_ages(ledger.expired_keys, now - window if window is not None else 0.0)
    namespaces, models = never_hit(ledger.namespaces), never_hit(ledger.models)
    recommendations = [
        *ttl_advice(reasons, ages, entries, settings.default_ttl),
        *threshold_advice(what_if),
        *memory_advice(entries, settings.memory_bytes, ledger.stats["exact_hits"]),
        *never_hit_advice("namespace", namespaces),
        *never_hit_advice("model", models),
    ]
    return {
        "since": since or "all",
        "tiers": tiers(ledger.stats),
        "hottest": ledger.hottest,
        "miss_reasons": reasons,
        "threshold": settings.threshold,
        "threshold_what_if": what_if,
        "ttl": {
            "default_ttl": settings.default_ttl,
            "expired_misses": sum(g["misses"] for g in reasons if g["reason"] == "expired"),
            "reask_seconds_median": statistics.median(ages) if ages else None,
        },
        "entries": None
        if entries is None
        else {
            "entries": entries.entries,
            "bytes": entries.bytes,
            "hot_entries": entries.hit_entries,
            "hot_bytes": entries.hit_bytes,
            "memory_bytes": settings.memory_bytes,
            "expired": entries.expired,
            "expired_unused": entries.expired_unused,
        },
        "never_hit": {"namespaces": namespaces, "models": models},
        "recommendations": recommendations,
    }


# -- the table for people -------------------------------------------------------------------
def render(report: dict[str, Any], printable=str) -> str:
    """The report as aligned text. `printable` writes out control characters in caller
    text (namespaces, models, prompts)."""
    t = report["tiers"]
    lines = [
        f"cachegate analyze, since {report['since']}",
        "",
        "Hit rate by tier",
        f"  {'requests':<16}{t['requests']:>10}",
        f"  {'hits':<16}{t['hits']:>10}  {t['hit_rate']:>7.1%}",
        f"  {'  exact':<16}{t['exact_hits']:>10}  {t['exact_hit_rate']:>7.1%}",
        f"  {'  semantic':<16}{t['semantic_hits']:>10}  {t['semantic_hit_rate']:>7.1%}",
        f"  {'misses':<16}{t['misses']:>10}",
        "",
        "Misses by reason",
    ]
    for group in report["miss_reasons"]:
        details = ", ".join(f"{printable(str(d))} {n}" for d, n in group["details"].items())
        lines.append(
            f"  {group['reason']:<16}{group['misses']:>10}  {group['share']:>7.1%}"
            + (f"  ({details})" if details else "")
        )
    if not report["miss_reasons"]:
        lines.append("  (no misses)")
    lines += ["", f"Threshold what-if (now {report['threshold']:g})"]
    lines.append(f"  {'threshold':<12}{'gained':>8}{'lost':>8}{'net':>8}")
    for row in report["threshold_what_if"]:
        mark = "  <- now" if row["current"] else ""
        lines.append(
            f"  {row['threshold']:<12g}{row['hits_gained']:>8}{row['hits_lost']:>8}"
            f"{row['net']:>+8}{mark}"
        )
    lines += ["", "Hottest entries"]
    for entry in report["hottest"]:
        prompt = printable((entry["prompt"] or "")[:48])
        lines.append(
            f"  {plural(entry['hits'], 'hit'):>10}  ${entry['usd_saved']:<10.4f} "
            f"{printable(str(entry['model']))[:20]:<20} {prompt}"
        )
    if not report["hottest"]:
        lines.append("  (no hits)")
    entries = report["entries"]
    if entries is not None:
        lines += [
            "",
            "Entries",
            f"  {entries['entries']} stored, {megabytes(entries['bytes'])}; "
            f"{entries['hot_entries']} served at least once ({megabytes(entries['hot_bytes'])}, "
            f"memory tier {megabytes(entries['memory_bytes'])}); {entries['expired']} expired "
            f"awaiting the sweep, {entries['expired_unused']} of them never served",
        ]
    for kind in ("namespaces", "models"):
        groups = report["never_hit"][kind]
        if groups:
            names = ", ".join(f"{printable(str(g['name']))} ({g['misses']})" for g in groups)
            lines += ["", f"{kind.capitalize()} that never hit (misses): {names}"]
    lines += ["", "Recommendations"]
    for advice in report["recommendations"]:
        lines.append(f"  - {printable(advice['text'])}")
    if not report["recommendations"]:
        lines.append("  none: nothing in this window calls for a change")
    return "\n".join(lines)
