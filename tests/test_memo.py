"""The bounded memos of the request path (decisions, verified matches)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.cache import remember


@given(st.lists(st.tuples(st.integers(0, 30), st.integers()), max_size=200), st.integers(1, 10))
def test_remember_keeps_the_newest_keys_within_its_limit(puts, limit):
    memo: dict[int, int] = {}
    for key, value in puts:
        remember(memo, key, value, limit)
    assert len(memo) <= limit
    if puts:  # the last value put is always there, under its key
        key, value = puts[-1]
        assert memo[key] == value
    # Whatever is kept holds the value put last under its key.
    last = dict(puts)
    assert all(last[key] == value for key, value in memo.items())


def test_replacing_a_key_evicts_nothing():
    memo = {1: "a", 2: "b"}
    remember(memo, 2, "c", limit=2)
    assert memo == {1: "a", 2: "c"}
