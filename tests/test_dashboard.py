"""The dashboard in headless Chromium, at a phone's width and a desktop's: every panel
shows what the admin API says, nothing is cut or overlaps, and its entry browser finds
an entry by its prompt and purges it. Screenshots go to test-artifacts/."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx2 as httpx
import pytest
from cdp import Chromium
from conftest import ARTIFACTS

NAMESPACES = 12  # past the ten the dashboard lists, the rest are one "other" row

# Layout faults, as JavaScript: elements whose content is wider than their box (a number
# cut short), and headers whose boxes overlap.
LAYOUT_FAULTS = """(() => {
  const cut = [...document.querySelectorAll('.tile .value, .tile .sub, td.num, th')]
    .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
    .map(e => (e.id || e.className || e.tagName) + ': ' + e.textContent);
  const boxes = [...document.querySelectorAll('h1, .controls, .card h2, .tile .label')]
    .filter(e => e.offsetParent !== null).map(e => [e, e.getBoundingClientRect()]);
  const overlaps = [];
  boxes.forEach(([a, ra], i) => boxes.slice(i + 1).forEach(([b, rb]) => {
    if (a.contains(b) || b.contains(a)) return;
    const apart = ra.right - 1 <= rb.left || rb.right - 1 <= ra.left
      || ra.bottom - 1 <= rb.top || rb.bottom - 1 <= ra.top;
    if (!apart)
      overlaps.push(a.textContent.trim() + ' / ' + b.textContent.trim());
  }));
  const wider = document.documentElement.scrollWidth > window.innerWidth + 1;
  // The short tables fit at any width; only prompts and the entry browser scroll sideways.
  const scrolled = ['by-tier', 'by-model', 'by-namespace']
    .map(id => document.getElementById(id).closest('.scroll'))
    .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.querySelector('tbody').id);
  return {cut, overlaps, wider, scrolled};
})()"""


def send_traffic(gw) -> dict[str, str]:
    """Misses and exact hits in NAMESPACES namespaces, semantic hits, one answer reported
    bad; returns the prompt and key of one entry the browser then finds."""
    client = gw.client("sk-dashboard")
    tag = uuid.uuid4().hex[:8]
    for i in range(NAMESPACES):
        for _ in range(2 if i % 3 else 3):
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"Question {tag} number {i} about shipping"}],
                extra_headers={"X-Cache-Namespace": f"team-{i:02d}"},
            )
    stored = f"What is the refund policy for order {tag}?"
    asked = [stored, f"Hi! What is the refund policy for order {tag}? Thanks"]
    answers = [
        client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
        )
        for text in asked
    ]
    served = answers[-1].headers
    report = httpx.post(
        f"{gw.url}/cache/feedback",
        headers={"Authorization": "Bearer sk-dashboard"},
        json={
            "key": served["x-cache-key"],
            "request_key": served["x-cache-request-key"],
            "verdict": "bad",
        },
    )
    assert report.status_code == 200, report.text
    # The entry the browser will find and purge: stored, never reported.
    kept = f"How long does delivery take to Lisbon, ticket {tag}?"
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": kept}],
        extra_headers={"X-Cache-Tags": "delivery,lisbon"},
    )
    return {"search": f"lisbon, ticket {tag}", "key": raw.headers["x-cache-key"]}


async def look(gw, width: int, found: dict[str, str], reasons: bool) -> dict:
    async with Chromium() as page:
        await page.open(f"{gw.url}/dashboard?since=1h&token={gw.admin_token}", width)
        await page.wait_for("document.body.dataset.loaded === 'true'", "its numbers")
        await page.wait_for(
            "document.querySelectorAll('#latency-chart path').length > 0", "a latency line"
        )
        seen = await page.evaluate(
            """(() => {
              const text = id => document.getElementById(id).textContent.trim();
              const shown = id => document.getElementById(id).offsetParent !== null;
              return {
                panels: ['trend-panel', 'tier-panel', 'latency-panel', 'reasons-panel',
                         'entries-panel'].filter(shown),
                hitRate: text('hit-rate'), exact: text('exact-hits'),
                semantic: text('semantic-hits'),
                entries: text('entries-stored'), bytes: text('bytes-stored'),
                precision: text('live-precision'), reported: text('reported-bad'),
                tiers: [...document.querySelectorAll('#by-tier tr')].map(
                  tr => [...tr.cells].map(td => td.textContent)),
                namespaces: [...document.querySelectorAll('#by-namespace tr td:first-child')]
                  .map(td => td.textContent),
                reasons: [...document.querySelectorAll('#miss-reasons [data-reason]')]
                  .map(e => e.dataset.reason),
                trendBars: document.querySelectorAll('#trend-chart rect').length,
                usd: [...document.querySelectorAll('#by-namespace td.num, #top-prompts td.num')]
                  .map(td => td.textContent).filter(t => t.includes('$')),
              };
            })()"""
        )
        seen["layout"] = await page.evaluate(LAYOUT_FAULTS)
        await page.screenshot(ARTIFACTS / f"dashboard-{width}px.png")
        if width >= 1000:
            seen["week"] = await switch_to_a_week(page)
            seen["browser"] = await browse_and_purge(page, found)
            await page.screenshot(ARTIFACTS / f"dashboard-{width}px-purged.png")
    return seen


async def switch_to_a_week(page) -> dict:
    """The 7d range: days on the charts, every panel loaded again."""
    await page.evaluate("document.querySelector('#range button[data-since=\"7d\"]').click()")
    await page.wait_for(
        "document.getElementById('latency-title').textContent.startsWith('Latency per day')"
        " && !document.body.classList.contains('busy')",
        "the week's numbers",
    )
    return await page.evaluate(
        """({trend: document.getElementById('trend-title').textContent,
             failed: document.body.innerText.includes('could not load'),
             url: location.search})"""
    )


async def browse_and_purge(page, found: dict[str, str]) -> dict:
    """Search the stored prompts for one entry, purge it with two clicks."""
    await page.evaluate(
        f"document.getElementById('entry-query').value = {json.dumps(found['search'].upper())};"
        "document.querySelector('#entry-search button').click()"
    )
    keys = await page.wait_for(
        f"""(() => {{
          const rows = [...document.querySelectorAll('#entries tr[data-key]')];
          return rows.length === 1 && rows[0].dataset.key === {json.dumps(found["key"])}
            && rows.map(r => r.dataset.key);
        }})()""",
        "the searched entry alone",
    )
    row = await page.evaluate(
        "[...document.querySelector('#entries tr[data-key]').cells].map(td => td.textContent)"
    )
    purge = "document.querySelector('#entries button.purge').click()"
    await page.evaluate(purge)  # arms the button
    armed = await page.evaluate("document.querySelector('#entries button.purge').textContent")
    await page.evaluate(purge)
    note = await page.wait_for(
        "document.getElementById('entries-note').textContent.startsWith('purged')"
        " && !document.querySelector('#entries tr[data-key]')"
        " && document.getElementById('entries-note').textContent",
        "the purge done",
    )
    empty = await page.evaluate("document.querySelector('#entries td.note').textContent")
    return {"keys": keys, "row": row, "armed": armed, "note": note, "empty": empty}


@pytest.mark.browser
def test_dashboard_panels_layout_and_entry_browser(make_gateway):
    gw = make_gateway()
    found = send_traffic(gw)
    stats = httpx.get(f"{gw.url}/cache/stats?since=1h", headers=gw.admin).json()
    assert stats["semantic_hits"] >= 1 and stats["reported_bad"] == 1
    by_reason = httpx.get(f"{gw.url}/cache/stats?since=1h&by=reason", headers=gw.admin)
    reasons = by_reason.status_code == 200 and any(
        g["misses"] for g in by_reason.json().get("groups", [])
    )
    listed = httpx.get(f"{gw.url}/cache/entries", headers=gw.admin).json()

    for width in (400, 1400):
        seen = asyncio.run(look(gw, width, found, reasons))
        panels = ["trend-panel", "tier-panel", "latency-panel", "entries-panel"]
        if reasons:
            panels.insert(3, "reasons-panel")
        assert seen["panels"] == panels, width
        assert seen["layout"] == {"cut": [], "overlaps": [], "wider": False, "scrolled": []}, width
        hits, misses = stats["hits"], stats["misses"]
        assert seen["hitRate"] == f"{100 * hits / (hits + misses):.1f}%"
        assert seen["exact"] == str(stats["exact_hits"])
        assert seen["semantic"] == str(stats["semantic_hits"])
        assert seen["entries"] == str(listed["total_entries"]) and "B" in seen["bytes"]
        assert seen["tiers"][0][0] == "exact" and seen["tiers"][1][0] == "semantic"
        assert seen["tiers"][1][4] == "1", "the reported bad answer, by the tier it came from"
        assert seen["reported"] == f"1 of {stats['semantic_hits']} semantic hits reported bad"
        # Ten namespaces by requests, then the other two as one row.
        assert len(seen["namespaces"]) == 11 and seen["namespaces"][-1] == "other (3)"
        assert seen["trendBars"] > 0
        assert not [usd for usd in seen["usd"] if "e-" in usd or usd.endswith("...")]
        assert "< $0.0001" in seen["usd"], "a fraction of a cent, as people write it"
        if reasons:
            assert seen["reasons"]

    assert seen["week"]["trend"] == "Requests and hits per day" and not seen["week"]["failed"]
    assert "since=7d" in seen["week"]["url"] and "token=" in seen["week"]["url"]
    browsed = seen["browser"]
    assert browsed["keys"] == [found["key"]]
    assert browsed["row"][1:4] == ["gpt-4o-mini", "default", "deliverylisbon"]  # two tags
    assert browsed["armed"] == "Confirm"
    assert browsed["note"] == f"purged entry {found['key']}"
    assert browsed["empty"].startswith("no stored prompt matches")
    keys = [e["key"] for e in httpx.get(f"{gw.url}/cache/entries", headers=gw.admin).json()["data"]]
    assert found["key"] not in keys and len(keys) == listed["total_entries"] - 1


def test_entries_search_the_stored_prompts_and_tell_savings(make_gateway):
    gw = make_gateway()
    client = gw.client()
    tag = uuid.uuid4().hex[:8]
    for text in (f"Refund for order {tag}", f"Shipping (express) {tag}", f"Refund for order {tag}"):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
        )

    def entries(query: str) -> dict:
        answer = httpx.get(f"{gw.url}/cache/entries?{query}", headers=gw.admin)
        assert answer.status_code == 200, answer.text
        return answer.json()

    everything = entries("")
    assert everything["total_entries"] == 2 and everything["total_bytes"] > 0
    refund = entries(f"q=REFUND.*{tag}&detail=true")["data"]
    assert [e["prompt"] for e in refund] == [f"Refund for order {tag}"]
    assert refund[0]["hits"] == 1 and refund[0]["usd_saved"] > 0
    assert refund[0]["prompt_tokens"] > 0 and refund[0]["completion_tokens"] > 0
    # Not a regular expression (an open parenthesis): searched as written.
    assert [e["prompt"] for e in entries("q=(express&detail=1")["data"]] == [
        f"Shipping (express) {tag}"
    ]
    assert entries("q=nothing-like-this")["data"] == []
    # Without detail, the entries keep their shape: no stored text in them.
    assert "prompt" not in entries(f"q={tag}")["data"][0]
    assert refund[0]["tags"] == []


def test_latency_percentiles_from_the_ledger(make_gateway):
    gw = make_gateway()
    client = gw.client()
    tag = uuid.uuid4().hex[:8]
    for i in range(4):
        for _ in range(3):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"latency {tag} {i}"}]
            )
    answer = httpx.get(f"{gw.url}/cache/latency?since=1h", headers=gw.admin).json()
    assert answer["bucket"] == "hour" and "mean" in answer["approximate"]
    buckets = answer["buckets"]
    assert sum(b["miss"]["requests"] for b in buckets if "miss" in b) == 4
    assert sum(b["exact"]["requests"] for b in buckets if "exact" in b) == 8
    for b in buckets:
        for outcome in ("exact", "miss"):
            if outcome in b:
                assert 0 < b[outcome]["p50_ms"] <= b[outcome]["p95_ms"]
    bad = httpx.get(f"{gw.url}/cache/latency?bucket=week", headers=gw.admin)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "bucket"
    assert httpx.get(f"{gw.url}/cache/latency").status_code == 401


def test_latency_percentiles_weigh_merged_rows_by_their_requests():
    """A row standing for n identical requests counts as n requests at their mean."""
    import sqlite3
    import time

    from gateway.ledger import create_schema, query_latency

    conn = sqlite3.connect(":memory:")
    create_schema(conn)
    now = time.time()
    # Misses: 1..10 ms one request each; exact hits: 90 requests at 1 ms in one merged
    # row, then 10 single ones at 50 ms.
    rows = [("MISS", None, float(ms), 1) for ms in range(1, 11)]
    rows += [("HIT", "exact", 90.0, 90)] + [("HIT", "exact", 50.0, 1)] * 10
    rows += [("BYPASS", None, 999.0, 1)]  # neither a hit nor a miss
    conn.executemany(
        "INSERT INTO requests (ts, tenant, namespace, endpoint, model, status, tier, "
        "prompt_tokens, completion_tokens, usd, priced, latency_ms, upstream_ms, bytes, "
        "http_status, requests) VALUES (?, 't', 'default', 'chat', 'm', ?, ?, 0, 0, 0, 1, ?, "
        "0, 0, 200, ?)",
        [(now, *row) for row in rows],
    )
    (bucket,) = query_latency(conn, "1h", "hour", now)["buckets"]
    assert bucket["miss"] == {"requests": 10, "rows": 10, "p50_ms": 5.0, "p95_ms": 10.0}
    assert bucket["exact"] == {"requests": 100, "rows": 11, "p50_ms": 1.0, "p95_ms": 50.0}
    assert "semantic" not in bucket
