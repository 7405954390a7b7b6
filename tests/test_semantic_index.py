"""The FAISS index of the semantic tier: partitions, removals, flat and HNSW alike."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np
import pytest

from gateway.semantic import REPLAY_MAX, SemanticIndex, build_index, snapshot_paths


def unit_rows(count: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


class HeldBuilder(ThreadPoolExecutor):
    """Runs each build (or only those of `hold_only`) once the test sets `go`."""

    def __init__(self) -> None:
        super().__init__(1)
        self.go = threading.Event()
        self.hold_only = None
        self.caller = threading.get_ident()
        self.ran_on: list[int] = []
        self.jobs: list = []  # the index job of each submit: build_index, extend_index

    def submit(self, fn, /, *args, **kwargs):
        job = args[0]  # fn is semantic.run_and_save: it runs the job, then saves its index
        self.jobs.append(job)

        def held():
            if self.hold_only in (None, job):
                self.go.wait()
            self.ran_on.append(threading.get_ident())
            return fn(*args, **kwargs)

        return super().submit(held)


@pytest.fixture
def held_builder():
    builder = HeldBuilder()
    yield builder
    builder.go.set()  # a failed test must not leave a build waiting forever
    builder.shutdown()


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


def test_a_burst_of_adds_during_a_rebuild_is_inserted_by_the_builder_not_the_caller(
    held_builder,
):
    """Many vectors added while a rebuild ran (a Redis resync) would stall the event loop
    if inserted there: the builder inserts them into the built index first."""
    rows = unit_rows(100 + REPLAY_MAX + 50)
    index = SemanticIndex(16, hnsw_from=100, builder=held_builder)
    index.add_many("ctx", [f"k{i}" for i in range(100)], rows[:100])  # HNSW build starts, held
    index.remove([f"k{i}" for i in range(80)])  # meanwhile
    first = index._partitions["ctx"].rebuild
    burst = range(100, len(rows))
    index.add_many("ctx", [f"k{i}" for i in burst], rows[100:])
    held_builder.go.set()
    first.index.result()
    index.search("ctx", rows[0])  # the first build is done but too far behind
    part = index._partitions["ctx"]
    assert part.rebuild is not None and part.rebuild is not first
    assert part.rebuild.positions == list(range(100 + len(burst)))
    index.settle()
    assert len(index) == 20 + len(burst)
    assert isinstance(index._partitions["ctx"].index, faiss.IndexHNSW)
    assert len(held_builder.ran_on) == 2  # the build, then the insertion of the burst
    assert [index.search("ctx", row)[0][0] for row in rows[80:]] == [
        f"k{i}" for i in range(80, len(rows))
    ]


def test_a_partition_stored_to_during_every_build_still_gets_its_hnsw(held_builder):
    """Steady stores to a large partition can add more than REPLAY_MAX vectors during each
    (minutes-long) build: the build must still take over once the builder has inserted
    them (a fraction of a second), not be dropped for a bigger build that ends the same way."""
    rows = unit_rows(100 + REPLAY_MAX + 1)
    held_builder.hold_only = build_index  # inserting a backlog runs at once
    index = SemanticIndex(16, hnsw_from=100, builder=held_builder)
    index.add_many("ctx", [f"k{i}" for i in range(100)], rows[:100])  # the build, held
    index.add_many("ctx", [f"k{i}" for i in range(100, len(rows))], rows[100:])  # meanwhile
    build = index._partitions["ctx"].rebuild.index
    held_builder.go.set()
    build.result()
    held_builder.go.clear()  # any further build would be held again
    index.search("ctx", rows[0])  # the build is done, its backlog goes to the builder
    index._partitions["ctx"].rebuild.index.result(timeout=10)
    index.search("ctx", rows[0])
    assert isinstance(index._partitions["ctx"].index, faiss.IndexHNSW)
    assert [index.search("ctx", row)[0][0] for row in rows] == [f"k{i}" for i in range(len(rows))]


def test_a_rebuild_for_removals_that_ends_past_hnsw_from_builds_an_hnsw_next(held_builder):
    """A flat partition rebuilt to drop its dead can grow past hnsw_from meanwhile: it
    must then be built into HNSW without waiting for another add."""
    rows = unit_rows(300)
    index = SemanticIndex(16, hnsw_from=200, builder=held_builder)
    index.add_many("ctx", [f"k{i}" for i in range(150)], rows[:150])
    index.remove([f"k{i}" for i in range(70)])  # past 64 dead: a flat rebuild starts, held
    index.add_many("ctx", [f"k{i}" for i in range(150, 300)], rows[150:])  # 230 live now
    held_builder.go.set()
    index.settle()
    part = index._partitions["ctx"]
    assert isinstance(part.index, faiss.IndexHNSW)
    assert part.live == 230
    assert [index.search("ctx", row)[0][0] for row in rows[70:]] == [
        f"k{i}" for i in range(70, 300)
    ]


def test_a_key_given_twice_in_one_call_is_stored_once_with_its_last_vector():
    rows = unit_rows(3)
    index = SemanticIndex(16, hnsw_from=1000)
    index.add_many("ctx", ["k1", "k2", "k1"], rows)
    assert len(index) == 2 and index._partitions["ctx"].live == 2
    assert index.search("ctx", rows[2])[0] == ("k1", pytest.approx(1.0))
    index.remove(["k1"])
    assert [key for key, _ in index.search("ctx", rows[2])] == ["k2"]


def test_a_closed_index_settles_without_its_cancelled_builds(held_builder):
    index = SemanticIndex(16, hnsw_from=100, builder=held_builder)
    index.add_many("ctx", [f"k{i}" for i in range(100)], unit_rows(100))
    index.add_many("other", [f"k{i}" for i in range(100, 200)], unit_rows(100, seed=1))
    index.close()  # the second build never started: cancelled
    held_builder.go.set()
    index.settle()
    assert len(index) == 200 and index.rebuilding == 0


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


def test_a_rebuild_runs_off_the_callers_thread_and_keeps_what_changed_meanwhile(held_builder):
    """While the HNSW copy is built the partition serves from its old index; the adds
    and removals made meanwhile are in the new one when it takes over."""
    rows = unit_rows(400)
    index = SemanticIndex(16, hnsw_from=100, builder=held_builder)
    index.add_many("ctx", [f"k{i}" for i in range(99)], rows[:99])
    index.add("ctx", "k99", rows[99])  # reaches hnsw_from: the rebuild starts, held
    index.add_many("ctx", [f"k{i}" for i in range(100, 400)], rows[100:])  # meanwhile
    index.remove([f"k{i}" for i in range(0, 400, 4)])  # meanwhile, some copied, some not
    assert isinstance(index._partitions["ctx"].index, faiss.IndexFlat)  # still the old one
    assert index.search("ctx", rows[1])[0][0] == "k1"
    held_builder.go.set()
    index.settle()
    assert held_builder.ran_on and held_builder.ran_on[0] != held_builder.caller
    assert isinstance(index._partitions["ctx"].index, faiss.IndexHNSW)
    assert len(index) == 300
    for i, row in enumerate(rows):
        best = index.search("ctx", row)[0][0]
        assert (best == f"k{i}") == (i % 4 != 0), i


def test_a_partition_added_at_once_past_hnsw_from_is_searchable_before_its_hnsw_exists(
    held_builder,
):
    """A start-up load hands a whole partition to add_many: it must return at once, with
    the partition searchable exactly, while its HNSW index is built on the builder."""
    rows = unit_rows(300)
    index = SemanticIndex(16, hnsw_from=100, builder=held_builder)
    index.add_many("ctx", [f"k{i}" for i in range(300)], rows)
    assert isinstance(index._partitions["ctx"].index, faiss.IndexFlat)
    assert index.rebuilding == 1
    assert [index.search("ctx", row)[0][0] for row in rows] == [f"k{i}" for i in range(300)]
    held_builder.go.set()
    index.settle()
    assert isinstance(index._partitions["ctx"].index, faiss.IndexHNSW)
    assert index.rebuilding == 0 and len(index) == 300
    assert [index.search("ctx", row)[0][0] for row in rows] == [f"k{i}" for i in range(300)]


def test_a_build_dropped_by_clear_counts_until_it_ends(held_builder):
    """clear() (Redis restarted empty) cannot stop a build already running; a stop must
    still see it, or the process would wait minutes for it at exit."""
    index = SemanticIndex(16, hnsw_from=100, builder=held_builder)
    index.add_many("ctx", [f"k{i}" for i in range(100)], unit_rows(100))
    build = index._partitions["ctx"].rebuild.index
    while not build.running():  # held on the builder's thread, past cancelling
        time.sleep(0.001)
    index.clear()
    assert index.rebuilding == 1 and not index.holds("ctx")
    held_builder.go.set()
    held_builder.shutdown()  # waits for the build
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


def saved_partition(folder, rows: np.ndarray, hnsw_from: int = 100) -> None:
    """An index that built (and saved) the HNSW index of `rows` under keys k0, k1, ..."""
    index = SemanticIndex(16, hnsw_from=hnsw_from, snapshots=folder)
    index.add_many("ctx", [f"k{i}" for i in range(len(rows))], rows)
    index.settle()
    assert isinstance(index._partitions["ctx"].index, faiss.IndexHNSW)
    index.close()


def test_a_restart_reuses_the_saved_index_and_adds_only_what_was_stored_since(
    tmp_path, held_builder
):
    """At start the store holds some saved keys no more, a key stored again with another
    vector, and many keys stored since: the saved index serves once the build thread has
    added those, with the rest as its only changes."""
    stored_since = REPLAY_MAX + 100
    rows = unit_rows(300 + stored_since)
    saved_partition(tmp_path, rows[:300])
    changed = unit_rows(1, seed=9)[0]
    stored = [i for i in range(len(rows)) if i % 10 != 0]  # saved k0, k10, ... are gone
    vectors = np.stack([changed if i == 5 else rows[i] for i in stored])
    index = SemanticIndex(16, hnsw_from=100, builder=held_builder, snapshots=tmp_path)
    index.load("ctx", [f"k{i}" for i in stored], vectors)
    assert isinstance(index._partitions["ctx"].index, faiss.IndexFlat)  # until they are in
    assert index.search("ctx", changed)[0] == ("k5", pytest.approx(1.0))
    held_builder.go.set()
    index.settle()
    part = index._partitions["ctx"]
    assert isinstance(part.index, faiss.IndexHNSW) and len(index) == len(stored)
    assert [fn.__name__ for fn in held_builder.jobs] == ["extend_index"]  # nothing rebuilt
    assert index.search("ctx", changed)[0] == ("k5", pytest.approx(1.0))
    for i, row in enumerate(rows):
        best = index.search("ctx", row)[0][0]
        assert best != f"k{i}" if i % 10 == 0 or i == 5 else best == f"k{i}", i


def test_a_stop_saves_the_adds_and_removals_made_since_the_build(tmp_path):
    """Adds go straight into an HNSW index and were saved only with its next build: saved
    at a stop, the next start serves the saved index with nothing to add."""
    rows = unit_rows(300 + REPLAY_MAX + 100)
    keys = [f"k{i}" for i in range(len(rows))]
    index = SemanticIndex(16, hnsw_from=100, snapshots=tmp_path)
    index.add_many("ctx", keys[:300], rows[:300])
    index.settle()
    assert index.save_changed() == 0  # the build saved it as it is
    index.add_many("ctx", keys[300:], rows[300:])
    index.remove(["k7"])
    assert index.save_changed() == 1
    assert index.save_changed() == 0
    index.close()
    stored = [i for i in range(len(rows)) if i != 7]
    again = SemanticIndex(16, hnsw_from=100, snapshots=tmp_path)
    again.load("ctx", [keys[i] for i in stored], rows[stored])
    assert isinstance(again._partitions["ctx"].index, faiss.IndexHNSW)
    assert again.rebuilding == 0 and again.save_changed() == 0
    assert [again.search("ctx", rows[i])[0][0] for i in stored] == [keys[i] for i in stored]


def test_a_stop_starts_no_build_and_leaves_a_finished_one_to_the_next_start(tmp_path, held_builder):
    """Taking over a build with more than REPLAY_MAX adds made meanwhile starts another
    job, which a stop would cut short: the stop's save leaves such a partition alone."""
    rows = unit_rows(300 + REPLAY_MAX + 10)
    index = SemanticIndex(16, hnsw_from=100, builder=held_builder, snapshots=tmp_path)
    index.add_many("ctx", [f"k{i}" for i in range(300)], rows[:300])
    index.add_many("ctx", [f"k{i}" for i in range(300, len(rows))], rows[300:])
    held_builder.go.set()
    index._partitions["ctx"].rebuild.index.result()  # built, not yet taken over
    assert index.save_changed() == 0
    assert [job.__name__ for job in held_builder.jobs] == ["build_index"]


