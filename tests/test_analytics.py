"""Savings analytics against known traffic: stats API, CLI, Prometheus and the dashboard agree."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid

import httpx2 as httpx
import pytest
import yaml
from cdp import HEADLESS
from conftest import ARTIFACTS, REPO

from tools.processes import CACHEGATE

PRICES = yaml.safe_load((REPO / "configs/pricing.yaml").read_text())["models"]["gpt-4o-mini"]


def send_known_traffic(gw) -> tuple[int, int]:
    """10 distinct questions, each sent three times; returns the (prompt, completion) tokens of
    one copy of each answer, as upstream reported them."""
    client = gw.client("sk-analytics")
    tag = uuid.uuid4().hex[:6]
    prompt_tokens = completion_tokens = 0
    for i in range(10):
        for round_ in range(3):
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"Topic {tag}-{i}: tell me about item {i}"}],
            )
            assert raw.headers["x-cache-status"] == ("MISS" if round_ == 0 else "HIT")
            if round_ == 0:
                usage = raw.parse().usage
                prompt_tokens += usage.prompt_tokens
                completion_tokens += usage.completion_tokens
    return prompt_tokens, completion_tokens


def expected(prompt: int, completion: int) -> dict:
    per_copy = (prompt * PRICES["input"] + completion * PRICES["output"]) / 1e6
    return {
        "requests": 30,
        "hits": 20,
        "exact_hits": 20,
        "semantic_hits": 0,
        "misses": 10,
        "hit_rate": pytest.approx(2 / 3, abs=1e-6),
        "tokens_saved": {"prompt": 2 * prompt, "completion": 2 * completion},
        "usd_saved": pytest.approx(2 * per_copy, rel=1e-6),
        "usd_spent": pytest.approx(per_copy, rel=1e-6),
    }


def check_stats(stats: dict, want: dict) -> None:
    for field, value in want.items():
        assert stats[field] == value, field


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$"
    return sum(float(m) for m in re.findall(pattern, text, re.M))


def render_dashboard(url: str, screenshot: str) -> str:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "chromium is not installed; run `make install` (scripts/install-system-packages.sh)"
        )
    flags = [
        *HEADLESS,
        "--window-size=1280,900",
        "--virtual-time-budget=8000",
    ]
    with tempfile.TemporaryDirectory() as profile:
        ARTIFACTS.mkdir(exist_ok=True)
        subprocess.run(
            [
                chromium,
                *flags,
                f"--user-data-dir={profile}",
                f"--screenshot={ARTIFACTS / screenshot}",
                url,
            ],
            capture_output=True,
            timeout=90,
            check=False,
        )
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [chromium, *flags, f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=90,
            check=True,
        ).stdout
    return dom


def cachegate(*args: str, env: dict[str, str] | None = None) -> str:
    """Run the `cachegate` command; its standard output."""
    return subprocess.run(
        [*CACHEGATE, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        env={**os.environ, **(env or {})},
    ).stdout


def element_text(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert match, f"no element #{element_id} in the rendered dashboard"
    return match.group(1).strip()


@pytest.mark.browser
def test_numbers_agree_everywhere_and_survive_a_restart(make_gateway):
    gw = make_gateway()
    prompt, completion = send_known_traffic(gw)
    want = expected(prompt, completion)

    for round_ in ("before restart", "after restart"):
        stats = httpx.get(f"{gw.url}/cache/stats?since=1h", headers=gw.admin).json()
        check_stats(stats, want)
        by_model = httpx.get(f"{gw.url}/cache/stats?since=1h&by=model", headers=gw.admin).json()[
            "groups"
        ]
        assert [g["name"] for g in by_model] == ["gpt-4o-mini"]
        check_stats(by_model[0], want)

        metrics = httpx.get(f"{gw.url}/metrics", headers=gw.admin).text
        if round_ == "before restart":  # Prometheus counters are per process, by design
            assert (
                metric(
                    metrics,
                    "cachegate_requests_total",
                    '{endpoint="chat",status="HIT",tier="exact"}',
                )
                == 20
            )
            assert (
                metric(
                    metrics, "cachegate_requests_total", '{endpoint="chat",status="MISS",tier=""}'
                )
                == 10
            )
            assert metric(metrics, "cachegate_tokens_saved_total", '{kind="prompt"}') == 2 * prompt
            assert metric(metrics, "cachegate_usd_saved_total") == pytest.approx(
                want["usd_saved"].expected, rel=1e-6
            )
        assert metric(metrics, "cachegate_entries") == 10

        dom = render_dashboard(
            f"{gw.url}/dashboard?since=1h&token={gw.admin_token}",
            f"dashboard-{round_.replace(' ', '-')}.png",
        )
        assert 'data-loaded="true"' in dom
        assert element_text(dom, "hit-rate") == "66.7%"
        assert element_text(dom, "hits") == "20" and element_text(dom, "misses") == "10"
        gw.restart()

    gw.stop()
    data_dir = str(gw.data_dir)
    check_stats(
        json.loads(cachegate("stats", "--data-dir", data_dir, "--since", "1h", "--json")), want
    )
    from_environment = cachegate(
        "stats",
        env={"CACHEGATE_DATA_DIR": data_dir, "CACHEGATE_SINCE": "1h", "CACHEGATE_JSON": "true"},
    )
    check_stats(json.loads(from_environment), want)
    table = cachegate("stats", "--data-dir", data_dir, "--by", "model")
    assert "66.7%" in table and "gpt-4o-mini" in table


def test_the_stats_table_writes_out_control_characters_of_caller_text(make_gateway):
    gw = make_gateway()
    hostile = "\x1b[2J\x1b]0;owned\x07gpt"
    gw.client().chat.completions.create(
        model=hostile, messages=[{"role": "user", "content": f"hi {uuid.uuid4()}"}]
    )
    time.sleep(1)  # the ledger's flush
    table = cachegate("stats", "--data-dir", str(gw.data_dir), "--by", "model")
    assert "\x1b" not in table and "\x07" not in table
    assert "\\x1b[2J" in table


def test_unknown_models_are_unpriced(gateway):
    gateway.client().chat.completions.create(
        model="mock-model", messages=[{"role": "user", "content": f"hi {uuid.uuid4()}"}]
    )
    stats = httpx.get(f"{gateway.url}/cache/stats", headers=gateway.admin).json()
    assert "mock-model" in stats["unpriced_models"]


def test_stats_reject_bad_parameters(gateway):
    assert (
        httpx.get(f"{gateway.url}/cache/stats?since=yesterday", headers=gateway.admin).status_code
        == 400
    )
    assert (
        httpx.get(f"{gateway.url}/cache/stats?by=color", headers=gateway.admin).status_code == 400
    )


def test_cli_purge_goes_to_the_gateway_that_serves_the_data_dir(make_gateway):
    """Not to whichever gateway listens on the configured port: there another one does."""
    served, other = make_gateway(), make_gateway()
    prompt = f"purge me {uuid.uuid4()}"

    def status(gw) -> str:
        return (
            gw.client()
            .chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
            )
            .headers["x-cache-status"]
        )

    assert (status(served), status(other)) == ("MISS", "MISS")
    time.sleep(0.3)  # the store's writer
    args = ("purge", "--data-dir", str(served.data_dir), "--all")
    said = cachegate(*args, env={"CACHEGATE_PORT": str(other.port)})
    assert f"purged 1 entries (through {served.url}/cache/purge)" in said
    assert (status(served), status(other)) == ("MISS", "HIT")  # its memory forgot it too
    served.stop()
    time.sleep(0.3)
    assert "from " in cachegate(*args), "no gateway serves it now: the file is edited"


def test_entries_and_purge(make_gateway):
    gw = make_gateway()
    client = gw.client()
    for ns in ("one", "one", "two"):
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"q {uuid.uuid4()}"}],
            extra_headers={"X-Cache-Namespace": ns},
        )
    time.sleep(0.3)
    entries = httpx.get(f"{gw.url}/cache/entries?namespace=one", headers=gw.admin).json()["data"]
    assert len(entries) == 2 and {e["namespace"] for e in entries} == {"one"}
    assert set(entries[0]) == {
        *("key", "model", "namespace", "endpoint", "age", "expires_in", "hits", "size")
    }
    assert not any("sk-" in json.dumps(e) for e in entries)
    purged = httpx.post(f"{gw.url}/cache/purge", headers=gw.admin, json={"namespace": "one"}).json()
    assert purged == {"purged": 2}
    assert len(httpx.get(f"{gw.url}/cache/entries", headers=gw.admin).json()["data"]) == 1
    for bad in ({}, {"all": "false"}, {"namespace": 5}, {"everything": True}):
        assert httpx.post(f"{gw.url}/cache/purge", headers=gw.admin, json=bad).status_code == 400, (
            bad
        )
    assert len(httpx.get(f"{gw.url}/cache/entries", headers=gw.admin).json()["data"]) == 1


def test_admin_routes_need_the_token_when_one_is_set(make_gateway):
    gw = make_gateway(env={"CACHEGATE_ADMIN_TOKEN": "s3cret"})
    for path in ("/cache/stats", "/cache/entries", "/metrics", "/dashboard"):
        denied = httpx.get(f"{gw.url}{path}")
        assert denied.status_code == 401
        assert denied.json()["error"]["code"] == "admin_token_required"
        assert (
            httpx.get(f"{gw.url}{path}", headers={"Authorization": "Bearer wrong"}).status_code
            == 401
        )
        assert (
            httpx.get(f"{gw.url}{path}", headers={"Authorization": "Bearer s3cret"}).status_code
            == 200
        )
    assert httpx.post(f"{gw.url}/cache/purge", json={"all": True}).status_code == 401
    assert httpx.get(f"{gw.url}/healthz").status_code == 200


def test_admin_routes_need_a_token_by_default_even_from_loopback(gateway):
    """No CACHEGATE_ADMIN_TOKEN: one is generated into the data dir (mode 0600), and the
    dashboard URL with it is logged; a loopback client without it is refused."""
    token_file = gateway.data_dir / "admin-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    for path in ("/cache/stats", "/cache/top-prompts", "/cache/entries", "/metrics", "/dashboard"):
        assert httpx.get(f"{gateway.url}{path}").status_code == 401, path
        assert httpx.get(f"{gateway.url}{path}", headers=gateway.admin).status_code == 200, path
    assert httpx.post(f"{gateway.url}/cache/purge", json={"all": True}).status_code == 401
    token = token_file.read_text().strip()
    assert f"{gateway.url}/dashboard?token={token}" in gateway.log.read_text()
    assert httpx.get(f"{gateway.url}/cache/stats?token={token}").status_code == 200


def test_open_loopback_is_opt_in_and_off_for_any_proxied_request(make_gateway):
    gw = make_gateway(env={"CACHEGATE_ADMIN_OPEN_LOOPBACK": "true"})
    assert httpx.get(f"{gw.url}/cache/stats").status_code == 200
    proxy_headers = {
        "Forwarded": "for=203.0.113.9",
        "X-Forwarded-For": "203.0.113.9",
        "X-Real-IP": "203.0.113.9",
        "Via": "1.1 proxy",
        "True-Client-IP": "203.0.113.9",
        "X-Forwarded-Host": "example.com",
        "CF-Connecting-IP": "203.0.113.9",
    }
    for header, value in proxy_headers.items():
        proxied = httpx.get(f"{gw.url}/cache/stats", headers={header: value})
        assert proxied.status_code == 401, header
        with_token = {header: value, **gw.admin}
        assert httpx.get(f"{gw.url}/cache/stats", headers=with_token).status_code == 200


def test_ledger_rows_count_every_request_and_keep_every_sum():
    """Identical requests of one write batch and second share a row; the table's sums and
    counts are those of the requests, whatever was merged."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from gateway.ledger import COLUMNS, SUMMED, Record, merge_identical

    kinds = st.sampled_from(
        [("HIT", "exact", "k1", 10, 20), ("HIT", "exact", "k2", 5, 5), ("MISS", None, "k1", 10, 20)]
    )
    record = st.builds(
        lambda kind, tenant, ts, latency, upstream, size: Record(
            ts,
            tenant,
            "default",
            "chat",
            "gpt-4o-mini",
            kind[0],
            kind[1],
            None,
            kind[3],
            kind[4],
            0.001 * kind[3],
            1,
            latency,
            upstream,
            size,
            200,
            kind[2],
            "prompt",
        ),
        kinds,
        st.sampled_from(["t1", "t2"]),
        st.sampled_from([1000.25, 1000.75, 1001.5]),  # two seconds: some merge, some not
        st.floats(0, 1e3),
        st.floats(0, 1e3),
        st.integers(0, 10_000),
    )

    @settings(max_examples=200, deadline=None)  # no timing: the machine may be loaded
    @given(st.lists(record, max_size=40))
    def check(records: list[Record]) -> None:
        rows = merge_identical(records)
        assert sum(row[-1] for row in rows) == len(records)
        first: dict[tuple, float] = {}
        for r in records:  # records differ in tenant, kind and second; the row keeps the first time
            first.setdefault((int(r.ts), r.tenant, r.status, r.key), r.ts)
        assert sorted(row[0] for row in rows) == sorted(first.values())
        for name in SUMMED:
            i = COLUMNS.index(name)
            assert sum(row[i] for row in rows) == pytest.approx(sum(r[i] for r in records))

    check()


