"""Anthropic's Messages API through the gateway, read by the official `anthropic` SDK."""

from __future__ import annotations

import uuid

import anthropic
import httpx2 as httpx
import pytest
from conftest import Gateway


@pytest.fixture(scope="module")
def gw(tmp_path_factory, mock_upstream):
    root = mock_upstream.url.removesuffix("/v1")  # Anthropic's URL is the root
    gateway = Gateway(
        tmp_path_factory.mktemp("messages") / "data",
        mock_upstream.url,
        args=["--anthropic-upstream", root],
    )
    yield gateway
    gateway.stop()


def client(gw, api_key: str = "sk-ant-test", **kwargs) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=api_key, max_retries=0, **kwargs)


def unique(text: str = "tell me about caching") -> str:
    return f"{text} {uuid.uuid4().hex[:10]}"


def ask(gw, prompt: str, headers: dict | None = None, api_key: str = "sk-ant-test", **params):
    raw = client(gw, api_key).messages.with_raw_response.create(
        model=params.pop("model", "claude-sonnet-4-5"),
        max_tokens=params.pop("max_tokens", 256),
        messages=[{"role": "user", "content": prompt}],
        extra_headers=headers or {},
        **params,
    )
    return raw.headers, raw.parse()


def text_of(message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def test_miss_then_exact_hit_with_the_same_answer(gw, mock_upstream):
    prompt, calls = unique(), mock_upstream.calls("messages")
    first_headers, first = ask(gw, prompt)
    second_headers, second = ask(gw, prompt)
    assert first_headers["x-cache-status"] == "MISS"
    assert (second_headers["x-cache-status"], second_headers["x-cache-tier"]) == ("HIT", "exact")
    assert second.model_dump() == first.model_dump()
    assert prompt in text_of(second)
    assert second.usage.output_tokens > 0
    assert mock_upstream.calls("messages") == calls + 1
    # Sent to the Anthropic upstream, with the caller's key and version as sent.
    sent = mock_upstream.last()
    assert sent["target"] == "/v1/messages"
    headers = {name.lower(): value for name, value in sent["headers"].items()}
    sent_key = headers.get("x-api-key") or headers["authorization"].removeprefix("Bearer ")
    assert sent_key == "sk-ant-test"
    assert "anthropic-version" in headers


def test_streamed_miss_then_streamed_hits_read_by_the_sdk(gw, mock_upstream):
    prompt, calls = unique("stream me an answer"), mock_upstream.calls("messages")
    sdk = client(gw)
    params = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": prompt}],
    }
    raw = sdk.messages.with_raw_response.create(stream=True, **params)
    assert raw.headers["x-cache-status"] == "MISS"
    events = list(raw.parse())
    missed = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert prompt in missed

    raw = sdk.messages.with_raw_response.create(stream=True, **params)
    assert raw.headers["x-cache-status"] == "HIT"
    events = list(raw.parse())
    assert [e.type for e in events][:2] == ["message_start", "content_block_start"]
    assert [e.type for e in events][-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert len(deltas) > 1  # the text in pieces, as a stream
    assert "".join(deltas) == missed

    with sdk.messages.stream(**params) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == missed == text_of(final)
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0

    # Either mode answers the other.
    headers, answer = ask(gw, prompt)
    assert headers["x-cache-status"] == "HIT"
    assert text_of(answer) == missed
    assert mock_upstream.calls("messages") == calls + 1


def test_a_non_stream_miss_answers_a_stream(gw):
    prompt = unique("first without a stream")
    _, answer = ask(gw, prompt)
    with client(gw).messages.stream(
        model="claude-sonnet-4-5", max_tokens=256, messages=[{"role": "user", "content": prompt}]
    ) as stream:
        assert stream.response.headers["x-cache-status"] == "HIT"
        assert "".join(stream.text_stream) == text_of(answer)


def test_version_headers_and_keys_keep_answers_apart(gw):
    prompt = unique("which version")
    assert ask(gw, prompt)[0]["x-cache-status"] == "MISS"
    beta = {"anthropic-beta": "prompt-caching-2024-07-31"}
    assert ask(gw, prompt, headers=beta)[0]["x-cache-status"] == "MISS"
    assert ask(gw, prompt, headers=beta)[0]["x-cache-status"] == "HIT"
    assert ask(gw, prompt, api_key="sk-ant-other")[0]["x-cache-status"] == "MISS"
    # Other parameters are context: another max_tokens is another answer.
    assert ask(gw, prompt, max_tokens=64)[0]["x-cache-status"] == "MISS"


def test_usage_with_prompt_cache_tokens_is_priced(gw):
    prompt = unique("priced")
    system = [
        {"type": "text", "text": "You are terse. " * 40, "cache_control": {"type": "ephemeral"}}
    ]
    # A namespace of its own: the totals would also count what the module's other tests
    # left to the ledger after a "before" was read.
    namespace = {"X-Cache-Namespace": unique("priced").replace(" ", "-")}
    _, answer = ask(gw, prompt, headers=namespace, system=system)
    assert answer.usage.cache_read_input_tokens > 0
    ask(gw, prompt, headers=namespace, system=system)
    stats = httpx.get(f"{gw.url}/cache/stats?by=namespace", headers=gw.admin, timeout=60).json()
    group = next(g for g in stats["groups"] if g["name"] == namespace["X-Cache-Namespace"])
    assert (group["misses"], group["hits"]) == (1, 1) and group["usd_saved"] > 0
    spent, saved = group["usd_spent"], group["usd_saved"]
    # Prompt-cache reads cost a tenth of input: what the hit saved is what the miss cost.
    assert spent == pytest.approx(saved)
    usage = answer.usage
    full = (usage.input_tokens + usage.cache_read_input_tokens) * 3 + usage.output_tokens * 15
    assert spent < full / 1e6


def test_upstream_errors_pass_through_and_are_not_cached(gw):
    prompt = unique("fails")
    with pytest.raises(anthropic.InternalServerError):
        ask(gw, prompt, headers={"X-Mock-Status": "500"})
    assert ask(gw, prompt)[0]["x-cache-status"] == "MISS"


def test_anthropic_routes_go_to_anthropic_upstream_with_the_configured_key():
    from gateway.config import Config
    from gateway.upstream import Upstream

    upstream = Upstream(
        Config(anthropic_upstream="http://anthropic.example/", anthropic_upstream_key="sk-conf")
    )
    target = upstream.target("claude-haiku-4-5", "/v1/messages")
    assert target.base_url == "http://anthropic.example/v1"
    assert upstream.target(None, "/v1/messages/count_tokens") == target
    assert upstream.target("claude-haiku-4-5", "/v1/chat/completions").base_url == Config().upstream
    sent = upstream.request_headers(
        {"Authorization": "Bearer sk-caller", "anthropic-version": "2023-06-01"}, target
    )
    assert sent["x-api-key"] == "sk-conf" and "Authorization" not in sent
    assert sent["anthropic-version"] == "2023-06-01"
