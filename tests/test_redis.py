"""Replicas sharing one Redis: real `redis-server` and gateway processes, the openai client.

The gateways use the tiny deterministic embedder and raw cosine: these tests are about
what is shared and kept in step, not about the quality of a match.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx2 as httpx
import pytest
import redis
from conftest import Gateway

from tools.processes import CACHEGATE, REPO, free_port

pytestmark = pytest.mark.redis

T = TypeVar("T")
NO_STORE = {"Cache-Control": "no-store"}  # read the cache, never store: polls leave no trace


class RedisServer:
    """A `redis-server` of the test's own, without persistence unless asked for (`save`)."""

    def __init__(self, directory: Path, start: bool = True) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.fail("redis-server is not installed; run `make install`")
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        if start:
            self.start()

    def start(self) -> None:
        """Start on the same port and directory (it loads dump.rdb if `save` wrote one)."""
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=(self.directory / "redis.log").open("a"),
            stderr=subprocess.STDOUT,
        )
        client = self.client()
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.02)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def save(self) -> None:
        self.client().save()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class Answer:
    status: str
    tier: str | None
    key: str | None
    content: str


def chat(gw: Gateway, prompt: str, headers: dict | None = None) -> Answer:
    raw = gw.client().chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": prompt}],
        extra_headers=headers or {},
    )
    return Answer(
        raw.headers["x-cache-status"],
        raw.headers.get("x-cache-tier"),
        raw.headers.get("x-cache-key"),
        raw.parse().choices[0].message.content,
    )


def hit(gw: Gateway, prompt: str, tier: str, headers: dict | None = None) -> Answer | None:
    """The answer when it was a hit of `tier`, else None; never stores (for polling)."""
    answer = chat(gw, prompt, {**NO_STORE, **(headers or {})})
    return answer if (answer.status, answer.tier) == ("HIT", tier) else None


def question(tag: str) -> tuple[str, str]:
    """A question and a paraphrase of it (raw cosine 0.92 to 0.94 with any tag)."""
    return (
        f"How do I reset the password of my home wifi router quickly? Ref {tag}",
        f"How do I reset the password of my home wifi router quickly please? Ref {tag}",
    )


def tag() -> str:
    return uuid.uuid4().hex[:10]


def poll(check: Callable[[], T], seconds: float) -> T:
    """The first truthy result of `check()`; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {seconds}s")
        time.sleep(0.05)
    return result


def start_replicas(tmp: Path, upstream: str, url: str, count: int) -> list[Gateway]:
    with ThreadPoolExecutor(count) as pool:
        return list(
            pool.map(
                lambda i: Gateway(tmp / f"replica{i}", upstream, args=["--backend", url]),
                range(count),
            )
        )


def stats(gw: Gateway, namespace: str) -> dict:
    """The stats of one namespace, as `gw` reports them."""
    answer = httpx.get(
        f"{gw.url}/cache/stats", headers=gw.admin, params={"since": "1h", "by": "namespace"}
    )
    groups = answer.json()["groups"]
    return next((g for g in groups if g["name"] == namespace), {"requests": 0, "hits": 0})


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.kill()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, mock_upstream, shared_redis) -> Iterator[list[Gateway]]:
    """Three replicas on one Redis, shared by this module's tests (unique prompts keep apart)."""
    gateways = start_replicas(
        tmp_path_factory.mktemp("replicas"), mock_upstream.url, shared_redis.url, 3
    )
    yield gateways
    for gw in gateways:
        gw.stop()


@pytest.fixture
def own_redis(tmp_path, mock_upstream) -> Iterator[tuple[RedisServer, list[Gateway]]]:
    """A Redis of the test's own, to kill and restart, with two replicas on it."""
    server = RedisServer(tmp_path / "redis")
    gateways = start_replicas(tmp_path, mock_upstream.url, server.url, 2)
    yield server, gateways
    for gw in gateways:
        gw.stop()
    server.kill()