def test_a_ledger_written_before_rows_counted_requests_still_counts(tmp_path):
    import asyncio
    import sqlite3

    from gateway.ledger import COLUMNS, SqliteLedger, open_read_only, query_stats

    path = tmp_path / "ledger.db"
    with sqlite3.connect(path) as old:
        # The table as it was: one column per Record field, no `requests`.
        old.execute(f"CREATE TABLE requests (id INTEGER PRIMARY KEY, {', '.join(COLUMNS)})")
        old.execute(
            "INSERT INTO requests (ts, tenant, namespace, endpoint, model, status, tier, "
            "prompt_tokens, completion_tokens, usd, priced, latency_ms, upstream_ms, bytes, "
            "http_status) VALUES (?, 't', 'default', 'chat', 'gpt-4o-mini', 'HIT', 'exact', "
            "10, 20, 0.5, 1, 1.0, 100.0, 50, 200)",
            (time.time(),),
        )
    # `cachegate stats` reads it untouched (read-only) ...
    read_only = open_read_only(path)
    assert query_stats(read_only, None, None)["requests"] == 1
    read_only.close()
    # ... and the gateway adds the column when it opens it.
    ledger = SqliteLedger(path)
    stats = asyncio.run(ledger.stats(None, None))
    assert (stats["requests"], stats["hits"], stats["usd_saved"]) == (1, 1, 0.5)
    asyncio.run(ledger.close())


def test_a_row_sqlite_refuses_loses_only_itself(tmp_path):
    import asyncio

    from gateway.ledger import Record, SqliteLedger

    good = Record(
        *(1000.0, "t1", "default", "chat", "gpt-4o-mini", "HIT", "exact", None),
        *(10, 20, 0.01, 1, 0.2, 100.0, 400, 200, "k1", "prompt"),
    )
    refused = good._replace(namespace="caf\udce9", key="k2")  # a str SQLite cannot encode

    async def write_and_count() -> list[dict]:
        ledger = SqliteLedger(tmp_path / "ledger.db")
        for record in (refused, good, good._replace(key="k3")):
            ledger.record(record)
        await ledger.flush()
        ledger.record(good._replace(key="k4"))  # the ledger goes on after it
        stats = await ledger.stats(None, "namespace")
        await ledger.close()
        return stats["groups"]

    groups = asyncio.run(write_and_count())
    assert [(g["name"], g["requests"]) for g in groups] == [("default", 3)]