def test_a_build_that_could_not_save_is_saved_at_the_stop(tmp_path):
    folder = tmp_path / "snapshots"
    folder.write_text("a file where the folder should be")  # the build's save fails
    index = SemanticIndex(16, hnsw_from=100, snapshots=folder)
    index.add_many("ctx", [f"k{i}" for i in range(300)], unit_rows(300))
    index.settle()
    assert isinstance(index._partitions["ctx"].index, faiss.IndexHNSW)
    folder.unlink()
    assert index.save_changed() == 1
    assert sorted(p.suffix for p in folder.iterdir()) == [".faiss", ".keys"]  # no leftovers


def test_a_restart_with_little_new_serves_from_the_saved_index_at_once(tmp_path):
    rows = unit_rows(310)
    saved_partition(tmp_path, rows[:300])
    index = SemanticIndex(16, hnsw_from=100, snapshots=tmp_path)
    index.load("ctx", [f"k{i}" for i in range(1, 310)], rows[1:])  # k0 gone, k300.. new
    assert isinstance(index._partitions["ctx"].index, faiss.IndexHNSW)
    assert index.rebuilding == 0 and len(index) == 309
    assert index.search("ctx", rows[0])[0][0] != "k0"
    assert [index.search("ctx", row)[0][0] for row in rows[1:]] == [f"k{i}" for i in range(1, 310)]


