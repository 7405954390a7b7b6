"""The FAISS index of the semantic tier: partitions, removals, flat and HNSW alike."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.semantic import SemanticIndex


def unit_rows(count: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("hnsw_from", [10, 10**9], ids=["hnsw", "flat"])
def test_nearest_live_entry_even_after_many_removals(hnsw_from):
    rows = unit_rows(500)
    index = SemanticIndex(16, hnsw_from)
    index.add_many("ctx", [f"k{i}" for i in range(500)], rows)
    query = rows[0]
    order = np.argsort(-(rows @ query))
    removed = [f"k{i}" for i in order[:100]]  # the 100 nearest, fewer than a rebuild needs
    index.remove(removed)
    best_live = f"k{order[100]}"
    assert index.search("ctx", query)[0][0] == best_live
    assert len(index) == 400


def test_partitions_never_mix_and_replacing_a_key_moves_it():
    rows = unit_rows(2)
    index = SemanticIndex(16, 1000)
    index.add("a", "k1", rows[0])
    assert index.search("b", rows[0]) == []
    index.add("b", "k1", rows[0])  # the same key stored again elsewhere
    assert index.search("a", rows[0]) == []
    assert index.search("b", rows[0])[0][0] == "k1"


def test_a_growing_partition_turns_into_hnsw_and_keeps_its_entries():
    rows = unit_rows(300)
    index = SemanticIndex(16, hnsw_from=100)
    for i, row in enumerate(rows):
        index.add("ctx", f"k{i}", row)
    found = [index.search("ctx", row)[0][0] for row in rows[:50]]
    assert found == [f"k{i}" for i in range(50)]


def test_holds_only_partitions_with_live_entries():
    index = SemanticIndex(4, hnsw_from=1000)
    assert not index.holds("ctx")
    index.add("ctx", "k1", np.array([1, 0, 0, 0], dtype=np.float32))
    assert index.holds("ctx") and not index.holds("other")
    index.remove(["k1"])
    assert not index.holds("ctx")


def test_a_search_leaves_the_build_threads_as_it_found_them():
    """A lookup runs on one thread; builds must keep every thread (the HNSW insert is
    parallel), so the search restores FAISS's setting, also when the search fails."""
    import faiss

    index = SemanticIndex(16, 1000)
    index.add_many("ctx", ["k1", "k2"], unit_rows(2))
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        assert index.search("ctx", unit_rows(1)[0])[0][0] in {"k1", "k2"}
        assert faiss.omp_get_max_threads() == 2
        with pytest.raises(AssertionError):
            index.search("ctx", np.zeros(3, dtype=np.float32))  # the wrong dimension
        assert faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(before)
