"""The cache's life through real gateways, on SQLite and on a real Redis: tags and purges
by tag and by prompt, eviction orders and tenant quotas, compressed storage."""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import subprocess
import uuid
from collections.abc import Callable, Iterator

import httpx2 as httpx
import pytest
from conftest import FAST_SEMANTIC, Gateway
from test_redis import NO_STORE, RedisServer, chat, poll, question

from tools.processes import CACHEGATE, REPO

BACKENDS = ("sqlite", "redis")
MakeGateway = Callable[..., Gateway]


def tag() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(params=BACKENDS)
def on_backend(request, tmp_path, make_gateway) -> Iterator[MakeGateway]:
    """Starts gateways on the test's backend: each its own SQLite data dir, or all on one
    Redis of the test's own."""
    if request.param == "sqlite":
        yield make_gateway
        return
    server = RedisServer(tmp_path / "redis")

    def make(env: dict[str, str] | None = None) -> Gateway:
        return make_gateway(env=env, args=["--backend", server.url])

    yield make
    server.kill()


def status(gw: Gateway, prompt: str, headers: dict | None = None, key: str = "sk-test-a") -> str:
    raw = gw.client(api_key=key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": prompt}],
        extra_headers=headers or {},
    )
    return raw.headers["x-cache-status"]


def entries(gw: Gateway) -> int:
    answer = httpx.get(f"{gw.url}/cache/entries", params={"limit": 1000}, headers=gw.admin)
    return len(answer.json()["data"])


def evictions(gw: Gateway) -> dict[str, float]:
    text = httpx.get(f"{gw.url}/metrics", headers=gw.admin).text
    found = re.findall(r'^cachegate_evictions_total\{reason="(\w+)"\} (\S+)$', text, re.M)
    return {reason: float(count) for reason, count in found}


def purge(gw: Gateway, **fields) -> httpx.Response:
    return httpx.post(f"{gw.url}/cache/purge", json=fields, headers=gw.admin)


def test_without_a_cross_encoder_a_swapped_word_still_vetoes(on_backend):
    """Raw cosine (`semantic.verifier: cosine`) has no calibration to weigh a swapped word."""
    gw = on_backend()
    run = tag()
    assert status(gw, f"How do I rotate the API keys of my project? {run}") == "MISS"
    team = f"How do I rotate the API keys of my team? {run}"
    assert status(gw, team, {"X-Cache-Threshold": "0.1", **NO_STORE}) == "MISS"
    assert status(gw, f"how do i rotate the api keys of my project?? {run}", NO_STORE) == "HIT"


# -- tags ---------------------------------------------------------------------------------
def test_purge_by_tag_and_by_prompt(on_backend):
    gw = on_backend()
    run = tag()
    docs_v2 = f"How do I rotate the API keys of my project? {run}"
    both = f"Where are the docs for streaming answers? {run}"
    untagged = f"What is the capital of Portugal? {run}"
    docs_v3 = f"How do I rotate the API keys of my team? {run}"
    assert status(gw, docs_v2, {"X-Cache-Tags": "docs:v2"}) == "MISS"
    assert status(gw, both, {"X-Cache-Tags": "faq, docs:v2"}) == "MISS"
    assert status(gw, untagged) == "MISS"
    assert status(gw, docs_v3, {"X-Cache-Tags": "docs:v3"}) == "MISS"
    poll(lambda: entries(gw) == 4, 5)

    assert purge(gw, tag="docs:v2").json() == {"purged": 2}
    for prompt in (docs_v2, both):
        assert status(gw, prompt, NO_STORE) == "MISS"
    for prompt in (untagged, docs_v3):
        assert status(gw, prompt, NO_STORE) == "HIT"

    # A regular expression searched in the stored prompt; filters combine (AND).
    assert purge(gw, prompt=r"rotate .* team", model="gpt-4o").json() == {"purged": 0}
    assert purge(gw, prompt=r"rotate .* team", model="gpt-4o-mini").json() == {"purged": 1}
    assert status(gw, docs_v3, NO_STORE) == "MISS"
    assert status(gw, untagged, NO_STORE) == "HIT"


