"""OpenAI's Responses API through the gateway, read by the official `openai` client."""

from __future__ import annotations

import uuid

import httpx2 as httpx
import openai
import pytest


def unique(text: str = "tell me about caching") -> str:
    return f"{text} {uuid.uuid4().hex[:10]}"


def ask(gateway, headers: dict | None = None, api_key: str = "sk-test-a", **params):
    params.setdefault("model", "gpt-4o-mini")
    raw = gateway.client(api_key).responses.with_raw_response.create(
        extra_headers=headers or {}, **params
    )
    return raw.headers, raw.parse()


def test_miss_then_exact_hit_with_the_same_answer(gateway, mock_upstream):
    prompt, calls = unique(), mock_upstream.calls("responses")
    first_headers, first = ask(gateway, input=prompt, instructions="Be brief.")
    second_headers, second = ask(gateway, input=prompt, instructions="Be brief.")
    assert first_headers["x-cache-status"] == "MISS"
    assert (second_headers["x-cache-status"], second_headers["x-cache-tier"]) == ("HIT", "exact")
    assert second.model_dump() == first.model_dump()
    assert prompt in second.output_text
    assert mock_upstream.calls("responses") == calls + 1
    # Instructions are context: other instructions are another answer.
    assert ask(gateway, input=prompt)[0]["x-cache-status"] == "MISS"


def test_streamed_miss_then_streamed_hits_read_by_the_client(gateway, mock_upstream):
    prompt, calls = unique("stream a response"), mock_upstream.calls("responses")
    client = gateway.client()
    items = [{"role": "user", "content": prompt}]
    raw = client.responses.with_raw_response.create(model="gpt-4o-mini", input=items, stream=True)
    assert raw.headers["x-cache-status"] == "MISS"
    missed = "".join(e.delta for e in raw.parse() if e.type == "response.output_text.delta")
    assert prompt in missed

    raw = client.responses.with_raw_response.create(model="gpt-4o-mini", input=items, stream=True)
    assert raw.headers["x-cache-status"] == "HIT"
    events = list(raw.parse())
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == missed
    assert [e.sequence_number for e in events] == list(range(len(events)))

    with client.responses.stream(model="gpt-4o-mini", input=items) as stream:
        streamed = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert streamed == missed == final.output_text
    assert final.usage is not None and final.usage.output_tokens > 0

    headers, answer = ask(gateway, input=items)  # either mode answers the other
    assert headers["x-cache-status"] == "HIT"
    assert answer.output_text == missed
    assert mock_upstream.calls("responses") == calls + 1


def test_a_non_stream_miss_answers_a_stream(gateway):
    prompt = unique("first without a stream")
    _, answer = ask(gateway, input=prompt)
    with gateway.client().responses.stream(model="gpt-4o-mini", input=prompt) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        assert stream.get_final_response().output_text == text == answer.output_text


def test_background_responses_are_never_cached(gateway, mock_upstream):
    prompt = unique("in the background")
    for _ in range(2):
        headers, _ = ask(gateway, input=prompt, background=True)
        assert headers["x-cache-status"] == "BYPASS"


def test_usage_is_priced_and_counted_by_endpoint(gateway):
    prompt = unique("priced")
    before = httpx.get(f"{gateway.url}/cache/stats", headers=gateway.admin, timeout=60).json()
    ask(gateway, input=prompt, model="gpt-4o")
    ask(gateway, input=prompt, model="gpt-4o")
    after = httpx.get(
        f"{gateway.url}/cache/stats?by=endpoint", headers=gateway.admin, timeout=60
    ).json()
    assert after["usd_spent"] > before["usd_spent"]
    assert after["usd_saved"] > before["usd_saved"]
    group = next(g for g in after["groups"] if g["name"] == "responses")
    assert group["hits"] >= 1 and group["usd_saved"] > 0


def test_bad_input_is_a_400_that_names_it(gateway):
    with pytest.raises(openai.BadRequestError, match="input"):
        ask(gateway, input=42)
