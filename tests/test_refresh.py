"""Refresh-ahead: a hot entry served near its expiry is refreshed once in the background;
the triggering request is answered from cache; the refreshed entry keeps its TTL length."""

from __future__ import annotations

import sqlite3
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.refresh import RefreshAhead

times = st.floats(min_value=0, max_value=1e6, allow_nan=False)
windows = st.floats(min_value=0, max_value=1, allow_nan=False)


@given(st.integers(1, 10), windows, st.integers(0, 20), times, st.floats(0.001, 1e5), times)
def test_due_only_for_hot_entries_in_the_last_part_of_their_ttl(
    min_hits, window, hits, created_at, ttl_asked, now
):
    policy = RefreshAhead(min_hits=min_hits, window=window)
    expires_at = created_at + ttl_asked
    # The TTL an entry has is what its two times say (0.7 + 0.9999999999999999 - 0.7 is
    # not 0.9999999999999999): the one the policy reads.
    ttl = expires_at - created_at
    due = policy.due(hits, created_at, expires_at, now)
    if due:
        assert window > 0 and hits >= min_hits
        assert expires_at - window * ttl <= now < expires_at
    if hits < min_hits or now >= expires_at or window == 0:
        assert not due
    if hits >= min_hits and expires_at - window * ttl <= now < expires_at and window > 0:
        assert due


def test_off_by_default_and_bounds_checked():
    assert not RefreshAhead().enabled
    with pytest.raises(ValueError, match="between 0 and 1"):
        RefreshAhead(window=1.5)
    with pytest.raises(ValueError, match="at least 1"):
        RefreshAhead(min_hits=0, window=0.2)


REFRESH_ENV = {"CACHEGATE_REFRESH_AHEAD_MIN_HITS": "2", "CACHEGATE_REFRESH_AHEAD_WINDOW": "0.25"}
TTL = 6.0  # the last quarter of it, from 4.5 s on, is the refresh window
# A long system prompt: the request body kept for the refresh is stored compressed.
SYSTEM = "You answer questions about the store. Be brief and polite. " * 40