def test_tags_and_purges_are_checked(gateway):
    for value in ("a,,b", "has space", "x" * 65, ",".join(f"t{i}" for i in range(17)), "tag!"):
        answer = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers={"X-Cache-Tags": value, "Authorization": "Bearer sk-test-a"},
        )
        assert answer.status_code == 400, value
        assert "X-Cache-Tags" in answer.json()["error"]["message"]
    for fields in ({"prompt": "(unclosed"}, {"tag": "no spaces"}, {"tag": 3}):
        answer = purge(gateway, **fields)
        assert answer.status_code == 400, fields
        assert "cannot purge" in answer.json()["error"]["message"]


def test_tags_are_not_part_of_the_key(gateway):
    prompt = f"Which river flows through Vienna? {tag()}"
    assert status(gateway, prompt, {"X-Cache-Tags": "geo"}) == "MISS"
    assert status(gateway, prompt, {"X-Cache-Tags": "other"}) == "HIT"
    assert status(gateway, prompt) == "HIT"


def test_cli_purges_by_tag_and_prompt(make_gateway):
    gw = make_gateway()
    run = tag()
    tagged, other = f"Tagged question {run}", f"Another question about ferries {run}"
    assert status(gw, tagged, {"X-Cache-Tags": "release:2024.1"}) == "MISS"
    assert status(gw, other) == "MISS"
    poll(lambda: entries(gw) == 2, 5)
    for flags in (["--tag", "release:2024.1"], ["--prompt", "ab.ut ferr"]):
        said = subprocess.run(
            [*CACHEGATE, "purge", "--data-dir", str(gw.data_dir), *flags],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert "purged 1 entries" in said.stdout, said.stderr
    assert entries(gw) == 0


# -- eviction -----------------------------------------------------------------------------
@pytest.mark.parametrize("eviction", ["lru", "lfu"])
def test_lfu_keeps_the_often_used_entry_that_lru_drops(on_backend, eviction):
    gw = on_backend({"CACHEGATE_MAX_ENTRIES": "3", "CACHEGATE_EVICTION": eviction})
    run = tag()
    often, older, newer, last = (f"Question {name} {run}" for name in "ABCD")
    assert status(gw, often) == "MISS"
    for _ in range(3):
        assert status(gw, often) == "HIT"
    for prompt in (older, newer):
        assert status(gw, prompt) == "MISS"
        poll(lambda: entries(gw) >= 2, 5)  # stored in this order
    poll(lambda: entries(gw) == 3, 5)
    assert status(gw, last) == "MISS"
    gone = older if eviction == "lfu" else often
    poll(lambda: status(gw, gone, NO_STORE) == "MISS", 5)
    kept = {often, older, newer, last} - {gone}
    assert [status(gw, prompt, NO_STORE) for prompt in kept] == ["HIT"] * 3
    assert evictions(gw)["max_entries"] == 1


def test_eviction_removes_only_what_the_bound_needs(on_backend):
    gw = on_backend({"CACHEGATE_MAX_ENTRIES": "4"})
    run = tag()
    prompts = [f"Fact number {i} about owls {run}" for i in range(7)]
    for count, prompt in enumerate(prompts, 1):
        assert status(gw, prompt) == "MISS"
        poll(lambda count=count: entries(gw) == min(count, 4), 5)
    assert [status(gw, p, NO_STORE) for p in prompts] == ["MISS"] * 3 + ["HIT"] * 4
    assert evictions(gw) == {"max_entries": 3, "max_store_bytes": 0, "tenant_quota": 0}


def test_a_size_bound_evicts_only_what_it_needs(on_backend):
    run = tag()
    prompts = [f"Size-bound question {i:02d} {run}" for i in range(6)]  # entries of one size
    probe = on_backend()
    assert status(probe, prompts[0]) == "MISS"
    poll(lambda: entries(probe) == 1, 5)
    listed = httpx.get(f"{probe.url}/cache/entries", headers=probe.admin).json()["data"]
    size = listed[0]["size"]
    assert purge(probe, all=True).json() == {"purged": 1}

    gw = on_backend({"CACHEGATE_MAX_STORE_BYTES": str(3 * size + size // 2)})
    for count, prompt in enumerate(prompts, 1):
        assert status(gw, prompt) == "MISS"
        poll(lambda count=count: entries(gw) == min(count, 3), 5)
    assert [status(gw, p, NO_STORE) for p in prompts] == ["MISS"] * 3 + ["HIT"] * 3
    assert evictions(gw) == {"max_entries": 0, "max_store_bytes": 3, "tenant_quota": 0}


def test_a_tenant_at_its_quota_evicts_only_its_own_entries(on_backend):
    gw = on_backend({"CACHEGATE_MAX_ENTRIES_PER_TENANT": "2"})
    run = tag()
    mine = [f"Tenant A asks {i} {run}" for i in range(2)]
    theirs = [f"Tenant B asks {i} {run}" for i in range(6)]
    for prompt in mine:
        assert status(gw, prompt, key="sk-tenant-a") == "MISS"
    for prompt in theirs:
        assert status(gw, prompt, key="sk-tenant-b") == "MISS"
    poll(lambda: evictions(gw)["tenant_quota"] == 4, 5)
    assert entries(gw) == 4
    assert [status(gw, p, NO_STORE, "sk-tenant-a") for p in mine] == ["HIT", "HIT"]
    found = [status(gw, p, NO_STORE, "sk-tenant-b") for p in theirs]
    assert found == ["MISS"] * 4 + ["HIT"] * 2


# -- compression --------------------------------------------------------------------------
WORDS = (
    "the cache keeps answers for requests that repeat so a team pays once and serves many "
    "times from memory or disk while the model upstream rests and every tenant stays apart"
).split()


def long_prompt(seed: int) -> str:
    """Some 1,500 characters of prose-like text: an answer echoing it is compressible."""
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(260)) + f" {tag()}"


def test_compressed_entries_round_trip_and_old_ones_still_serve(make_gateway):
    plain = make_gateway({"CACHEGATE_COMPRESS_MIN_BYTES": "null"})
    packed = make_gateway()
    prompts = [long_prompt(i) for i in range(5)]
    first = {}
    for prompt in prompts:
        for gw in (plain, packed):
            raw = gw.client().chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
            )
            first[gw.url, prompt] = raw.parse().choices[0].message.content
    poll(lambda: entries(plain) == entries(packed) == 5, 5)

    def stored(gw: Gateway) -> list[tuple[int, int, int]]:
        with sqlite3.connect(gw.data_dir / "entries.db") as conn:
            return conn.execute("SELECT length(body), compressed, size FROM entries").fetchall()

    plain_rows, packed_rows = stored(plain), stored(packed)
    assert {compressed for _, compressed, _ in plain_rows} == {0}
    assert {compressed for _, compressed, _ in packed_rows} == {1}
    plain_bodies = sum(length for length, _, _ in plain_rows)
    assert sum(length for length, _, _ in packed_rows) < 0.6 * plain_bodies
    assert sum(s for *_, s in packed_rows) < sum(s for *_, s in plain_rows)

    # Restarted, both read from their files: compressed rows, and rows stored uncompressed
    # by a gateway that knew neither compression nor tags (the columns it lacked go).
    plain.stop()
    with sqlite3.connect(plain.data_dir / "entries.db") as conn:
        conn.execute("ALTER TABLE entries DROP COLUMN compressed")
        conn.execute("ALTER TABLE entries DROP COLUMN tags")
    plain.env.pop("CACHEGATE_COMPRESS_MIN_BYTES")
    for gw in (plain, packed):
        gw.restart()
        for prompt in prompts:
            raw = gw.client().chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
            )
            assert raw.headers["x-cache-status"] == "HIT"
            assert raw.parse().choices[0].message.content == first[gw.url, prompt]


def test_compressed_entries_are_shared_through_redis(tmp_path, make_gateway):
    server = RedisServer(tmp_path / "redis")
    try:
        args = ["--backend", server.url]
        plain = make_gateway(env={"CACHEGATE_COMPRESS_MIN_BYTES": "null"}, args=args)
        packed = make_gateway(args=args)
        old, new = long_prompt(1), long_prompt(2)
        assert chat(plain, old).status == "MISS"
        assert chat(packed, new).status == "MISS"
        client = server.client()
        poll(lambda: client.zcard("cg:index") == 2, 5)
        old_key, new_key = (chat(plain, p, NO_STORE).key for p in (old, new))
        assert client.hget(f"cg:e:{old_key}", "compressed") == b"0"
        assert client.hget(f"cg:e:{new_key}", "compressed") == b"1"
        client.hdel(f"cg:e:{old_key}", "compressed", "tags")  # as stored before either
        old_body = client.hget(f"cg:e:{old_key}", "body")
        assert len(client.hget(f"cg:e:{new_key}", "body")) < 0.6 * len(old_body)
        for gw in (plain, packed):  # each reads what the other stored
            for prompt in (old, new):
                answer = chat(gw, prompt, NO_STORE)
                assert answer.status == "HIT" and prompt in answer.content
    finally:
        server.kill()


def test_a_tagged_paraphrase_is_purged_with_its_entry(make_gateway):
    gw = make_gateway()
    stored, paraphrase = question(tag())
    assert status(gw, stored, {"X-Cache-Tags": "docs:v2"}) == "MISS"
    poll(lambda: chat(gw, paraphrase, NO_STORE).tier == "semantic", 5)
    assert purge(gw, tag="docs:v2").json() == {"purged": 1}
    assert chat(gw, paraphrase, NO_STORE).status == "MISS"


def test_tags_and_compressed_answers_survive_export_and_import(make_gateway, tmp_path):
    source = make_gateway()
    long, short = long_prompt(7), f"A short tagged question {tag()}"
    assert status(source, long, {"X-Cache-Tags": "docs:v2,faq"}) == "MISS"
    assert status(source, short, {"X-Cache-Tags": "docs:v2"}) == "MISS"
    assert status(source, f"An untagged question {tag()}") == "MISS"
    poll(lambda: entries(source) == 3, 5)

    env = {**os.environ, **FAST_SEMANTIC}
    run = [*CACHEGATE, "export", "--data-dir", str(source.data_dir), "--tag", "docs:v2"]
    out = subprocess.run(run, capture_output=True, text=True, cwd=REPO, env=env, check=True)
    exported = [json.loads(line) for line in out.stdout.splitlines()]
    assert sorted(tuple(line["tags"]) for line in exported) == [("docs:v2",), ("docs:v2", "faq")]
    assert any(long in line["response"]["choices"][0]["message"]["content"] for line in exported)
    path = tmp_path / "tagged.jsonl"
    path.write_text(out.stdout)
    copy_dir = tmp_path / "copy"
    run = [*CACHEGATE, "import", str(path), "--data-dir", str(copy_dir)]
    subprocess.run(run, capture_output=True, text=True, cwd=REPO, env=env, check=True)

    copy = make_gateway(data_dir=copy_dir)
    assert [status(copy, p, NO_STORE) for p in (long, short)] == ["HIT", "HIT"]
    assert purge(copy, tag="faq").json() == {"purged": 1}
    assert [status(copy, p, NO_STORE) for p in (long, short)] == ["MISS", "HIT"]