def test_exact_hit_across_replicas(replicas, mock_upstream):
    a, b, c = replicas
    prompt = f"What is the boiling point of water at sea level? {tag()}"
    calls = mock_upstream.calls()
    first = chat(a, prompt)
    assert first.status == "MISS"
    for gw in (b, c):
        again = chat(gw, prompt)
        assert (again.status, again.tier, again.key) == ("HIT", "exact", first.key)
        assert again.content == first.content
    assert mock_upstream.calls() == calls + 1


def test_semantic_hit_across_replicas(replicas):
    a, b, c = replicas
    stored, paraphrase = question(tag())
    assert chat(a, stored).status == "MISS"
    for gw in (b, c):
        found = poll(lambda gw=gw: hit(gw, paraphrase, "semantic"), 3)
        assert stored in found.content, "the answer stored through the other replica"


def test_replica_started_later_hits_entries_stored_before(
    replicas, mock_upstream, shared_redis, tmp_path
):
    stored, paraphrase = question(tag())
    exact = f"Name three primary colours. {tag()}"
    assert chat(replicas[0], stored).status == "MISS"
    assert chat(replicas[1], exact).status == "MISS"
    late = Gateway(tmp_path / "late", mock_upstream.url, args=["--backend", shared_redis.url])
    try:
        assert hit(late, exact, "exact")
        assert hit(late, paraphrase, "semantic"), "its vector was loaded at start"
    finally:
        late.stop()


def test_purge_on_one_replica_is_seen_by_the_others(replicas):
    a, b, c = replicas
    headers = {"X-Cache-Namespace": f"purge-{tag()}"}
    stored, paraphrase = question(tag())
    assert chat(a, stored, headers).status == "MISS"
    poll(lambda: hit(b, paraphrase, "semantic", headers), 3)
    assert hit(b, stored, "exact", headers)  # in b's memory LRU now too

    answer = httpx.post(
        f"{c.url}/cache/purge", headers=c.admin, json={"namespace": headers["X-Cache-Namespace"]}
    )
    assert answer.json() == {"purged": 1}
    for gw in (a, b):
        poll(lambda gw=gw: chat(gw, stored, {**headers, **NO_STORE}).status == "MISS", 2)
        assert chat(gw, paraphrase, {**headers, **NO_STORE}).status == "MISS"


def test_a_bad_answer_reported_to_one_replica_is_gone_for_the_others(replicas):
    a, b, c = replicas
    headers = {"X-Cache-Namespace": f"feedback-{tag()}"}
    stored, paraphrase = question(tag())
    assert chat(a, stored, headers).status == "MISS"
    served = poll(lambda: hit(b, paraphrase, "semantic", headers), 3)
    raw = b.client().chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": paraphrase}],
        extra_headers={**headers, **NO_STORE},
    )
    request_key = raw.headers["x-cache-request-key"]
    assert raw.headers["x-cache-key"] == served.key != request_key
    intruder = httpx.post(
        f"{a.url}/cache/feedback",
        json={"key": served.key, "verdict": "bad"},
        headers={"Authorization": "Bearer sk-someone-else"},
    )
    assert intruder.status_code == 404
    assert hit(b, paraphrase, "semantic", headers), "a refused report removes nothing"

    answer = httpx.post(
        f"{a.url}/cache/feedback",
        json={"key": served.key, "request_key": request_key, "verdict": "bad"},
        headers={"Authorization": "Bearer sk-test-a"},  # the key the answer was served to
    )
    assert answer.json() == {"key": served.key, "purged": 1, "tier": "semantic"}
    for gw in (b, c):
        poll(lambda gw=gw: chat(gw, paraphrase, {**headers, **NO_STORE}).status == "MISS", 2)
        assert chat(gw, stored, {**headers, **NO_STORE}).status == "MISS"
    group = poll(lambda: (g := stats(c, headers["X-Cache-Namespace"]))["reported_bad"] and g, 3)
    assert group["reported_bad"] == 1


