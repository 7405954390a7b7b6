"""Property tests of the policies for the query string, the Messages and Responses APIs,
and rules (pure: no processes)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.config import Config
from policies.controls import Controls
from policies.decide import decide

CONFIG = Config().policy(default_threshold=0.5)  # the defaults, written once, in Config
pairs = st.lists(st.tuples(st.text(min_size=1, max_size=8), st.text(max_size=8)), max_size=3).map(
    lambda found: tuple(sorted(found))
)


@given(pairs, pairs)
def test_query_strings_keep_keys_and_contexts_apart(a, b):
    body = {"model": "m", "messages": [{"role": "user", "content": "what is a cache for"}]}
    one = decide("chat", body, Controls(), "t", CONFIG, a)
    two = decide("chat", body, Controls(), "t", CONFIG, b)
    assert (one.key == two.key) == (a == b)
    assert one.semantic is not None and two.semantic is not None
    assert (one.semantic.context_key == two.semantic.context_key) == (a == b)


def test_no_query_string_keeps_the_keys_of_before():
    body = {"model": "m", "messages": [{"role": "user", "content": "what is a cache for"}]}
    # The key of this body before the query string was keyed: entries stored then still hit.
    assert decide("chat", body, Controls(), "t", CONFIG).key == "107df48f7c82b7940e6d860a1fa701b8"


def messages_body(text: str, **extra):
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


CONTEXT_FIELDS = st.sampled_from(
    [("system", "Be brief."), ("max_tokens", 7), ("temperature", 0.3), ("tools", [{"name": "f"}])]
)


@given(CONTEXT_FIELDS)
def test_messages_context_holds_everything_but_the_last_user_text(field):
    name, value = field
    plain = decide("messages", messages_body("what is a cache for"), Controls(), "t", CONFIG)
    other = decide(
        "messages", messages_body("why use a cache", **{name: value}), Controls(), "t", CONFIG
    )
    same = decide("messages", messages_body("why use a cache"), Controls(), "t", CONFIG)
    assert plain.semantic and other.semantic and same.semantic
    assert plain.semantic.context_key == same.semantic.context_key
    assert plain.semantic.context_key != other.semantic.context_key
    assert plain.semantic.text == "what is a cache for"


def test_messages_with_tool_results_or_images_are_exact_only():
    tool_result = {"type": "tool_result", "tool_use_id": "t1", "content": "42"}
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}}
    for content in ([tool_result], [image, {"type": "text", "text": "what is this picture"}]):
        body = messages_body("x")
        body["messages"] = [{"role": "user", "content": content}]
        assert decide("messages", body, Controls(), "t", CONFIG).semantic is None
    blocks = [{"type": "text", "text": "what is a cache for"}]
    body = {**messages_body("x"), "messages": [{"role": "user", "content": blocks}]}
    assert decide("messages", body, Controls(), "t", CONFIG).semantic.text == "what is a cache for"


def test_responses_that_depend_on_server_state_tool_outputs_or_files_are_exact_only():
    base = {"model": "gpt-4o", "input": "what is a cache for"}
    assert decide("responses", base, Controls(), "t", CONFIG).semantic is not None
    for extra in ({"previous_response_id": "resp_1"}, {"conversation": "conv_1"}):
        assert decide("responses", {**base, **extra}, Controls(), "t", CONFIG).semantic is None
    output = {"type": "function_call_output", "call_id": "c1", "output": "42"}
    ask = {"role": "user", "content": "what is a cache for"}
    with_output = {**base, "input": [output, ask]}
    assert decide("responses", with_output, Controls(), "t", CONFIG).semantic is None
    image = {"type": "input_image", "image_url": "https://example.com/a.png"}
    picture = [{"role": "user", "content": [image, {"type": "input_text", "text": "what is it"}]}]
    assert decide("responses", {**base, "input": picture}, Controls(), "t", CONFIG).semantic is None


def test_background_responses_are_bypassed():
    body = {"model": "gpt-4o", "input": "what is a cache for", "background": True}
    decision = decide("responses", body, Controls(), "t", CONFIG)
    assert (decision.read, decision.store, decision.status_on_miss) == (False, False, "BYPASS")
