"""Ledger retention: rows past ledger_retention_days are rolled up into daily totals, and
the stats (API and CLI) over those days stay what they were."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import uuid

import httpx2 as httpx
import pytest

from tools.processes import CACHEGATE

GROUPINGS = (None, "model", "namespace", "tenant", "endpoint", "status", "tier", "day")


def flat(value, prefix: str = "") -> dict:
    """Nested stats as {dotted name: value}, numbers approximate (sums in another order)."""
    if isinstance(value, dict):
        return {
            k: v for name, item in value.items() for k, v in flat(item, f"{prefix}{name}.").items()
        }
    if isinstance(value, list):
        return {
            k: v for i, item in enumerate(value) for k, v in flat(item, f"{prefix}{i}.").items()
        }
    if isinstance(value, float):
        return {prefix: pytest.approx(value, rel=1e-9, abs=1e-9)}
    return {prefix: value}


def all_stats(gw) -> dict:
    found = {}
    for by in GROUPINGS:
        params = {"since": "all", **({"by": by} if by else {})}
        answer = httpx.get(f"{gw.url}/cache/stats", params=params, headers=gw.admin, timeout=60)
        assert answer.status_code == 200, answer.text
        found[by] = answer.json()
    return found


def cli_stats(gw, by: str) -> dict:
    out = subprocess.run(
        [
            *CACHEGATE,
            "stats",
            "--data-dir",
            str(gw.data_dir),
            "--since",
            "all",
            "--by",
            by,
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def mixed_traffic(gw) -> None:
    tag = uuid.uuid4().hex[:8]
    for key, namespace, model in (
        ("sk-ret-a", "default", "gpt-4o-mini"),
        ("sk-ret-b", "docs", "gpt-4o"),
    ):
        client = gw.client(key)
        for i in range(3):
            for _ in range(2):  # a miss, then an exact hit
                client.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": f"Retention {tag} question {i} please"}],
                    extra_headers={"X-Cache-Namespace": namespace},
                )
        client.chat.completions.create(  # a bypass
            model=model,
            messages=[{"role": "user", "content": f"Retention {tag} uncached"}],
            extra_headers={"X-Cache-Mode": "off"},
        )
        client.embeddings.create(model="text-embedding-3-small", input=f"retention {tag}")


def test_rolled_up_days_keep_their_stats(make_gateway):
    gw = make_gateway()
    mixed_traffic(gw)
    before = all_stats(gw)
    cli_before = cli_stats(gw, "model")
    assert before[None]["requests"] == 16 and before[None]["hits"] == 6
    gw.stop()

    # A retention of a few microseconds: the start rolls up every row written so far.
    gw.env["CACHEGATE_LEDGER_RETENTION_DAYS"] = "0.00000001"
    gw.start()
    after = all_stats(gw)
    gw.stop()
    ledger = sqlite3.connect(gw.data_dir / "ledger.db")
    assert ledger.execute("SELECT count(*) FROM requests").fetchone() == (0,)
    assert ledger.execute("SELECT sum(requests) FROM day_totals").fetchone() == (16,)
    for by in GROUPINGS:
        assert flat(after[by]) == flat(before[by]), by
    assert flat(cli_stats(gw, "model")) == flat(cli_before)


@pytest.mark.redis
def test_rolled_up_days_keep_their_stats_on_redis(make_gateway, tmp_path):
    from test_redis import RedisServer

    server = RedisServer(tmp_path / "redis")
    try:
        gw = make_gateway(args=["--backend", server.url])
        other = make_gateway(args=["--backend", server.url])  # a replica that keeps running
        mixed_traffic(gw)
        before = all_stats(gw)
        assert before[None]["requests"] == 16
        assert all_stats(other) == before  # its copy of the rows: rolled up under it next
        gw.stop()

        gw.env["CACHEGATE_LEDGER_RETENTION_DAYS"] = "0.00000001"
        gw.start()  # its start rolls up every row in the stream
        after = all_stats(gw)
        redis = server.client()
        assert redis.xlen("cg:ledger") == 0 and redis.hlen("cg:days") > 0
        for by in GROUPINGS:
            assert flat(after[by]) == flat(before[by]), by
        rolled_under_it = all_stats(other)
        for by in GROUPINGS:
            assert flat(rolled_under_it[by]) == flat(before[by]), by
        out = subprocess.run(
            [*CACHEGATE, "stats", "--backend", server.url, "--since", "all", "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert flat(json.loads(out.stdout)) == flat(before[None])
    finally:
        server.kill()
