"""Reliability under load, faults and bad input, black-box against real processes."""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import socket
import string
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import aiohttp
import httpx2 as httpx
import openai
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import guarded
from tools.benchmark import fill_entries_db
from tools.processes import MockUpstreamProcess


def chat_body(prompt: str, **extra) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}], **extra}


async def concurrent_posts(url: str, body: dict, count: int, headers: dict) -> list[tuple]:
    async with aiohttp.ClientSession() as session:

        async def one():
            async with session.post(
                f"{url}/v1/chat/completions", json=body, headers=headers
            ) as response:
                return (
                    response.status,
                    response.headers.get("X-Cache-Status"),
                    await response.read(),
                )

        return await asyncio.gather(*(one() for _ in range(count)))


def test_identical_concurrent_requests_make_one_upstream_call(gateway, mock_upstream):
    body = chat_body(f"collapse me {uuid.uuid4()}")
    before = mock_upstream.calls()
    results = asyncio.run(concurrent_posts(gateway.url, body, 50, {"X-Mock-Delay-Ms": "300"}))
    assert mock_upstream.calls() == before + 1
    assert {status for status, _, _ in results} == {200}
    assert len({data for _, _, data in results}) == 1, "everyone gets the one answer"
    assert sorted(s for _, s, _ in results).count("MISS") == 1


def test_stream_followers_receive_the_leaders_stream(gateway, mock_upstream):
    body = chat_body(f"collapse a stream {uuid.uuid4()}", stream=True)
    before = mock_upstream.calls()
    results = asyncio.run(concurrent_posts(gateway.url, body, 10, {"X-Mock-Delay-Ms": "300"}))
    assert mock_upstream.calls() == before + 1
    streams = {data for _, _, data in results}
    assert len(streams) == 1 and next(iter(streams)).endswith(b"data: [DONE]\n\n")


def test_a_stream_that_asks_for_usage_is_not_collapsed_onto_one_that_does_not(gateway):
    prompt = f"usage or not {uuid.uuid4()}"
    plain = chat_body(prompt, stream=True)
    with_usage = chat_body(prompt, stream=True, stream_options={"include_usage": True})

    async def both_at_once():
        async with aiohttp.ClientSession() as session:

            async def one(body, delay):
                await asyncio.sleep(delay)
                async with session.post(
                    f"{gateway.url}/v1/chat/completions",
                    json=body,
                    headers={"X-Mock-Delay-Ms": "400"},
                ) as response:
                    return await response.read()

            return await asyncio.gather(one(plain, 0), one(with_usage, 0.1))

    for stream, usage_wanted in zip(asyncio.run(both_at_once()), (False, True), strict=True):
        chunks = [
            orjson.loads(line[6:])
            for line in stream.decode().splitlines()
            if line.startswith("data: {")
        ]
        assert any(chunk.get("usage") for chunk in chunks) == usage_wanted


def test_a_failing_leader_fails_its_followers_without_a_hang(gateway, mock_upstream):
    body = chat_body(f"fail together {uuid.uuid4()}")
    results = asyncio.run(
        concurrent_posts(gateway.url, body, 10, {"X-Mock-Delay-Ms": "300", "X-Mock-Status": "500"})
    )
    assert {status for status, _, _ in results} == {500}


@pytest.fixture
def own_upstream(tmp_path):
    mock = MockUpstreamProcess(tmp_path)
    yield mock
    mock.stop()


def test_stale_if_error_and_502_while_upstream_is_down(make_gateway, own_upstream):
    gw = make_gateway(upstream=own_upstream.url)
    client, prompt = gw.client(), f"keep me {uuid.uuid4()}"
    first = client.chat.completions.create(**chat_body(prompt), extra_headers={"X-Cache-TTL": "1"})
    time.sleep(1.2)
    raw = client.chat.completions.with_raw_response.create(
        **chat_body(prompt), extra_headers={"X-Mock-Status": "503"}
    )
    assert raw.headers["x-cache-status"] == "STALE"
    assert raw.parse().choices[0].message.content == first.choices[0].message.content

    own_upstream.stop()
    raw = client.chat.completions.with_raw_response.create(**chat_body(prompt))
    assert raw.headers["x-cache-status"] == "STALE"
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**chat_body(f"never seen {uuid.uuid4()}"))
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "upstream_error"
    assert gw.alive()


