"""Feedback from the app: POST /cache/feedback with the caller's own API key removes a bad
answer and counts it; X-Cache-Request-Key names each request. Real gateway processes,
the openai client; the tiny hashing embedder with raw cosine (plumbing, not match quality).
The Redis twin (a report to one replica reaches the others) is in test_redis.py."""

from __future__ import annotations

import re
import uuid

import httpx2 as httpx
import pytest

ADMIN = {"Authorization": "Bearer s3cret"}  # the admin token: not what feedback takes
NO_STORE = {"Cache-Control": "no-store"}


def question(tag: str) -> tuple[str, str]:
    """A question and a paraphrase of it (a semantic hit with the hashing embedder)."""
    return (
        f"How do I reset the password of my home wifi router quickly? Ref {tag}",
        f"How do I reset the password of my home wifi router quickly please? Ref {tag}",
    )


def ask(gw, prompt: str, api_key: str = "sk-test-a", headers: dict | None = None) -> dict:
    raw = gw.client(api_key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": prompt}],
        extra_headers=headers or {},
    )
    raw.parse()
    return {k.lower(): v for k, v in raw.headers.items()}


def report(gw, api_key: str, body: object) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/cache/feedback", json=body, headers={"Authorization": f"Bearer {api_key}"}
    )


def reported_bad_metric(gw, tier: str) -> float:
    text = httpx.get(f"{gw.url}/metrics", headers=ADMIN).text
    found = re.search(rf'^cachegate_reported_bad_total{{tier="{tier}"}} (\S+)$', text, re.M)
    assert found, f"no cachegate_reported_bad_total for tier {tier}"
    return float(found.group(1))


@pytest.fixture
def gw(make_gateway):
    """A gateway of the test's own, with an admin token: feedback must not need it."""
    return make_gateway(env={"CACHEGATE_ADMIN_TOKEN": "s3cret"})


