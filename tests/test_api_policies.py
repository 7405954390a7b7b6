"""Property tests of the policies for the query string, the Messages and Responses APIs,
and rules (pure: no processes)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from policies.controls import Controls
from policies.decide import PolicyConfig, decide

CONFIG = PolicyConfig()
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
