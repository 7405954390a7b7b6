"""The FAISS index of the semantic tier: partitions, removals, flat and HNSW alike."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np
import pytest

from gateway.semantic import REPLAY_MAX, SemanticIndex


def unit_rows(count: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("hnsw_from", [10, 10**9], ids=["hnsw", "flat"])
def test_nearest_live_entry_even_after_many_removals(hnsw_from):
    rows = unit_rows(500)
    index = SemanticIndex(16, hnsw_from)
    index.add_many("ctx", [f"k{i}" for i in range(500)], rows)
    index.settle()  # HNSW (or flat) from here on
    query = rows[0]
    order = np.argsort(-(rows @ query))
    removed = [f"k{i}" for i in order[:100]]  # the 100 nearest, fewer than a rebuild needs
    index.remove(removed)
    best_live = f"k{order[100]}"
    assert index.search("ctx", query)[0][0] == best_live
    assert len(index) == 400


def test_a_burst_of_adds_during_a_rebuild_is_built_again_not_replayed_on_the_caller():
    """Many vectors added while a rebuild ran (a Redis resync) would stall the event loop
    if inserted there: the partition is rebuilt again from all of them instead."""
    rows = unit_rows(100 + REPLAY_MAX + 50)
    builder = HeldBuilder()
    index = SemanticIndex(16, hnsw_from=100, builder=builder)
    index.add_many("ctx", [f"k{i}" for i in range(100)], rows[:100])  # HNSW build starts, held
    index.remove([f"k{i}" for i in range(80)])  # meanwhile
    first = index._partitions["ctx"].rebuild
    burst = range(100, len(rows))
    index.add_many("ctx", [f"k{i}" for i in burst], rows[100:])
    builder.go.set()
    first.index.result()
    index.search("ctx", rows[0])  # the first build is done but too far behind
    part = index._partitions["ctx"]
    assert part.rebuild is not None and part.rebuild is not first
    assert len(part.rebuild.keys) == 20 + len(burst)
    index.settle()
    assert len(index) == 20 + len(burst)
    assert index._partitions["ctx"].dead == 0
    assert [index.search("ctx", row)[0][0] for row in rows[80:]] == [
        f"k{i}" for i in range(80, len(rows))
    ]
    builder.shutdown()


@pytest.mark.parametrize("hnsw_from", [10, 10**9], ids=["hnsw", "flat"])
def test_a_partition_mostly_dead_is_rebuilt_without_its_dead(hnsw_from):
    rows = unit_rows(300)
    index = SemanticIndex(16, hnsw_from)
    index.add_many("ctx", [f"k{i}" for i in range(300)], rows)
    index.settle()
    index.remove([f"k{i}" for i in range(200)])  # past a quarter dead: a rebuild starts
    index.settle()
    part = index._partitions["ctx"]
    assert (part.dead, len(part.keys), len(index)) == (0, 100, 100)
    assert [index.search("ctx", row)[0][0] for row in rows[200:]] == [
        f"k{i}" for i in range(200, 300)
    ]


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
    index.settle()
    assert isinstance(index._partitions["ctx"].index, faiss.IndexHNSW)
    found = [index.search("ctx", row)[0][0] for row in rows]
    assert found == [f"k{i}" for i in range(300)]


class HeldBuilder(ThreadPoolExecutor):
    """Runs the rebuild on its thread only once the test lets it."""

    def __init__(self) -> None:
        super().__init__(1)
        self.go = threading.Event()
        self.caller = threading.get_ident()
        self.ran_on: list[int] = []

    def submit(self, fn, /, *args, **kwargs):
        def held():
            self.go.wait(10)
            self.ran_on.append(threading.get_ident())
            return fn(*args, **kwargs)

        return super().submit(held)


def test_a_rebuild_runs_off_the_callers_thread_and_keeps_what_changed_meanwhile():
    """While the HNSW copy is built the partition serves from its old index; the adds
    and removals made meanwhile are in the new one when it takes over."""
    rows = unit_rows(400)
    builder = HeldBuilder()
    index = SemanticIndex(16, hnsw_from=100, builder=builder)
    index.add_many("ctx", [f"k{i}" for i in range(99)], rows[:99])
    index.add("ctx", "k99", rows[99])  # reaches hnsw_from: the rebuild starts, held
    index.add_many("ctx", [f"k{i}" for i in range(100, 400)], rows[100:])  # meanwhile
    index.remove([f"k{i}" for i in range(0, 400, 4)])  # meanwhile, some copied, some not
    assert isinstance(index._partitions["ctx"].index, faiss.IndexFlat)  # still the old one
    assert index.search("ctx", rows[1])[0][0] == "k1"
    builder.go.set()
    index.settle()
    assert builder.ran_on and builder.ran_on[0] != builder.caller
    assert isinstance(index._partitions["ctx"].index, faiss.IndexHNSW)
    assert len(index) == 300
    for i, row in enumerate(rows):
        best = index.search("ctx", row)[0][0]
        assert (best == f"k{i}") == (i % 4 != 0), i
    builder.shutdown()


def test_a_partition_added_at_once_past_hnsw_from_is_searchable_before_its_hnsw_exists():
    """A start-up load hands a whole partition to add_many: it must return at once, with
    the partition searchable exactly, while its HNSW index is built on the builder."""
    rows = unit_rows(300)
    builder = HeldBuilder()
    index = SemanticIndex(16, hnsw_from=100, builder=builder)
    index.add_many("ctx", [f"k{i}" for i in range(300)], rows)
    assert isinstance(index._partitions["ctx"].index, faiss.IndexFlat)
    assert index.rebuilding == 1
    assert [index.search("ctx", row)[0][0] for row in rows] == [f"k{i}" for i in range(300)]
    builder.go.set()
    index.settle()
    assert isinstance(index._partitions["ctx"].index, faiss.IndexHNSW)
    assert index.rebuilding == 0 and len(index) == 300
    assert [index.search("ctx", row)[0][0] for row in rows] == [f"k{i}" for i in range(300)]
    builder.shutdown()


def test_a_build_dropped_by_clear_counts_until_it_ends():
    """clear() (Redis restarted empty) cannot stop a build already running; a stop must
    still see it, or the process would wait minutes for it at exit."""
    builder = HeldBuilder()
    index = SemanticIndex(16, hnsw_from=100, builder=builder)
    index.add_many("ctx", [f"k{i}" for i in range(100)], unit_rows(100))
    build = index._partitions["ctx"].rebuild.index
    while not build.running():  # held on the builder's thread, past cancelling
        time.sleep(0.001)
    index.clear()
    assert index.rebuilding == 1 and not index.holds("ctx")
    builder.go.set()
    builder.shutdown()  # waits for the build
    assert index.rebuilding == 0


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