def wait_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def poll(check, seconds: float = 60) -> None:
    """Wait for `check()` to hold (a background refresh lands when it lands)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "it did not happen"
        time.sleep(0.05)


def new_question() -> str:
    return f"Refresh-ahead {uuid.uuid4().hex[:8]}: what are the store's opening hours?"


def asker(gw, question: str | None = None, headers: dict[str, str] | None = None):
    """A function that asks `gw` one question (a new one unless given), stored for TTL."""
    question = question or new_question()

    def ask():
        return gw.client("sk-refresh").chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": question},
            ],
            extra_headers={"X-Cache-TTL": str(int(TTL)), **(headers or {})},
        )

    return ask


def test_hot_entry_is_refreshed_once_and_stays_a_hit_past_its_ttl(make_gateway, mock_upstream):
    gw = make_gateway(env=REFRESH_ENV)
    ask = asker(gw)
    calls = mock_upstream.calls("chat")
    first = ask()
    assert first.headers["x-cache-status"] == "MISS"
    stored_at = time.time()
    for _ in range(2):  # hot, but not yet near its expiry: nothing is refreshed
        assert ask().headers["x-cache-status"] == "HIT"
    assert mock_upstream.calls("chat") == calls + 1

    wait_until(stored_at + 4.8)
    trigger = ask()  # answered from the cache as it is; the refresh runs behind it
    assert trigger.headers["x-cache-status"] == "HIT"
    assert int(trigger.headers["age"]) >= 4
    poll(lambda: mock_upstream.calls("chat") == calls + 2)
    poll(lambda: int(ask().headers["age"]) < 4)  # the refreshed entry, stored anew
    with sqlite3.connect(f"file:{gw.data_dir / 'entries.db'}?mode=ro", uri=True) as entries:
        kept, packed = entries.execute("SELECT length(request), compressed FROM entries").fetchone()
    assert packed & 2 and kept < len(SYSTEM) / 4  # the request body, zstd-packed

    wait_until(stored_at + TTL + 0.5)  # past the first answer's expiry
    late = ask()
    assert late.headers["x-cache-status"] == "HIT"
    assert int(late.headers["age"]) < TTL
    answer = late.parse().choices[0].message.content
    assert answer == first.parse().choices[0].message.content  # the mock answers alike
    assert mock_upstream.calls("chat") == calls + 2  # exactly one refresh
    stats = httpx.get(f"{gw.url}/cache/stats", params={"since": "all"}, headers=gw.admin).json()
    assert stats["refresh"] == 1 and stats["misses"] == 1
    assert stats["tokens_spent"]["completion"] > 0


def refresh_under_way(ask, mock_upstream):
    """Ask a new question until its entry's refresh is upstream: stored, hot (two hits),
    then served in its refresh window. The last hit before the window."""
    calls = mock_upstream.calls("chat")
    assert ask().headers["x-cache-status"] == "MISS"
    stored_at = time.time()
    for _ in range(2):
        hit = ask()
    wait_until(stored_at + 4.8)
    ask()
    poll(lambda: mock_upstream.calls("chat") == calls + 2)
    return hit


def test_a_refreshed_answer_upstream_reported_no_usage_for_is_counted(make_gateway, mock_upstream):
    gw = make_gateway(env=REFRESH_ENV)
    ask = asker(gw, headers={"X-Mock-No-Usage": "1"})  # the refresh sends it too
    # Counted with the tokenizer when the answer was stored.
    usage = refresh_under_way(ask, mock_upstream).parse().usage
    assert usage is not None and usage.completion_tokens > 0
    poll(lambda: int(ask().headers["age"]) < 4)  # the refreshed entry
    assert ask().parse().usage == usage  # counted the same way (the mock answers alike)


def test_a_stop_drops_a_refresh_in_flight(make_gateway, mock_upstream):
    gw = make_gateway(env=REFRESH_ENV)
    refresh_under_way(asker(gw, headers={"X-Mock-Delay-Ms": "3000"}), mock_upstream)
    gw.stop()  # while the refresh waits for the slow upstream
    # Cancelled with the stop, not left to fail on the closed upstream session.
    assert "refresh of" not in gw.log.read_text()


def test_an_entry_purged_while_it_is_refreshed_stays_purged(make_gateway, mock_upstream):
    gw = make_gateway(env=REFRESH_ENV)
    ask = asker(gw, headers={"X-Mock-Delay-Ms": "2000"})  # the refresh waits as long
    key = refresh_under_way(ask, mock_upstream).headers["x-cache-key"]
    purge = httpx.post(f"{gw.url}/cache/purge", json={"key": key}, headers=gw.admin)
    assert purge.json() == {"purged": 1}
    stats = f"{gw.url}/cache/stats"
    poll(lambda: httpx.get(stats, headers=gw.admin).json()["refresh"] == 1)  # it landed
    assert ask().headers["x-cache-status"] == "MISS"  # and did not bring the entry back


def test_off_by_default_an_entry_expires(make_gateway, mock_upstream):
    gw = make_gateway()
    ask = asker(gw)
    calls = mock_upstream.calls("chat")
    assert ask().headers["x-cache-status"] == "MISS"
    stored_at = time.time()
    for _ in range(2):
        ask()
    wait_until(stored_at + 4.8)
    assert ask().headers["x-cache-status"] == "HIT"
    wait_until(stored_at + TTL + 0.5)
    assert ask().headers["x-cache-status"] == "MISS"
    assert mock_upstream.calls("chat") == calls + 2


@pytest.mark.redis
def test_replicas_on_redis_refresh_an_entry_once(tmp_path, mock_upstream):
    from conftest import Gateway
    from test_redis import RedisServer

    server = RedisServer(tmp_path / "redis")
    replicas = [
        Gateway(tmp_path / f"replica{i}", mock_upstream.url, REFRESH_ENV, ["--backend", server.url])
        for i in range(2)
    ]
    try:
        question = new_question()
        asks = [asker(gw, question) for gw in replicas]
        calls = mock_upstream.calls("chat")
        assert asks[0]().headers["x-cache-status"] == "MISS"
        stored_at = time.time()
        for ask in asks:  # hot on both replicas
            poll(lambda ask=ask: ask().headers["x-cache-status"] == "HIT")
            ask()
        wait_until(stored_at + 4.8)
        with ThreadPoolExecutor(2) as pool:  # both replicas serve it in its window at once
            triggers = list(pool.map(lambda ask: ask(), asks))
        assert [t.headers["x-cache-status"] for t in triggers] == ["HIT", "HIT"]
        poll(lambda: mock_upstream.calls("chat") == calls + 2)
        for ask in asks:  # each replica serves the refreshed entry
            poll(lambda ask=ask: int(ask().headers["age"]) < 4)
        wait_until(stored_at + TTL + 0.5)
        for ask in asks:
            assert ask().headers["x-cache-status"] == "HIT"
        assert mock_upstream.calls("chat") == calls + 2  # one refresh for both replicas
    finally:
        for gw in replicas:
            gw.stop()
        server.kill()
