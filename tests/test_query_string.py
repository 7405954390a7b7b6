"""The query string of a cached route is part of its key: Azure's api-version, ?key=."""

from __future__ import annotations

import uuid

import httpx2 as httpx


def post(gateway, query: str, prompt: str, headers: dict | None = None) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions?{query}",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]},
        headers=headers or {"Authorization": "Bearer sk-query"},
        timeout=30,
    )


def test_two_api_versions_never_share_an_answer(gateway, mock_upstream):
    prompt = f"which version answers {uuid.uuid4().hex[:10]}"
    a = post(gateway, "api-version=A", prompt)
    b = post(gateway, "api-version=B", prompt)
    assert (a.headers["x-cache-status"], b.headers["x-cache-status"]) == ("MISS", "MISS")
    assert a.headers["x-cache-key"] != b.headers["x-cache-key"]
    assert mock_upstream.last()["target"] == "/v1/chat/completions?api-version=B"
    again = post(gateway, "api-version=A", prompt)
    assert again.headers["x-cache-status"] == "HIT"
    assert again.headers["x-cache-key"] == a.headers["x-cache-key"]
    # The order of the parameters does not matter; their values do.
    reordered = post(gateway, "x=1&api-version=A", prompt)
    assert post(gateway, "api-version=A&x=1", prompt).headers["x-cache-status"] == "HIT"
    assert reordered.headers["x-cache-status"] == "MISS"


def test_a_key_in_the_query_string_is_the_callers_tenant(gateway):
    prompt = f"whose answer is this {uuid.uuid4().hex[:10]}"
    first = post(gateway, "key=alpha-secret", prompt, headers={})
    assert first.headers["x-cache-status"] == "MISS"
    assert post(gateway, "key=alpha-secret", prompt, headers={}).headers["x-cache-status"] == "HIT"
    # Another key is another caller, not one more anonymous request.
    other = post(gateway, "key=beta-secret", prompt, headers={})
    assert other.headers["x-cache-status"] == "MISS"
    assert post(gateway, "", prompt, headers={}).headers["x-cache-status"] == "MISS"