def test_an_80_mb_body_gets_413(gateway):
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 83886080\r\n\r\n"
        )
        sock.sendall(b"{" + b" " * 65536)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"request_too_large" in answer
    assert gateway.alive()


def test_limits_on_depth_and_messages(make_gateway):
    gw = make_gateway(env={"CACHEGATE_MAX_MESSAGES": "5"})
    deep = chat_body("deep")
    deep["metadata"] = {}
    node = deep["metadata"]
    for _ in range(100):
        node["x"] = {}
        node = node["x"]
    assert httpx.post(f"{gw.url}/v1/chat/completions", json=deep).status_code == 400
    many = {"model": "m", "messages": [{"role": "user", "content": "hi"}] * 6}
    response = httpx.post(f"{gw.url}/v1/chat/completions", json=many)
    assert response.status_code == 400 and "messages" in response.json()["error"]["message"]


def test_no_request_can_reach_another_host(gateway, mock_upstream):
    for path in ("/v1/@evil.example/x", "/v1/..%2F..%2Fhttp://evil.example/", "/v1//evil.example/"):
        response = httpx.get(f"{gateway.url}{path}")
        assert response.status_code < 500 or response.status_code == 502
        assert "evil" not in mock_upstream.last().get("headers", {}).get("Host", "")


def test_kill_9_under_write_load_never_serves_a_wrong_answer(make_gateway):
    gw = make_gateway()
    prompts = [f"crash test {i} {uuid.uuid4().hex[:6]}" for i in range(400)]
    stop = threading.Event()

    def writer(chunk: list[str]) -> None:
        client = gw.client()
        for prompt in chunk:
            if stop.is_set():
                return
            try:
                client.chat.completions.create(**chat_body(prompt))
            except openai.APIError:
                return

    threads = [threading.Thread(target=writer, args=(prompts[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    gw.kill9()
    stop.set()
    for thread in threads:
        thread.join(10)
    gw.start()
    client, hits = gw.client(), 0
    for prompt in prompts:
        raw = client.chat.completions.with_raw_response.create(
            **chat_body(prompt), extra_headers={"X-Cache-Mode": "exact"}
        )
        assert prompt in raw.parse().choices[0].message.content
        hits += raw.headers["x-cache-status"] == "HIT"
    assert hits > 0, "entries written before the crash are served after it"


junk = st.text(alphabet=string.printable, max_size=200)
json_junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | junk,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(junk, inner, max_size=5),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_junk.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"model": json_junk, "messages": json_junk, "stream": json_junk},
        optional={
            "n": json_junk,
            "temperature": json_junk,
            "stream_options": json_junk,
            "tools": json_junk,
        },
    ).map(lambda v: json.dumps(v).encode()),
)
# Values a client library will send at all (no leading or trailing blanks).
header_values = st.text(alphabet=string.ascii_letters + string.digits + " =,.-;", max_size=40).map(
    str.strip
)
headers = st.dictionaries(
    st.sampled_from(
        [
            "Cache-Control",
            "X-Cache-TTL",
            "X-Cache-Mode",
            "X-Cache-Namespace",
            "X-Cache-Threshold",
            "Content-Type",
            "Authorization",
        ]
    ),
    header_values,
)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=bodies,
    request_headers=headers,
    path=st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]),
)
def test_fuzzed_requests_never_get_a_5xx_from_the_gateway(gateway, body, request_headers, path):
    response = httpx.post(f"{gateway.url}{path}", content=body, headers=request_headers, timeout=30)
    # The mock upstream is healthy here, so any 5xx would be the gateway's own failure.
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_gateway_is_healthy_after_fuzzing(gateway):
    rng = random.Random(7)
    for _ in range(50):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 100)))
        httpx.post(f"{gateway.url}/v1/chat/completions", content=body)
    assert gateway.alive()
    answer = gateway.client().chat.completions.create(**chat_body(f"still fine {uuid.uuid4()}"))
    assert answer.choices[0].message.content


def test_oversized_headers_get_an_openai_shaped_431(make_gateway):
    gw = make_gateway(env={"CACHEGATE_MAX_HEADER_BYTES": "4096"})
    response = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json=chat_body("big headers"),
        headers={f"X-Filler-{i}": "y" * 500 for i in range(12)},
    )
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "headers_too_large"
    assert gw.alive()
    time.sleep(1)  # the ledger's flush
    stats = httpx.get(f"{gw.url}/cache/stats", headers=gw.admin).json()
    assert (stats["requests"], stats["errors"]) == (1, 1), "the refusal is in the ledger"