def test_stats_of_one_replica_count_the_requests_of_all(replicas, shared_redis):
    a, b, c = replicas
    namespace = f"stats-{tag()}"
    headers = {"X-Cache-Namespace": namespace}
    stored, paraphrase = question(tag())
    assert chat(a, stored, headers).status == "MISS"
    assert hit(b, stored, "exact", headers)
    assert hit(c, stored, "exact", headers)
    poll(lambda: hit(c, paraphrase, "semantic", headers), 3)  # c's last request

    group = poll(lambda: (g := stats(a, namespace))["hits"] == 3 and g, 3)
    assert (group["exact_hits"], group["semantic_hits"]) == (2, 1)
    assert group["misses"] == group["requests"] - 3 >= 1  # the first ask, and missed polls
    assert group["tokens_saved"]["completion"] > 0
    for gw in (b, c):
        assert stats(gw, namespace) == group
    top = httpx.get(
        f"{a.url}/cache/top-prompts", headers=a.admin, params={"since": "1h", "limit": 1000}
    ).json()
    assert any(row["hits"] == 3 and row["prompt"] == stored for row in top["data"])

    command = ["stats", "--backend", shared_redis.url, "--since", "1h", "--by", "namespace"]
    cli = subprocess.run(
        [*CACHEGATE, *command, "--json"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert cli.returncode == 0, cli.stderr
    assert next(g for g in json.loads(cli.stdout)["groups"] if g["name"] == namespace) == group


def test_redis_down_passes_through_then_caches_again_when_back(own_redis, mock_upstream):
    server, (a, b) = own_redis
    kept_in = {"X-Cache-Namespace": f"kept-{tag()}"}
    kept = f"Which planet is the largest? {tag()}"
    assert chat(a, kept, kept_in).status == "MISS"
    assert hit(b, kept, "exact", kept_in)
    server.save()  # Redis comes back with its data
    server.kill()

    outage = f"outage-{tag()}"
    during = f"Why is the sky blue? {tag()}"
    calls = mock_upstream.calls()
    for gw in (a, b):
        assert chat(gw, kept, kept_in).status == "MISS", "nothing served while Redis is away"
        for _ in range(2):
            answer = chat(gw, during, {"X-Cache-Namespace": outage})
            assert answer.status == "MISS" and answer.content
        assert httpx.get(f"{gw.url}/healthz").status_code == 200
        purge = httpx.post(f"{gw.url}/cache/purge", headers=gw.admin, json={"all": True})
        assert purge.status_code == 503 and "unreachable" in purge.json()["error"]["message"]
    assert mock_upstream.calls() == calls + 6

    server.start()
    for gw in (a, b):
        poll(lambda gw=gw: hit(gw, kept, "exact", kept_in), 5)
    again = f"Why is the sea salty? {tag()}"
    assert chat(a, again).status == "MISS"
    assert hit(b, again, "exact")
    # The ledger rows of the outage were buffered and written once Redis was back.
    group = poll(lambda: (g := stats(b, outage))["requests"] == 4 and g, 3)
    assert group["misses"] == 4
    for gw in (a, b):
        log = gw.log.read_text()
        assert log.count("is unreachable") == 1, "said once, not once per request"
        assert log.count("is back: caching again") == 1


def test_redis_restarted_empty_leaves_no_stale_local_hits(own_redis):
    server, (a, b) = own_redis
    stored, paraphrase = question(tag())
    assert chat(a, stored).status == "MISS"
    assert hit(b, stored, "exact")
    poll(lambda: hit(a, paraphrase, "semantic") and hit(b, paraphrase, "semantic"), 3)

    server.kill()
    server.start()  # empty: nothing was saved
    for gw in (a, b):
        assert chat(gw, stored, NO_STORE).status == "MISS"
    for gw in (a, b):
        fresh = f"How many legs does a spider have? {tag()}"
        poll(lambda gw=gw, fresh=fresh: chat(gw, fresh).status == "HIT", 5)  # caching again
    for gw in (a, b):
        assert chat(gw, stored, NO_STORE).status == "MISS", "the entry that went is not served"
        assert chat(gw, paraphrase, NO_STORE).status == "MISS", "nor is its vector matched"


def test_replica_starts_while_redis_is_down(tmp_path, mock_upstream):
    server = RedisServer(tmp_path / "redis", start=False)
    gw = Gateway(tmp_path / "data", mock_upstream.url, args=["--backend", server.url])
    try:
        prompt = f"What is the speed of light? {tag()}"
        assert [chat(gw, prompt).status for _ in range(2)] == ["MISS", "MISS"]
        server.start()
        poll(lambda: chat(gw, prompt).status == "HIT", 5)
    finally:
        gw.stop()
        server.kill()


def test_bounds_evict_soonest_expiring_first_and_sizes_add_up(tmp_path, mock_upstream):
    server = RedisServer(tmp_path / "redis")
    args = ["--backend", server.url]
    small = Gateway(tmp_path / "small", mock_upstream.url, {"CACHEGATE_MAX_ENTRIES": "2"}, args)
    other = Gateway(tmp_path / "other", mock_upstream.url, args=args)
    redis_client = server.client()
    try:
        prompts = [f"Tell me fact number {i}. {tag()}" for i in range(3)]
        assert chat(other, prompts[0], {"X-Cache-TTL": "600"}).status == "MISS"
        assert hit(other, prompts[0], "exact")  # held in other's memory
        for prompt in prompts[1:]:
            assert chat(small, prompt).status == "MISS"
        assert redis_client.zcard("cg:index") == 2
        # the shortest-lived entry went, from Redis and from the other replica's memory
        poll(lambda: chat(other, prompts[0], NO_STORE).status == "MISS", 2)
        assert hit(other, prompts[2], "exact")
        sizes = redis_client.hvals("cg:sizes")
        assert int(redis_client.get("cg:bytes")) == sum(map(int, sizes)) > 0
        purged = httpx.post(
            f"{other.url}/cache/purge", headers=other.admin, json={"all": True}
        ).json()
        assert purged == {"purged": 2}
        assert int(redis_client.get("cg:bytes")) == redis_client.zcard("cg:index") == 0
    finally:
        small.stop()
        other.stop()
        server.kill()


def test_identical_requests_over_two_replicas_make_one_upstream_call(own_redis, mock_upstream):
    _, gateways = own_redis
    prompt = f"Collapse me across replicas {tag()}"
    slow = {"X-Mock-Delay-Ms": "1500"}  # all twenty arrive while the first is upstream
    calls = mock_upstream.calls()
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda i: chat(gateways[i % 2], prompt, slow), range(20)))
    assert mock_upstream.calls() == calls + 1
    assert len({answer.content for answer in answers}) == 1
    assert sorted(answer.status for answer in answers) == ["HIT"] * 19 + ["MISS"]