def test_a_semantic_hit_reported_bad_is_gone_and_counted(gw):
    space = {"X-Cache-Namespace": f"fb-{uuid.uuid4().hex[:8]}"}
    stored, paraphrase = question(uuid.uuid4().hex[:8])
    miss = ask(gw, stored, headers=space)
    assert miss["x-cache-status"] == "MISS"
    assert miss["x-cache-request-key"] == miss["x-cache-key"]
    hit = ask(gw, paraphrase, headers=space)
    assert (hit["x-cache-status"], hit["x-cache-tier"]) == ("HIT", "semantic")
    assert hit["x-cache-key"] == miss["x-cache-key"]
    assert re.fullmatch("[0-9a-f]{32}", hit["x-cache-request-key"])
    assert hit["x-cache-request-key"] != hit["x-cache-key"]
    assert ask(gw, paraphrase, headers=space)["x-cache-status"] == "HIT"  # a remembered match
    assert reported_bad_metric(gw, "semantic") == 0

    answer = report(
        gw,
        "sk-test-a",
        {"key": hit["x-cache-key"], "request_key": hit["x-cache-request-key"], "verdict": "bad"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"key": hit["x-cache-key"], "purged": 1, "tier": "semantic"}

    assert ask(gw, paraphrase, headers={**space, **NO_STORE})["x-cache-status"] == "MISS"
    assert ask(gw, stored, headers={**space, **NO_STORE})["x-cache-status"] == "MISS"
    stats = httpx.get(f"{gw.url}/cache/stats", params={"by": "tier"}, headers=ADMIN).json()
    assert stats["reported_bad"] == 1
    assert stats["requests"] == stats["hits"] + stats["misses"] == 5, "a report is no request"
    semantic = next(g for g in stats["groups"] if g["name"] == "semantic")
    assert (semantic["reported_bad"], semantic["semantic_hits"]) == (1, 2)
    assert reported_bad_metric(gw, "semantic") == 1
    assert reported_bad_metric(gw, "exact") == 0
    # The same entry again: gone, so nothing more to count.
    again = report(gw, "sk-test-a", {"key": hit["x-cache-key"], "verdict": "bad"})
    assert again.status_code == 404
    assert stats == httpx.get(f"{gw.url}/cache/stats", params={"by": "tier"}, headers=ADMIN).json()


def test_an_exact_hit_reported_without_request_key_and_the_cli_shows_it(gw):
    prompt = f"Name three primary colours. {uuid.uuid4().hex}"
    ask(gw, prompt)
    hit = ask(gw, prompt)
    assert hit["x-cache-request-key"] == hit["x-cache-key"]
    exact = {"key": hit["x-cache-key"], "request_key": hit["x-cache-key"], "verdict": "bad"}
    assert report(gw, "sk-test-a", exact).json()["tier"] == "exact"
    ask(gw, prompt)  # a MISS, stored again
    unknown = report(gw, "sk-test-a", {"key": hit["x-cache-key"], "verdict": "bad"})
    assert unknown.json()["tier"] is None
    assert reported_bad_metric(gw, "exact") == 1
    assert reported_bad_metric(gw, "unknown") == 1
    import subprocess

    from tools.processes import CACHEGATE

    httpx.get(f"{gw.url}/cache/stats", headers=ADMIN)  # flushes the ledger for the CLI
    table = subprocess.run(
        [*CACHEGATE, "stats", "--data-dir", str(gw.data_dir)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    header, total = table.splitlines()[1:3]
    assert header.split()[-1] == "bad"
    assert total.split()[-1] == "2"


def test_another_tenants_report_is_refused_and_the_entry_stays(gw):
    prompt = f"What is the boiling point of water? {uuid.uuid4().hex}"
    ask(gw, prompt, "sk-owner")
    hit = ask(gw, prompt, "sk-owner")
    body = {"key": hit["x-cache-key"], "request_key": hit["x-cache-request-key"], "verdict": "bad"}
    for api_key in ("sk-intruder", "s3cret"):  # another tenant; the admin token is none either
        refused = report(gw, api_key, body)
        assert refused.status_code == 404
        assert refused.json()["error"]["param"] == "key"
    no_key = httpx.post(f"{gw.url}/cache/feedback", json=body)
    assert no_key.status_code == 404
    assert ask(gw, prompt, "sk-owner")["x-cache-status"] == "HIT"
    assert report(gw, "sk-owner", {**body, "key": "0" * 32}).status_code == 404
    stats = httpx.get(f"{gw.url}/cache/stats", headers=ADMIN).json()
    assert stats["reported_bad"] == 0


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"verdict": "bad"},
        {"key": "abc", "verdict": "bad"},
        {"key": "0" * 32},
        {"key": "0" * 32, "verdict": "good"},
        {"key": "0" * 32, "verdict": "bad", "request_key": "not hex"},
        {"key": "0" * 32, "verdict": "bad", "request_key": 7},
        {"key": "0" * 32, "verdict": "bad", "comment": "wrong"},
    ],
)
def test_a_malformed_feedback_body_is_a_400(gateway, body):
    answer = report(gateway, "sk-test-a", body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert gateway.alive()


def test_feedback_body_that_is_not_json_is_a_400(gateway):
    answer = httpx.post(f"{gateway.url}/cache/feedback", content=b"{key", headers={})
    assert answer.status_code == 400
    assert "JSON" in answer.json()["error"]["message"]


def test_every_cached_route_names_the_request_key(make_gateway, mock_upstream):
    gateway = make_gateway(args=["--anthropic-upstream", mock_upstream.url.removesuffix("/v1")])
    client = gateway.client()
    prompt = f"Stream me a haiku {uuid.uuid4().hex}"
    for _ in range(2):  # a MISS streamed, then a HIT replayed as a stream
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], stream=True
        ) as streamed:
            assert streamed.headers["x-cache-request-key"] == streamed.headers["x-cache-key"]
    completion = client.completions.with_raw_response.create(
        model="gpt-3.5-turbo-instruct", prompt=prompt
    )
    assert re.fullmatch("[0-9a-f]{32}", completion.headers["x-cache-request-key"])
    one = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=prompt)
    assert one.headers["x-cache-request-key"] == one.headers["x-cache-key"]
    two = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=[prompt, "another"]
    )
    assert "x-cache-request-key" not in two.headers
    response = client.responses.with_raw_response.create(model="gpt-4o-mini", input=prompt)
    assert re.fullmatch("[0-9a-f]{32}", response.headers["x-cache-request-key"])


