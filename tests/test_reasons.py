"""Why requests miss: known traffic through a real gateway gives known miss reasons, in
/cache/stats?by=reason, `cachegate stats --by reason` and `cachegate analyze`."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid

import httpx2 as httpx
import pytest
from conftest import FAST_SEMANTIC
from test_analytics import cachegate

from gateway.config import Config
from policies.controls import Controls
from policies.decide import decide

QUESTION = "Please explain how photosynthesis works in green plants today"
# The hashing embedder's cosines to QUESTION: 1.0 (case and punctuation), 0.9393, 0.8767
# (under the 0.9 default threshold of raw cosine), and 0.741 with a negation (vetoed).
SAME = "please explain how photosynthesis works in green plants today!"
CLOSE = "Please explain how photosynthesis works in green plants"
NEARER_THAN_FLOOR = "Please explain how photosynthesis works in plants today"
NEGATED = "Please explain how photosynthesis does not work in green plants today"
UNRELATED = "Give me a recipe for banana bread with walnuts"
SHORT_LIVED = "Tell me a short story about a brave little lighthouse keeper"

WANT_MISSES = {
    "no_entry": 1,
    "below_threshold": 2,
    "guard_veto": 1,
    "no_candidate": 2,
    "exact_only": 3,
    "expired": 2,
}


def send_known_traffic(gw) -> None:
    """Each request's status is checked as it goes: the reasons below follow from them."""
    namespace = f"reasons-{uuid.uuid4().hex[:6]}"

    def ask(text: str, want: str, headers: dict[str, str] | None = None, **extra) -> None:
        raw = gw.client("sk-reasons").chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": text}],
            extra_headers={"X-Cache-Namespace": namespace, **(headers or {})},
            **extra,
        )
        assert raw.headers["x-cache-status"] == want, text

    ask(QUESTION, "MISS")  # no_entry: nothing stored in this context yet
    ask(QUESTION, "HIT")  # exact
    ask(SAME, "HIT")  # semantic, 1.0
    ask(CLOSE, "MISS", {"X-Cache-Threshold": "0.99"})  # below_threshold, 0.9393
    ask(CLOSE, "HIT")  # exact
    ask(NEARER_THAN_FLOOR, "MISS")  # below_threshold, 0.8767
    ask(NEGATED, "MISS", {"X-Cache-Threshold": "0.5"})  # guard_veto: negation
    ask(UNRELATED, "MISS")  # no_candidate
    ask("Name two colours of the rainbow", "MISS", n=2)  # exact_only: n
    ask("Name three colours of the rainbow", "MISS", {"X-Cache-Mode": "exact"})  # exact_only
    ask("hi", "MISS")  # exact_only: too short
    ask(QUESTION, "MISS", {"Cache-Control": "max-age=0"})  # expired: max-age
    ask(SHORT_LIVED, "MISS", {"X-Cache-TTL": "1"})  # no_candidate
    time.sleep(1.2)  # its one-second TTL runs out
    ask(SHORT_LIVED, "MISS")  # expired: ttl


def ledger_misses(data_dir) -> dict[tuple[str, str | None], list]:
    with sqlite3.connect(data_dir / "ledger.db") as conn:
        rows = conn.execute(
            "SELECT reason, detail, score, requests FROM requests WHERE status = 'MISS'"
        ).fetchall()
    found: dict[tuple[str, str | None], list] = {}
    for reason, detail, score, requests in rows:
        found.setdefault((reason, detail), []).extend([score] * requests)
    return found