def test_a_replica_whose_flight_holder_is_lost_calls_upstream_itself(own_redis, mock_upstream):
    server, (a, _) = own_redis
    prompt = f"The holder of this flight went away {tag()}"
    key = chat(a, prompt, {"Cache-Control": "no-store"}).key  # its key, nothing stored
    # A replica that claimed the flight and died: its claim lapses, never released.
    server.client().set(f"cg:flight:{key}", "a-replica-that-died", px=1500)
    calls = mock_upstream.calls()
    answer = chat(a, prompt)
    assert (answer.status, mock_upstream.calls()) == ("MISS", calls + 1)


def test_the_entry_browser_and_latency_read_the_shared_store_and_ledger(replicas):
    """/cache/entries?q= on one replica finds what another stored; /cache/latency counts
    the requests of every replica."""
    ref = tag()
    stored, _ = question(ref)
    assert chat(replicas[0], stored, {"X-Cache-Tags": "wifi"}).status == "MISS"

    def found() -> list:
        answer = httpx.get(
            f"{replicas[1].url}/cache/entries?q=ROUTER.*{ref}&detail=true",
            headers=replicas[1].admin,
        ).json()
        return answer["data"] if answer["total_entries"] >= 1 else []

    (entry,) = poll(found, 10)
    assert entry["prompt"] == stored and entry["namespace"] == "default"
    assert entry["tags"] == ["wifi"]
    assert entry["usd_saved"] == 0  # stored, not yet hit

    def misses() -> int:
        answer = httpx.get(f"{replicas[2].url}/cache/latency?since=1h", headers=replicas[2].admin)
        return sum(b["miss"]["requests"] for b in answer.json()["buckets"] if "miss" in b)

    assert poll(misses, 10) >= 1


