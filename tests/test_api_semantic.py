"""A reworded request hits semantically on the Messages and Responses APIs too, with the
real model and the shipped verifier, streamed and not."""

from __future__ import annotations

import uuid

import anthropic
import pytest
from conftest import Gateway
from test_semantic import REAL_SEMANTIC

STORED, ASKED = "Why is the sky blue?", "Why does the sky look blue?"


@pytest.fixture(scope="module")
def real(tmp_path_factory, mock_upstream):
    gw = Gateway(
        tmp_path_factory.mktemp("api-semantic") / "data",
        mock_upstream.url,
        REAL_SEMANTIC,
        args=["--anthropic-upstream", mock_upstream.url.removesuffix("/v1")],
    )
    yield gw
    gw.stop()


def test_anthropic_messages_reworded_hit_semantically(real, mock_upstream):
    sdk = anthropic.Anthropic(base_url=real.url, api_key="sk-ant-sem", max_retries=0)
    namespace = {"X-Cache-Namespace": f"sem-{uuid.uuid4().hex[:8]}"}

    def create(text: str, system: str = "Answer in one sentence."):
        return sdk.messages.with_raw_response.create(
            model="claude-haiku-4-5",
            max_tokens=128,
            system=system,
            messages=[{"role": "user", "content": text}],
            extra_headers=namespace,
        )

    stored = create(STORED)
    assert stored.headers["x-cache-status"] == "MISS"
    calls = mock_upstream.calls("messages")
    hit = create(ASKED)
    assert (hit.headers["x-cache-status"], hit.headers["x-cache-tier"]) == ("HIT", "semantic")
    text = stored.parse().content[0].text
    assert hit.parse().content[0].text == text
    with sdk.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=128,
        system="Answer in one sentence.",
        messages=[{"role": "user", "content": ASKED}],
        extra_headers=namespace,
    ) as stream:
        assert stream.response.headers["x-cache-tier"] == "semantic"
        assert "".join(stream.text_stream) == text
    assert mock_upstream.calls("messages") == calls
    # Another system prompt is another context: no semantic match there.
    other = create(ASKED, system="Answer in French.")
    assert other.headers["x-cache-status"] == "MISS"


def test_responses_reworded_hit_semantically(real, mock_upstream):
    client = real.client("sk-sem-responses")
    namespace = {"X-Cache-Namespace": f"sem-{uuid.uuid4().hex[:8]}"}
    stored = client.responses.with_raw_response.create(
        model="gpt-4o-mini", input=STORED, instructions="Be brief.", extra_headers=namespace
    )
    assert stored.headers["x-cache-status"] == "MISS"
    hit = client.responses.with_raw_response.create(
        model="gpt-4o-mini", input=ASKED, instructions="Be brief.", extra_headers=namespace
    )
    assert (hit.headers["x-cache-status"], hit.headers["x-cache-tier"]) == ("HIT", "semantic")
    assert hit.parse().output_text == stored.parse().output_text
    with client.responses.stream(
        model="gpt-4o-mini", input=ASKED, instructions="Be brief.", extra_headers=namespace
    ) as stream:
        streamed = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    assert streamed == stored.parse().output_text


def test_responses_that_depend_on_server_state_are_exact_only(real):
    client = real.client("sk-sem-state")
    namespace = {"X-Cache-Namespace": f"sem-{uuid.uuid4().hex[:8]}"}

    def create(text: str):
        return client.responses.with_raw_response.create(
            model="gpt-4o-mini",
            input=text,
            previous_response_id="resp_earlier",
            extra_headers=namespace,
        )

    assert create(STORED).headers["x-cache-status"] == "MISS"
    assert create(ASKED).headers["x-cache-status"] == "MISS"  # the same meaning: no match
    assert create(ASKED).headers["x-cache-status"] == "HIT"  # the same request: exact