def test_known_traffic_gives_known_miss_reasons(make_gateway):
    gw = make_gateway()
    send_known_traffic(gw)

    stats = httpx.get(f"{gw.url}/cache/stats?since=1h&by=reason", headers=gw.admin).json()
    groups = {g["name"]: g for g in stats["groups"]}
    assert {name: g["misses"] for name, g in groups.items() if g["misses"]} == WANT_MISSES
    assert groups["hit"]["exact_hits"] == 2 and groups["hit"]["semantic_hits"] == 1
    assert stats["misses"] == sum(WANT_MISSES.values())
    metrics = httpx.get(f"{gw.url}/metrics", headers=gw.admin).text
    for reason, count in WANT_MISSES.items():
        assert f'cachegate_misses_total{{reason="{reason}"}} {count}.0' in metrics

    # Which guard, which policy, which limit, and the scores of what was scored.
    misses = ledger_misses(gw.data_dir)
    assert misses == {
        ("no_entry", None): [None],
        ("below_threshold", None): [0.9393, 0.8767],
        ("guard_veto", "negation"): [None],
        ("no_candidate", None): [None, None],
        ("exact_only", "n"): [None],
        ("exact_only", "mode-exact"): [None],
        ("exact_only", "too-short"): [None],
        ("expired", "max-age"): [None],
        ("expired", "ttl"): [None],
    }

    # analyze reads the gateway's settings as serve does (here: raw cosine from the env).
    analyze = ["analyze", "--data-dir", str(gw.data_dir)]
    report = json.loads(cachegate(*analyze, "--json", env=FAST_SEMANTIC))
    assert {g["reason"]: g["misses"] for g in report["miss_reasons"]} == WANT_MISSES
    assert report["tiers"]["exact_hits"] == 2 and report["tiers"]["semantic_hits"] == 1
    # Raw cosine's threshold is 0.9: 0.9393 missed only under its own 0.99, 0.8767 under
    # 0.9; the semantic hit scored 1.0.
    what_if = {row["threshold"]: row for row in report["threshold_what_if"]}
    assert [what_if[0.9][k] for k in ("current", "hits_gained", "hits_lost")] == [True, 1, 0]
    assert (what_if[0.85]["hits_gained"], what_if[0.85]["hits_lost"]) == (2, 0)
    assert (what_if[0.95]["hits_gained"], what_if[0.95]["hits_lost"]) == (0, 0)
    topics = [advice["topic"] for advice in report["recommendations"]]
    assert topics.count("ttl") >= 2 and "threshold" in topics
    ttl = report["recommendations"][0]
    assert ttl["figure"]["expired_misses"] == 1 and ttl["figure"]["longest_reask_seconds"] >= 1
    assert "TTL had run out" in ttl["text"]
    hottest = report["hottest"][0]  # served once exactly, once to SAME
    assert hottest["hits"] == 2 and hottest["prompt"] in (QUESTION, SAME)
    table = cachegate(*analyze, env=FAST_SEMANTIC)
    print(table)
    assert "Misses by reason" in table and "guard_veto" in table and "<- now" in table

    table = cachegate("stats", "--data-dir", str(gw.data_dir), "--since", "1h", "--by", "reason")
    assert "below_threshold" in table and "guard_veto" in table
    by_cli = json.loads(
        cachegate("stats", "--data-dir", str(gw.data_dir), "--by", "reason", "--json")
    )
    assert {g["name"]: g["misses"] for g in by_cli["groups"] if g["misses"]} == WANT_MISSES


@pytest.mark.parametrize(
    ("body", "controls", "why"),
    [
        ({"tools": [{"type": "function"}]}, {}, "tools"),
        ({"tool_choice": "auto"}, {}, "tool_choice"),
        ({"n": 3}, {}, "n"),
        ({}, {"mode": "exact"}, "mode-exact"),
        ({"messages": [{"role": "user", "content": "hey"}]}, {}, "too-short"),
        ({"messages": [{"role": "user", "content": "x" * 3000}]}, {}, "too-long"),
        ({"messages": [{"role": "assistant", "content": "Hello there"}]}, {}, "last-turn-not-user"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            {},
            "non-text",
        ),
        (
            {
                "messages": [
                    {"role": "tool", "content": "42", "tool_call_id": "a"},
                    {"role": "user", "content": "And what does that mean?"},
                ]
            },
            {},
            "tool-or-file-turns",
        ),
        ({}, {}, None),
    ],
)
def test_decide_says_why_a_request_is_exact_only(body, controls, why):
    request = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        **body,
    }
    policy = Config().policy(default_threshold=0.5)
    decision = decide("chat", request, Controls(**controls), "t", policy)
    assert decision.exact_only == why
    assert (decision.semantic is None) == (why is not None)