def damage_graph(index_file) -> None:
    index = faiss.read_index(str(index_file))
    links = faiss.vector_to_array(index.hnsw.neighbors)
    links[links >= 0] = 0
    faiss.copy_array_to_vector(links, index.hnsw.neighbors)
    faiss.write_index(index, str(index_file))


DAMAGES = {
    "truncated": lambda index_file, keys_file: index_file.write_bytes(
        index_file.read_bytes()[:1000]
    ),
    # FAISS reads a damaged graph as it is: every link to one node here (to a node past
    # the end, a flipped bit, the search would crash).
    "a damaged graph": lambda index_file, keys_file: damage_graph(index_file),
    "a key more": lambda index_file, keys_file: keys_file.write_text(
        keys_file.read_text().replace("\nk1\n", "\nk1\nk1b\n")
    ),
    "a key less": lambda index_file, keys_file: keys_file.write_text(
        keys_file.read_text().replace("\nk1\n", "\n")
    ),
    "keys of another format": lambda index_file, keys_file: keys_file.write_text("[]"),
    "keys a folder": lambda index_file, keys_file: (keys_file.unlink(), keys_file.mkdir()),
    "mostly gone": None,  # a third of what was saved is no longer stored
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_saved_index_that_does_not_fit_is_built_again(tmp_path, damage):
    rows = unit_rows(300)
    saved_partition(tmp_path, rows)
    stored = range(300)
    if DAMAGES[damage] is None:
        stored = range(200)
    else:
        DAMAGES[damage](*snapshot_paths(tmp_path, "ctx"))
    index = SemanticIndex(16, hnsw_from=100, snapshots=tmp_path)
    index.load("ctx", [f"k{i}" for i in stored], rows[list(stored)])
    assert isinstance(index._partitions["ctx"].index, faiss.IndexFlat)
    index.settle()  # built again, from the stored vectors
    assert isinstance(index._partitions["ctx"].index, faiss.IndexHNSW)
    assert [index.search("ctx", rows[i])[0][0] for i in stored] == [f"k{i}" for i in stored]


def test_saved_indexes_of_partitions_no_longer_stored_are_deleted(tmp_path):
    saved_partition(tmp_path, unit_rows(300))
    (tmp_path / "half-written.faiss.tmp").write_bytes(b"x")
    index = SemanticIndex(16, hnsw_from=100, snapshots=tmp_path)
    (tmp_path / "a folder").mkdir()  # not ours to delete
    index.prune_snapshots(keep=["other"]).result()
    assert [path.name for path in tmp_path.iterdir()] == ["a folder"]


def test_the_prune_runs_after_a_save_under_way(tmp_path, held_builder):
    """A Redis resync loads again while a build from before it may still be saving: the
    prune must not cut into its half-written files, so it runs on the build thread after
    it (here it then deletes what the save wrote: the partition is no longer stored)."""
    index = SemanticIndex(16, hnsw_from=100, builder=held_builder, snapshots=tmp_path)
    index.add_many("ctx", [f"k{i}" for i in range(100)], unit_rows(100))  # a build, held
    build = index._partitions["ctx"].rebuild.index
    index.clear()  # as at a resync: the build goes on
    pruned = index.prune_snapshots(keep=[])
    held_builder.go.set()
    pruned.result()
    assert build.done() and isinstance(build.result(), faiss.IndexHNSW)  # built and saved
    assert list(tmp_path.iterdir()) == []  # then pruned


def test_a_key_listed_twice_at_load_is_loaded_once(tmp_path):
    """A Redis scan may list a key twice; with a saved index reused it must still be one
    entry, gone once removed."""
    rows = unit_rows(120)
    saved_partition(tmp_path, rows[:100])
    index = SemanticIndex(16, hnsw_from=100, snapshots=tmp_path)
    keys = [f"k{i}" for i in range(120)] + ["k110"]
    index.load("ctx", keys, np.vstack([rows, rows[110:111]]))
    index.settle()
    assert len(index) == 120 and index._partitions["ctx"].live == 120
    index.remove(["k110"])
    assert index.search("ctx", rows[110])[0][0] != "k110"