@pytest.mark.parametrize(
    "method,path,status",
    [
        ("GET", "/nope", 404),
        ("GET", "/v1", 404),
        ("POST", "//v1/chat/completions", 404),
        ("POST", "/healthz", 405),
        ("DELETE", "/cache/purge", 405),
    ],
)
def test_routes_and_methods_the_gateway_does_not_have_answer_in_openai_shape(
    gateway, method, path, status
):
    response = httpx.request(method, f"{gateway.url}{path}")
    assert response.status_code == status
    assert response.json()["error"]["message"]
    assert response.headers["X-Cache-Status"] == "ERROR"
    if status == 405:
        assert response.headers["Allow"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"\r\nzz\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Content-Length: 3\r\n\r\n{}",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: 8\r\n\r\nnotgzip!",
    ],
    ids=["bad-chunk-size", "two-content-lengths", "not-gzip"],
)
def test_malformed_http_is_a_400_and_one_log_line_not_a_traceback(make_gateway, request_bytes):
    gw = make_gateway()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as connection:
        connection.sendall(request_bytes)
        assert re.match(rb"HTTP/1\.[01] 400 ", connection.recv(4096))
    time.sleep(0.3)
    assert gw.alive()
    assert "Traceback" not in gw.log.read_text()


def test_a_handler_that_fails_on_a_bug_answers_in_openai_shape():
    async def failing(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    async def fine(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def scenario() -> None:
        app = web.Application()
        app.add_routes(
            [web.get("/bug", guarded(failing, 8192)), web.get("/fine", guarded(fine, 8192))]
        )
        async with TestClient(TestServer(app)) as client:
            bug = await client.get("/bug")
            assert bug.status == 500
            assert (await bug.json())["error"]["code"] == "internal_error"
            assert (await client.get("/fine")).status == 200

    asyncio.run(scenario())


def test_an_api_key_that_is_not_ascii_is_refused(gateway):
    """aiohttp would forward it with those bytes dropped: upstream would get another key."""
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=chat_body(f"latin-1 key {uuid.uuid4()}"),
        headers={"Authorization": b"Bearer sk-\xe9t\xe9"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Authorization"
    assert gateway.alive()


def test_an_empty_credential_header_is_not_the_callers_key(gateway):
    """The tenant is the first credential sent with a value: an empty Authorization beside
    an api-key must not put the answer in the anonymous tenant, for any caller to read."""
    body = chat_body(f"empty authorization {uuid.uuid4()}")
    url = f"{gateway.url}/v1/chat/completions"
    sent = httpx.post(url, json=body, headers={"Authorization": "", "api-key": "sk-azure"})
    assert sent.headers["X-Cache-Status"] == "MISS"
    assert httpx.post(url, json=body).headers["X-Cache-Status"] == "MISS"  # anonymous
    assert (
        httpx.post(url, json=body, headers={"api-key": "sk-azure"}).headers["X-Cache-Status"]
        == "HIT"
    )


def test_a_placeholder_authorization_beside_the_real_key_keeps_callers_apart(gateway):
    """OpenAI(api_key="not-used", default_headers={"api-key": KEY}), as for Azure-style
    gateways: every caller sends the same Authorization, and only api-key tells them apart."""
    body = chat_body(f"placeholder {uuid.uuid4()}")
    url = f"{gateway.url}/v1/chat/completions"

    def status(key: str) -> str:
        headers = {"Authorization": "Bearer not-used", "api-key": key}
        return httpx.post(url, json=body, headers=headers).headers["X-Cache-Status"]

    assert (status("sk-one"), status("sk-two"), status("sk-one")) == ("MISS", "MISS", "HIT")
    twice = [("Authorization", "Bearer sk-one"), ("Authorization", "Bearer sk-two")]
    refused = httpx.post(url, json=body, headers=twice)
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "Authorization"


def test_an_empty_control_header_is_refused_after_the_same_request_without_it(gateway):
    """A decision is reused for the same body and headers; a header sent empty is not the
    same as one not sent."""
    body = chat_body(f"empty ttl {uuid.uuid4()}")
    url = f"{gateway.url}/v1/chat/completions"
    assert httpx.post(url, json=body).status_code == 200
    refused = httpx.post(url, json=body, headers={"X-Cache-TTL": ""})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "X-Cache-TTL"


def test_a_namespace_that_is_not_utf8_is_refused_and_the_ledger_goes_on(make_gateway):
    gw = make_gateway()
    refused = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json=chat_body("odd namespace"),
        headers={"X-Cache-Namespace": b"caf\xe9"},
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "X-Cache-Namespace"
    time.sleep(1.5)  # past the ledger's flush interval: the refused request's row is written
    gw.client().chat.completions.create(**chat_body(f"after it {uuid.uuid4()}"))
    stats = httpx.get(f"{gw.url}/cache/stats", headers=gw.admin).json()
    assert (stats["requests"], stats["errors"], stats["misses"]) == (2, 1, 1)


def test_bodies_that_cannot_be_decoded_get_a_400(make_gateway):
    gw = make_gateway()
    garbage = {"Content-Encoding": "deflate", "Content-Type": "application/json"}
    for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/models", "/cache/purge"):
        response = httpx.post(
            f"{gw.url}{path}", content=b"garbage", headers={**garbage, **gw.admin}
        )
        assert response.status_code == 400, (path, response.text)
        assert "cannot read the request body" in response.json()["error"]["message"]
    assert gw.alive()


def test_an_admin_token_that_is_not_utf8_is_refused_with_a_401(make_gateway):
    gw = make_gateway(env={"CACHEGATE_ADMIN_TOKEN": "s3cret"})
    for path in ("/cache/stats", "/metrics", "/cache/entries"):
        response = httpx.get(f"{gw.url}{path}", headers={"Authorization": b"Bearer s3cret\xff"})
        assert response.status_code == 401, (path, response.text)
    assert (
        httpx.get(f"{gw.url}/cache/stats", headers={"Authorization": "Bearer s3cret"}).status_code
        == 200
    )


@pytest.mark.parametrize("n", [2**64 - 1, 129])
def test_the_mock_upstream_refuses_an_n_openai_would_refuse(gateway, mock_upstream, n):
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json=chat_body("many", n=n))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "n"
    assert mock_upstream.calls("models") is not None  # the mock is still up


def test_followers_of_a_leader_that_cannot_reach_upstream_get_its_error(make_gateway):
    gw = make_gateway(upstream="http://127.0.0.1:9/v1")
    results = asyncio.run(concurrent_posts(gw.url, chat_body(f"nowhere {uuid.uuid4()}"), 8, {}))
    assert {status for status, _, _ in results} == {502}
    assert all(orjson.loads(data)["error"]["type"] == "upstream_error" for _, _, data in results)


def test_a_stream_whose_client_leaves_is_still_stored_for_the_others(gateway):
    body = chat_body(f"leave early {uuid.uuid4()}", stream=True)

    async def leave_then_ask():
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{gateway.url}/v1/chat/completions", json=body, headers={"X-Mock-Delay-Ms": "200"}
            ) as response:
                await response.content.readany()  # first bytes, then hang up
            await asyncio.sleep(0.5)
            async with session.post(
                f"{gateway.url}/v1/chat/completions", json={**body, "stream": False}
            ) as again:
                return again.headers["X-Cache-Status"]

    assert asyncio.run(leave_then_ask()) == "HIT"


def test_a_stream_whose_client_leaves_before_the_first_byte_serves_its_followers(make_gateway):
    """The leader's client hangs up while upstream is still thinking: the gateway reads the
    answer on for the request collapsed onto it and for the cache, and records both."""
    gw = make_gateway()
    body = orjson.dumps(chat_body(f"gone before a byte {uuid.uuid4()}", stream=True))

    async def leave_while_another_follows():
        with socket.create_connection(("127.0.0.1", gw.port)) as leaver:
            leaver.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Mock-Delay-Ms: 800\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            await asyncio.sleep(0.2)
            async with aiohttp.ClientSession() as session:
                follower = asyncio.ensure_future(
                    session.post(f"{gw.url}/v1/chat/completions", data=body)
                )
                await asyncio.sleep(0.2)
                leaver.close()  # before upstream's first byte, at 0.8 s
                async with await follower as response:
                    return (
                        response.status,
                        response.headers["X-Cache-Collapsed"],
                        await response.read(),
                    )

    status, collapsed, stream = asyncio.run(leave_while_another_follows())
    assert (status, collapsed) == (200, "true")
    assert stream.endswith(b"data: [DONE]\n\n")
    again = httpx.post(f"{gw.url}/v1/chat/completions", content=body)
    assert again.headers["X-Cache-Status"] == "HIT"
    time.sleep(1)  # the ledger's flush
    stats = httpx.get(f"{gw.url}/cache/stats", headers=gw.admin).json()
    assert (stats["requests"], stats["misses"], stats["hits"]) == (3, 1, 2)
    assert "Traceback" not in gw.log.read_text()


def test_semantic_tier_can_be_switched_off(make_gateway):
    gw = make_gateway(env={"CACHEGATE_SEMANTIC_ENABLED": "false"})
    client = gw.client()
    client.chat.completions.create(**chat_body("How do I learn the Python language?"))
    raw = client.chat.completions.with_raw_response.create(
        **chat_body("How do I learn the Python language quickly?")
    )
    assert raw.headers["x-cache-status"] == "MISS"


def test_a_stop_waits_for_no_index_build_and_loses_nothing(make_gateway, tmp_path):
    """SIGTERM while a large partition's HNSW index is built in the background stops at
    once: a build cannot be interrupted, and at a million vectors it runs for minutes.
    Everything stored is there at the next start, which builds the index again: the
    answer and the ledger row of a request served just before the stop too."""
    data_dir = tmp_path / "large"
    fill_entries_db(data_dir, 60_000)  # past hnsw_from (20k): ~8 s of HNSW build or more
    gw = make_gateway(
        env={"CACHEGATE_SEMANTIC_EMBEDDER": "minilm-onnx", "CACHEGATE_LEDGER_FLUSH_SECONDS": "600"},
        data_dir=data_dir,
    )
    assert gw.process is not None
    prompt = f"asked just before the stop {uuid.uuid4()}"
    raw = gw.client().chat.completions.with_raw_response.create(**chat_body(prompt))
    assert raw.headers["x-cache-status"] == "MISS"
    gw.process.send_signal(signal.SIGTERM)
    assert gw.process.wait(60) == 0
    log = gw.log.read_text()
    assert "stopped without waiting for the semantic index build under way" in log
    assert "HNSW index of 60000 vectors built" not in log
    gw.start()
    assert gw.log.read_text().count("semantic index: 60000 vectors in 1 partitions") == 1
    assert "semantic index: 60001 vectors in 2 partitions" in gw.log.read_text()
    again = gw.client().chat.completions.with_raw_response.create(**chat_body(prompt))
    assert again.headers["x-cache-status"] == "HIT"
    assert again.parse().choices[0].message.content == raw.parse().choices[0].message.content
    stats = httpx.get(f"{gw.url}/cache/stats", headers=gw.admin).json()
    assert (stats["requests"], stats["hits"]) == (2, 1), stats


class FixedAnswer(BaseHTTPRequestHandler):
    """Answers every POST with 200 and the server's `answer`: an upstream out of shape."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps(self.server.answer).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def out_of_shape_upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FixedAnswer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_answers_out_of_shape_are_upstream_errors_never_stored(make_gateway, out_of_shape_upstream):
    upstream = out_of_shape_upstream
    gw = make_gateway(upstream=f"http://127.0.0.1:{upstream.server_address[1]}")
    headers = {"Authorization": "Bearer sk-shape"}
    upstream.answer = {"object": "list", "data": ["not an embedding"], "usage": []}
    embedding = {"model": "text-embedding-3-small", "input": "shapeless"}
    answer = httpx.post(f"{gw.url}/v1/embeddings", json=embedding, headers=headers)
    assert answer.status_code == 502 and "embeddings" in answer.json()["error"]["message"]

    upstream.answer = {"choices": ["not a choice"], "usage": {"prompt_tokens": 1}}
    body = chat_body(f"shapeless {uuid.uuid4()}")
    first = httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers)
    assert (first.status_code, first.headers["x-cache-status"]) == (200, "MISS")
    streamed = httpx.post(
        f"{gw.url}/v1/chat/completions", json={**body, "stream": True}, headers=headers
    )
    assert (streamed.status_code, streamed.headers["x-cache-status"]) == (200, "MISS")