def test_an_unreachable_upstream_is_logged_once_with_its_cause(make_gateway):
    from tools.processes import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    gw = make_gateway(upstream=dead)
    before = gw.log.read_text()
    for i in range(3):
        response = httpx.post(
            f"{gw.url}/v1/chat/completions",
            headers={"Authorization": "Bearer sk-dead"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q {i}"}]},
        )
        assert response.status_code == 502
    lines = [line for line in gw.log.read_text()[len(before) :].splitlines() if dead in line]
    assert len(lines) == 1, lines
    assert "failed: unreachable (ClientConnectorError: Cannot connect" in lines[0]


def test_a_ledger_written_before_reasons_reads_and_gains_the_columns(tmp_path):
    import asyncio

    from gateway.ledger import COLUMNS, Record, SqliteLedger, open_read_only, query_stats

    path = tmp_path / "ledger.db"
    first = COLUMNS[: COLUMNS.index("prompt") + 1]  # the columns before reasons
    with sqlite3.connect(path) as old:
        old.execute(
            f"CREATE TABLE requests (id INTEGER PRIMARY KEY, {', '.join(first)}, "
            "requests INTEGER NOT NULL DEFAULT 1)"
        )
        old.execute(
            "INSERT INTO requests (ts, tenant, namespace, endpoint, model, status, "
            "prompt_tokens, completion_tokens, usd, priced, latency_ms, upstream_ms, bytes, "
            "http_status, requests) VALUES (?, 't', 'default', 'chat', 'm', 'MISS', "
            "1, 2, 0.1, 1, 1.0, 1.0, 5, 200, 3)",
            (time.time(),),
        )
    read_only = open_read_only(path)  # a temporary view: the file is not touched
    groups = query_stats(read_only, None, "reason")["groups"]
    assert [(g["name"], g["misses"]) for g in groups] == [("miss", 3)]
    read_only.close()

    ledger = SqliteLedger(path)  # the gateway adds the columns
    fields = dict.fromkeys(COLUMNS, 0) | {"ts": time.time(), "tier": None, "similarity": None}
    fields |= {"tenant": "t", "namespace": "default", "endpoint": "chat", "model": "m"}
    fields |= {"status": "MISS", "key": "k", "prompt": None, "reason": "below_threshold"}
    ledger.record(Record(**fields | {"detail": None, "score": 0.42}))
    stats = asyncio.run(ledger.stats(None, "reason"))
    assert {g["name"]: g["misses"] for g in stats["groups"]} == {"miss": 3, "below_threshold": 1}
    asyncio.run(ledger.close())


def test_redis_ledger_rows_of_every_age_read_in_the_current_columns():
    import orjson

    from gateway.ledger import COLUMNS
    from gateway.redis.ledger import FIRST_FIELDS, mirror_row

    first = [f"v{i}" for i in range(FIRST_FIELDS)]
    assert COLUMNS.index("prompt") + 1 == FIRST_FIELDS
    none = [None] * (len(COLUMNS) - FIRST_FIELDS)
    assert mirror_row({b"r": orjson.dumps(first)}) == [*first, *none, 1]
    assert mirror_row({b"r": orjson.dumps([*first, 4])}) == [*first, *none, 4]
    with_request_key = [*first, "rk", 3]  # before reasons
    assert mirror_row({b"r": orjson.dumps(with_request_key)}) == [*first, "rk", *none[1:], 3]
    current = [*first, "rk", "guard_veto", "numbers", None, 2]
    assert mirror_row({b"r": orjson.dumps(current)}) == current


def test_analysis_of_hand_made_rows():
    from gateway.analysis import (
        EntrySummary,
        LedgerRows,
        Settings,
        analyze,
        reask_ages,
        summarize_entries,
        threshold_what_if,
    )

    # A key stored at 0, hit at 50, expired and asked again at 100 (twice: one row) and
    # stored again; asked again at 400 after expiring again.
    rows = [
        ("k", 0.0, "MISS", "no_entry", 1),
        ("k", 50.0, "HIT", None, 1),
        ("k", 100.0, "MISS", "expired", 2),
        ("k", 400.0, "MISS", "expired", 1),
    ]
    assert reask_ages(rows, since=0) == [100.0, 100.0, 300.0]
    assert reask_ages(rows, since=200) == [300.0]

    scores = [("hit", 0.95, 3), ("hit", 0.82, 1), ("miss", 0.78, 2), ("miss", 0.6, 1)]
    what_if = {row["threshold"]: row for row in threshold_what_if(scores, 0.8, (0.7, 0.9))}
    assert [(t, r["hits_gained"], r["hits_lost"], r["current"]) for t, r in what_if.items()] == [
        (0.7, 2, 0, False),
        (0.8, 0, 0, True),
        (0.9, 0, 1, False),
    ]

    entries = summarize_entries([(0, 100, 10.0), (3, 5 * 2**20, 1e9), (0, 200, 1e9)], now=20.0)
    assert entries == EntrySummary(3, 5 * 2**20 + 300, 1, 5 * 2**20, 1, 1)

    stats = {"requests": 60, "hits": 10, "exact_hits": 10, "semantic_hits": 0, "misses": 50}
    ledger = LedgerRows(
        stats=stats,
        reasons=[("no_entry", None, 38), ("expired", "ttl", 12)],
        scores=[],
        expired_keys=rows,
        hottest=[],
        namespaces=[
            {"name": "evals", "hits": 0, "misses": 30},
            {"name": "chat", "hits": 10, "misses": 20},
        ],
        models=[{"name": "gpt-4o-mini", "hits": 10, "misses": 50}],
    )
    report = analyze(ledger, entries, Settings(0.8, 200.0, 2**20), "all", now=500.0)
    advice = {a["topic"]: a for a in reversed(report["recommendations"])}  # the first of each
    assert advice["ttl"]["figure"]["longest_reask_seconds"] == 300.0
    assert "raise default_ttl from 3.33m" in advice["ttl"]["text"]
    assert "1 of 1 expired entries still held were never served" in str(report)
    assert advice["memory"]["figure"] == {
        "hot_entries": 1,
        "hot_bytes": 5 * 2**20,
        "memory_bytes": 2**20,
    }
    assert advice["namespace"]["figure"] == {"namespace": "evals", "misses": 30, "hits": 0}
    assert report["never_hit"]["models"] == []
    assert "threshold" not in advice  # no scores: nothing to say