def test_a_messages_answer_is_reported_with_the_credentials_the_sdk_sent(
    make_gateway, mock_upstream
):
    import anthropic

    gw = make_gateway(args=["--anthropic-upstream", mock_upstream.url.removesuffix("/v1")])
    sdk = anthropic.Anthropic(base_url=gw.url, api_key="sk-ant-fb", max_retries=0)
    prompt = f"Tell me about caching {uuid.uuid4().hex}"

    def ask_claude() -> dict:
        return sdk.messages.with_raw_response.create(
            model="claude-sonnet-4-5",
            max_tokens=64,
            messages=[{"role": "user", "content": prompt}],
        ).headers

    ask_claude()
    hit = ask_claude()
    assert hit["x-cache-status"] == "HIT"
    body = {"key": hit["x-cache-key"], "request_key": hit["x-cache-request-key"], "verdict": "bad"}
    url = f"{gw.url}/cache/feedback"
    sent = {"Authorization": "Bearer sk-ant-fb"}  # as this SDK sends its key
    assert sent["Authorization"] == mock_upstream.last()["headers"]["Authorization"]
    assert httpx.post(url, json=body, headers={"x-api-key": "sk-ant-other"}).status_code == 404
    answer = httpx.post(url, json=body, headers=sent)
    assert answer.json() == {"key": hit["x-cache-key"], "purged": 1, "tier": "exact"}
    assert ask_claude()["x-cache-status"] == "MISS"


def test_a_ledger_from_before_feedback_gains_the_request_key_column(tmp_path):
    import asyncio
    import sqlite3

    from gateway.ledger import COLUMNS, Record, SqliteLedger

    path = tmp_path / "ledger.db"
    with sqlite3.connect(path) as old:  # the table as it was: no request_key
        old.execute(
            f"CREATE TABLE requests (id INTEGER PRIMARY KEY, {', '.join(COLUMNS[:-1])}, "
            "requests INTEGER NOT NULL DEFAULT 1)"
        )
    reported = Record(
        *(1000.0, "t1", "default", "chat", "gpt-4o-mini", "REPORTED", "semantic", None),
        *(0, 0, 0.0, 1, 0.2, 0.0, 0, 200, "a" * 32, None, "b" * 32),
    )

    async def write_and_count() -> dict:
        ledger = SqliteLedger(path)
        ledger.record(reported)
        stats = await ledger.stats(None, "tier")
        await ledger.close()
        return stats

    stats = asyncio.run(write_and_count())
    assert (stats["requests"], stats["reported_bad"]) == (0, 1)
    assert [(g["name"], g["reported_bad"]) for g in stats["groups"]] == [("semantic", 1)]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT request_key FROM requests").fetchall() == [("b" * 32,)]


def test_shared_ledger_rows_of_earlier_replicas_are_read(tmp_path):
    """Rows in the Redis stream written before `request_key` (and before `requests`)."""
    import orjson

    from gateway.ledger import COLUMNS
    from gateway.redis.ledger import mirror_row

    values = [1000.0, "t", "default", "chat", "m", "HIT", "exact", None, 1, 2, 0.1, 1]
    values += [0.2, 100.0, 50, 200, "k", "prompt"]
    assert len(values) == COLUMNS.index("request_key")
    later = [None] * (len(COLUMNS) - len(values) - 1)  # the fields added after request_key
    for written, want in (
        (values, [*values, None, *later, 1]),  # before rows counted requests
        ([*values, 3], [*values, None, *later, 3]),  # before request_key
        ([*values, "r" * 32, 3], [*values, "r" * 32, *later, 3]),  # with request_key
    ):
        assert mirror_row({b"r": orjson.dumps(written)}) == want


@pytest.mark.browser
def test_the_dashboard_shows_reported_bad_answers_as_a_share_of_semantic_hits(gw):
    from test_analytics import element_text, render_dashboard

    stored, paraphrase = question(uuid.uuid4().hex[:8])
    ask(gw, stored)
    hits = [ask(gw, paraphrase, headers=NO_STORE) for _ in range(4)]
    assert {h["x-cache-tier"] for h in hits} == {"semantic"}
    body = {"key": hits[0]["x-cache-key"], "request_key": hits[0]["x-cache-request-key"]}
    assert report(gw, "sk-test-a", {**body, "verdict": "bad"}).status_code == 200
    dom = render_dashboard(f"{gw.url}/dashboard?since=1h&token=s3cret", "dashboard-feedback.png")
    assert 'data-loaded="true"' in dom
    assert element_text(dom, "live-precision") == "75.0%"
    assert element_text(dom, "reported-bad") == "1 of 4 semantic hits reported bad"