def test_purge_by_tag_reaches_every_replica(replicas):
    a, b, c = replicas
    tagged, paraphrase = question(tag())
    untagged = f"What is the tallest mountain in Africa? {tag()}"
    assert chat(a, tagged, {"X-Cache-Tags": "docs:v2"}).status == "MISS"
    assert chat(a, untagged).status == "MISS"
    for gw in (b, c):
        poll(lambda gw=gw: hit(gw, paraphrase, "semantic"), 3)
        assert hit(gw, tagged, "exact")  # in its memory LRU now too
        assert hit(gw, untagged, "exact")

    answer = httpx.post(f"{c.url}/cache/purge", headers=c.admin, json={"tag": "docs:v2"})
    assert answer.json() == {"purged": 1}
    for gw in (a, b, c):
        poll(lambda gw=gw: chat(gw, tagged, NO_STORE).status == "MISS", 2)
        assert chat(gw, paraphrase, NO_STORE).status == "MISS"
        assert hit(gw, untagged, "exact"), "untagged entries stay"


def test_miss_reasons_and_analyze_over_the_shared_ledger(own_redis):
    server, (a, b) = own_redis
    stored, paraphrase = question(tag())
    assert chat(a, stored).status == "MISS"  # no_entry: an empty partition
    assert chat(b, f"Name a {tag()} colour", {"X-Cache-Mode": "exact"}).status == "MISS"
    assert hit(a, paraphrase, "semantic")  # (a polled miss would add a reason)

    httpx.get(f"{b.url}/cache/stats", headers=b.admin)  # sends b's rows to Redis now
    groups = httpx.get(f"{a.url}/cache/stats", headers=a.admin, params={"by": "reason"})
    groups = groups.json()["groups"]
    assert {g["name"]: g["misses"] for g in groups if g["misses"]} == {
        "no_entry": 1,
        "exact_only": 1,
    }
    command = [*CACHEGATE, "analyze", "--backend", server.url, "--since", "1h", "--json"]
    cli = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert cli.returncode == 0, cli.stderr
    report = json.loads(cli.stdout)
    assert {g["reason"]: g["misses"] for g in report["miss_reasons"]} == {
        "no_entry": 1,
        "exact_only": 1,
    }
    assert report["tiers"]["semantic_hits"] == 1
    assert (report["entries"]["entries"], report["entries"]["hot_entries"]) == (2, 1)


def test_a_request_that_stores_nothing_makes_no_other_replica_wait(own_redis, mock_upstream):
    _, (a, b) = own_redis
    prompt = f"Nothing of this answer is stored {tag()}"
    no_store = {"Cache-Control": "no-store"}
    calls = mock_upstream.calls()
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(chat, a, prompt, {**no_store, "X-Mock-Delay-Ms": "3000"})
        poll(lambda: mock_upstream.calls() == calls + 1, 30)  # a's request is upstream
        quick = chat(b, prompt, no_store)
        assert not slow.done(), "b waited for a flight whose answer is never stored"
        assert (quick.status, slow.result().status) == ("MISS", "MISS")
