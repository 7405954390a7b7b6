"""Property tests of the policies for the query string, the Messages and Responses APIs,
and rules (pure: no processes)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import Config
from policies.controls import Controls
from policies.decide import decide
from policies.rules import RuleError, parse_rules

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


def ruled(rules: list, endpoint="chat", model="gpt-4o", namespace="default", tenant="t", **c):
    config = dataclasses.replace(CONFIG, rules=parse_rules(rules))
    body = {"model": model, "messages": [{"role": "user", "content": "what is a cache for"}]}
    return decide(endpoint, body, Controls(namespace=namespace, **c), tenant, config)


@given(st.sampled_from(["gpt-4o", "gpt-4o-mini", "o3"]), st.sampled_from(["off", False]))
def test_a_rule_turns_caching_off_for_its_model_only(model, off):
    decision = ruled([{"match": {"model": "gpt-4o"}, "mode": off}], model=model)
    assert (decision.status_on_miss == "BYPASS") == (model == "gpt-4o")
    assert (decision.read and decision.store) == (model != "gpt-4o")


@given(st.sampled_from(["semantic", "exact", "off"]), st.sampled_from(["semantic", "exact", "off"]))
def test_a_header_may_only_narrow_the_rules_mode(rule_mode, header_mode):
    decision = ruled([{"match": {}, "mode": rule_mode}], mode=header_mode)
    order = ["semantic", "exact", "off"]
    narrowest = order[max(order.index(rule_mode), order.index(header_mode))]
    assert (decision.semantic is not None) == (narrowest == "semantic")
    assert (decision.status_on_miss == "BYPASS") == (narrowest == "off")


@given(st.one_of(st.none(), st.floats(0, 10**7)))
def test_rule_ttls_by_namespace_and_the_header_capped_by_max_ttl(header_ttl):
    rules = [{"match": {"namespace": "short-.*"}, "ttl": 60, "max_ttl": 3600}]
    short = ruled(rules, namespace="short-lived", ttl=header_ttl)
    other = ruled(rules, namespace="other", ttl=header_ttl)
    assert short.ttl == (60 if header_ttl is None else min(header_ttl, 3600))
    assert other.ttl == min(
        CONFIG.default_ttl if header_ttl is None else header_ttl, CONFIG.max_ttl
    )


def test_first_match_wins_and_sets_threshold_store_and_key_ignore():
    rules = [
        {"match": {"endpoint": "chat", "tenant": "team-a"}, "threshold": 0.95, "store": False},
        {"match": {"path": "/v1/chat/.*"}, "key_ignore": ["temperature"]},
    ]
    strict = ruled(rules, tenant="team-a")
    assert strict.semantic.threshold == 0.95 and not strict.store
    assert ruled(rules, tenant="team-a", threshold=0.5).semantic.threshold == 0.95
    assert ruled(rules, tenant="team-a", threshold=0.99).semantic.threshold == 0.99
    loose = ruled(rules, tenant="team-b")
    assert loose.store and loose.semantic.threshold == CONFIG.default_threshold
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    config = dataclasses.replace(CONFIG, rules=parse_rules(rules))
    keys = {
        decide("chat", {**body, "temperature": t}, Controls(), "team-b", config).key for t in (0, 1)
    }
    assert len(keys) == 1  # the second rule ignores temperature


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"name": "typo", "match": {"modle": "x"}}, "match must be"),
        ({"match": {"model": "("}}, "not a regular expression"),
        ({"mode": "sometimes"}, "not one of semantic, exact, off"),
        ({"mode": True}, "not one of semantic, exact, off"),
        ({"ttl": -1}, "at least 0"),
        ({"ttl": "7d"}, "number of seconds"),
        ({"ttl": 100, "max_ttl": 10}, "above its max_ttl"),
        ({"threshold": 2}, "from 0 to 1"),
        ({"store": "no"}, "true or false"),
        ({"key_ignore": "user"}, "list of body field names"),
        ({"colour": "red"}, "unknown keys"),
        ("off", "must be an object"),
    ],
)
def test_a_bad_rule_is_refused_with_its_name(rule, problem):
    with pytest.raises(RuleError, match=problem) as refused:
        parse_rules([{"match": {}}, rule])
    assert str(refused.value).startswith("rules[1]")
    if isinstance(rule, dict) and "name" in rule:
        assert "(typo)" in str(refused.value)


def test_the_commented_examples_in_the_default_config_are_valid_rules():
    text = (Path(__file__).parent.parent / "configs/default.yaml").read_text()
    block = text.split("# rules:\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if not line.startswith("#   "):
            break
        lines.append(line[1:])
    rules = parse_rules(yaml.safe_load("\n".join(lines)))
    assert len(rules) == 3
    assert ruled(yaml.safe_load("\n".join(lines)), namespace="billing").status_on_miss == "BYPASS"
