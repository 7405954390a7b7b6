"""The semantic index: FAISS inner-product search, one index per context partition.

A request can only match an entry of its own partition (same tenant, namespace,
endpoint, model, system prompt, earlier turns, tools, parameters), so each partition
has its own index: exact search (flat) while small, HNSW once it passes `hnsw_from`
vectors, which keeps lookups near a millisecond at a million entries. FAISS cannot
cheaply delete from HNSW, so removals leave tombstones: a bitmap of live positions that
FAISS consults during the search itself (so dead entries never crowd out live ones), and a
partition is rebuilt from its live vectors once a quarter of it is dead.

A partition always starts flat. An HNSW index is only ever built on a thread of its own,
from a copy of the live vectors, when a flat partition reaches `hnsw_from` (at start-up
too, when a large partition is loaded at once) or when a quarter of a partition is dead:
building 20k vectors into HNSW takes seconds (a million: minutes), and on the event loop
every request would wait for it. Until it is done the partition keeps serving from its
old index (exact, only slower). When it is done, the removals made meanwhile become
tombstones in the new index and the adds made meanwhile are inserted into it (off the
loop too when there are many), and it takes the old one's place at the next access.

Every HNSW index built is also saved (index and keys, in the snapshot folder, by the build
thread), and saved again at a stop if it changed since (adds go straight into an HNSW
index): at the next start a partition is searchable at once as before, and its HNSW index
is the saved one with only what was stored since added to it, in seconds instead of the
minutes a million vectors take to build. The store stays the truth: a saved key that is no
longer stored, or whose vector differs, is dead in the reused index.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

# 16 links per node: half the build time and memory of 32, and at a million entries a
# lookup still stays within a millisecond or two (make bench, index scale).
HNSW_LINKS = 16
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 64
CANDIDATES = 4
# A saved index is reused at start while at least this share of it is still stored; below
# that a rebuild would be due at once anyway (past 256 entries: a quarter dead).
SNAPSHOT_KEPT_MIN = 0.75
# Vectors added while a rebuild ran are inserted into the new index on the event loop when
# it takes over (~0.2 ms each into HNSW on a slow 2-core VM); past this many (a Redis
# resync, steady stores during a long build) the builder inserts them first.
REPLAY_MAX = 512

log = logging.getLogger("cachegate.semantic")


@dataclass(slots=True)
class Rebuild:
    """A fresh index being built off the event loop from a copy of some vectors."""

    positions: list[int]  # where each vector copied was in the old index, in the new order
    keys: list[str | None]  # their keys at the copy: what the build saves with its index
    copied: int  # the old index's size at the copy: later positions were added since
    index: Future[faiss.Index]  # the fresh index, once built
    saved: threading.Event  # set by the build thread once the fresh index is saved


@dataclass(slots=True)
class Partition:
    index: faiss.Index
    keys: list[str | None] = field(default_factory=list)  # FAISS position -> entry key
    dead: int = 0
    rebuild: Rebuild | None = None
    changed: bool = True  # since its index was last saved (see SemanticIndex.save_changed)
    # Bit i set = position i is live (FAISS IDSelectorBitmap's layout); grown by doubling.
    alive: np.ndarray = field(default_factory=lambda: np.zeros(8, dtype=np.uint8))

    @property
    def live(self) -> int:
        return len(self.keys) - self.dead

    def mark_added(self, start: int, count: int) -> None:
        needed = (start + count + 7) // 8
        if needed > len(self.alive):
            grown = np.zeros(max(needed, 2 * len(self.alive)), dtype=np.uint8)
            grown[: len(self.alive)] = self.alive
            self.alive = grown
        for position in range(start, start + count):
            self.alive[position >> 3] |= 1 << (position & 7)

    def mark_removed(self, position: int) -> None:
        self.alive[position >> 3] &= ~np.uint8(1 << (position & 7))

    def search_parameters(self) -> faiss.SearchParameters | None:
        if self.dead == 0:
            return None
        selector = faiss.IDSelectorBitmap(len(self.keys), faiss.swig_ptr(self.alive))
        # faiss's stubs leave out SearchParametersHNSW and the keywords SWIG accepts.
        if isinstance(self.index, faiss.IndexHNSW):
            return faiss.SearchParametersHNSW(sel=selector, efSearch=HNSW_EF_SEARCH)  # type: ignore[attr-defined]
        return faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]


def build_index(dim: int, vectors: np.ndarray, hnsw_from: int) -> faiss.Index:
    """An index holding `vectors`: flat below `hnsw_from` of them, else HNSW (off the loop)."""
    if len(vectors) < hnsw_from:
        flat = faiss.IndexFlatIP(dim)
        flat.add(vectors)
        return flat
    started = time.perf_counter()
    index = faiss.IndexHNSWFlat(dim, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.hnsw.efSearch = HNSW_EF_SEARCH
    index.add(vectors)
    log.info(  # the slow kind: say when it is ready
        "semantic partition: HNSW index of %d vectors built in %.1fs",
        len(vectors),
        time.perf_counter() - started,
    )
    return index


def extend_index(index: faiss.Index, vectors: np.ndarray) -> faiss.Index:
    """`index` with `vectors` added (off the loop: the adds made while it was built, or
    since it was saved)."""
    started = time.perf_counter()
    index.add(vectors)
    log.info(
        "semantic partition: %d vectors added to an index of %d in %.1fs",
        len(vectors),
        index.ntotal - len(vectors),
        time.perf_counter() - started,
    )
    return index


def snapshot_paths(folder: Path, context_key: str) -> tuple[Path, Path]:
    """The files of a partition's saved index: the FAISS index, and its keys."""
    name = hashlib.sha256(context_key.encode()).hexdigest()[:40]
    return folder / f"{name}.faiss", folder / f"{name}.keys"


def file_crc32(path: Path) -> int:
    checksum = 0
    with path.open("rb") as file:
        while chunk := file.read(1 << 24):
            checksum = zlib.crc32(chunk, checksum)
    return checksum


def save_snapshot(
    folder: Path, context_key: str, keys: list[str | None], index: faiss.Index
) -> None:
    """Save a partition's index and its keys with the index file's checksum: a JSON line,
    then a key per line (empty: dead; a join, not json.dumps, which would hold the GIL
    from the event loop for half a second at a million keys). Both files are written
    aside, then renamed over the old ones back to back, so a crash leaves whole files; a
    pair that does not fit together fails the checksum when it is read."""
    index_path, keys_path = snapshot_paths(folder, context_key)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # Aside names of their own: a stop's save and a build's may write one partition at once.
    token = uuid.uuid4().hex
    index_aside = index_path.with_name(f"{index_path.name}.{token}.tmp")
    keys_aside = keys_path.with_name(f"{keys_path.name}.{token}.tmp")
    try:
        faiss.write_index(index, str(index_aside))
        header = {"context": context_key, "crc32": file_crc32(index_aside), "keys": len(keys)}
        keys_aside.write_text("\n".join([json.dumps(header), *(key or "" for key in keys)]))
        os.replace(index_aside, index_path)
        os.replace(keys_aside, keys_path)
    finally:  # a failed save leaves no copy of an index behind (gigabytes at 1M vectors)
        index_aside.unlink(missing_ok=True)
        keys_aside.unlink(missing_ok=True)
    log.info(
        "semantic partition: index of %d vectors saved in %.1fs",
        len(keys),
        time.perf_counter() - started,
    )


def read_snapshot(
    folder: Path, context_key: str, dim: int
) -> tuple[list[str | None], faiss.Index] | None:
    """A partition's saved keys and HNSW index, or None where there is none that fits."""
    index_path, keys_path = snapshot_paths(folder, context_key)
    if not keys_path.exists():
        return None
    try:
        header_line, *lines = keys_path.read_text().split("\n")
        header = json.loads(header_line)
        if header["context"] != context_key or header["keys"] != len(lines):
            raise ValueError("its keys file is not whole")
        if file_crc32(index_path) != header["crc32"]:
            raise ValueError("the index file does not match its checksum")
        # Only after the checksum: FAISS reads a damaged graph as it is.
        index = faiss.read_index(str(index_path))
        if not isinstance(index, faiss.IndexHNSW) or (index.d, index.ntotal) != (dim, len(lines)):
            raise ValueError("it does not fit its keys")
    except Exception as exc:  # only a shortcut: whatever is wrong, the store has it all
        log.warning("ignoring the saved index %s: %s", index_path, exc)
        return None
    index.hnsw.efSearch = HNSW_EF_SEARCH
    return [line or None for line in lines], index


def run_and_save(
    job: Callable[..., faiss.Index],
    args: tuple,
    folder: Path | None,
    context_key: str,
    keys: list[str | None],
    saved: threading.Event,
) -> faiss.Index:
    """Run an index job (on the build thread), save the HNSW index it gives, and set
    `saved` if that worked."""
    index = job(*args)
    if (
        folder is not None
        and isinstance(index, faiss.IndexHNSW)
        and save_or_warn(folder, context_key, keys, index)
    ):
        saved.set()
    return index


def save_or_warn(
    folder: Path, context_key: str, keys: list[str | None], index: faiss.Index
) -> bool:
    """save_snapshot, or a warning: the index serves anyway, and the next start builds it."""
    try:
        save_snapshot(folder, context_key, keys, index)
    except (OSError, RuntimeError) as exc:
        log.warning("could not save the semantic index to %s: %s", folder, exc)
        return False
    return True


def delete_snapshots_except(folder: Path, kept: set[str]) -> None:
    """Delete the files in `folder` not named in `kept` (on the build thread)."""
    try:
        for path in folder.iterdir():
            if path.name not in kept and path.is_file():
                path.unlink(missing_ok=True)
    except FileNotFoundError:  # nothing saved yet
        pass
    except OSError as exc:  # a read-only folder, say: the stale files only take space
        log.warning("could not delete old saved indexes in %s: %s", folder, exc)


def last_of_each(keys: list[str], vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
    """`keys` and their rows with each key once, with its last row (a key given twice)."""
    if len(set(keys)) == len(keys):
        return keys, vectors
    last_row = {key: row for row, key in enumerate(keys)}
    return list(last_row), vectors[list(last_row.values())]


class SemanticIndex:
    """Not thread-safe: one thread (the event loop) calls it; rebuilds run on `builder`."""

    def __init__(
        self,
        dim: int,
        hnsw_from: int,
        builder: Executor | None = None,
        snapshots: Path | None = None,
    ) -> None:
        self.dim = dim
        self._hnsw_from = hnsw_from
        self._snapshots = snapshots  # the folder of saved HNSW indexes, if they are kept
        self._partitions: dict[str, Partition] = {}
        self._where: dict[str, tuple[str, int]] = {}  # entry key -> (partition, position)
        self._builder = builder or ThreadPoolExecutor(1, thread_name_prefix="cachegate-index")
        # Builds submitted and not finished, kept by their partition or not: one dropped by
        # clear() still runs to its end, and a stop must know it need not wait for it.
        self._building: set[Future[faiss.Index]] = set()

    def close(self) -> None:
        self._builder.shutdown(wait=False, cancel_futures=True)

    def clear(self) -> None:
        """Forget every partition (a rebuild still running is dropped when it ends)."""
        for part in self._partitions.values():
            if part.rebuild is not None:
                part.rebuild.index.cancel()
        self._partitions.clear()
        self._where.clear()

    def __len__(self) -> int:
        return len(self._where)

    @property
    def partitions(self) -> int:
        return len(self._partitions)

    @property
    def rebuilding(self) -> int:
        """Index builds under way (a partition serves from its old index meanwhile)."""
        return len(self._building)

    def add(self, context_key: str, key: str, vector: np.ndarray) -> None:
        self.add_many(context_key, [key], vector.reshape(1, -1))

    def add_many(self, context_key: str, keys: list[str], vectors: np.ndarray) -> None:
        """Add vectors (rows, L2-normalized float32) to a partition; a known key is replaced
        (and a key given twice is added once, with its last vector)."""
        keys, vectors = last_of_each(keys, vectors)
        self.remove(k for k in keys if k in self._where)
        part = self._partition(context_key)
        if part is None:
            part = Partition(faiss.IndexFlatIP(self.dim))
            self._partitions[context_key] = part
        start = len(part.keys)
        part.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        part.keys.extend(keys)
        part.mark_added(start, len(keys))
        for offset, key in enumerate(keys):
            self._where[key] = (context_key, start + offset)
        part.changed = True
        self._maintain(context_key, part)

    def load(self, context_key: str, keys: list[str], vectors: np.ndarray) -> None:
        """Index a whole partition read from the store at start: like `add_many`, but its
        HNSW index is the saved one where that still fits (see `save_snapshot`), with the
        vectors stored since added to it off the loop, rather than built again."""
        saved = (
            read_snapshot(self._snapshots, context_key, self.dim)
            if self._snapshots is not None and context_key not in self._partitions
            else None
        )
        if saved is None:
            self.add_many(context_key, keys, vectors)
            return
        saved_keys, saved_index = saved
        keys, vectors = last_of_each(keys, vectors)
        saved_at = {key: position for position, key in enumerate(saved_keys) if key is not None}
        at = np.array([saved_at.get(key, -1) for key in keys], dtype=np.int64)
        rows = np.flatnonzero(at >= 0)
        if len(rows):  # a key stored again since, with another vector, is new
            same = (saved_index.reconstruct_batch(at[rows]) == vectors[rows]).all(axis=1)
            rows = rows[same]
        if len(rows) < SNAPSHOT_KEPT_MIN * len(saved_keys):
            log.info("semantic partition: its saved index is out of date; building it again")
            self.add_many(context_key, keys, vectors)
            return
        new = np.setdiff1d(np.arange(len(keys)), rows)
        order: list[str | None] = [None] * len(saved_keys)  # the saved order; None: dead
        for row in rows:
            order[at[row]] = keys[row]
        self.remove(key for key in keys if key in self._where)
        in_order = order + [keys[row] for row in new]
        if len(new) <= REPLAY_MAX:  # few to insert: here, as after a build (no flat copy)
            saved_index.add(vectors[new])
            part = self._install(context_key, saved_index, in_order)
            part.changed = in_order != saved_keys
        else:  # served flat (exactly) until the saved index has the new vectors too
            flat = np.zeros((len(in_order), self.dim), dtype=np.float32)
            flat[at[rows]] = vectors[rows]
            flat[len(saved_keys) :] = vectors[new]
            part = self._install(context_key, faiss.IndexFlatIP(self.dim), in_order)
            part.index.add(flat)
            positions = list(range(len(in_order)))
            self._off_loop(part, context_key, positions, extend_index, saved_index, vectors[new])
        log.info(
            "semantic partition: reusing its saved index (%d kept, %d dead, %d to add)",
            len(rows),
            part.dead,
            len(new),
        )

    def prune_snapshots(self, keep: Iterable[str]) -> Future[None] | None:
        """Delete the saved indexes of partitions other than `keep` (those about to be
        loaded) and any half-written file, on the build thread: after any save under way
        (a build from before a Redis resync), before the builds the load starts."""
        if self._snapshots is None:
            return None
        kept = {path.name for key in keep for path in snapshot_paths(self._snapshots, key)}
        try:
            return self._builder.submit(delete_snapshots_except, self._snapshots, kept)
        except RuntimeError:  # closed: the gateway is stopping
            return None

    def remove(self, keys: Iterable[str]) -> int:
        removed = 0
        touched: set[str] = set()
        for key in list(keys):
            place = self._where.pop(key, None)
            if place is None:
                continue
            context_key, position = place
            part = self._partitions[context_key]
            part.keys[position] = None
            part.mark_removed(position)
            part.dead += 1
            part.changed = True
            removed += 1
            touched.add(context_key)
        for context_key in touched:
            left = self._partition(context_key)
            if left is None:
                continue
            if left.live == 0:
                if left.rebuild is not None:
                    left.rebuild.index.cancel()
                del self._partitions[context_key]
            else:
                self._maintain(context_key, left)
        return removed

    def holds(self, context_key: str) -> bool:
        """Whether the partition has any live entry (empty partitions are dropped)."""
        return context_key in self._partitions

    def search(self, context_key: str, vector: np.ndarray) -> list[tuple[str, float]]:
        """The nearest live entries of the partition, best first, with their cosine."""
        part = self._partition(context_key)
        if part is None:
            return []
        k = min(CANDIDATES, part.live)
        # One query on one thread: splitting a scan across an OpenMP team costs more than it
        # saves (10k flat, 2-core VM: p50 1.1-1.7 ms alone, 1.8-2.5 ms on two threads) and takes a
        # core from the models. Builds keep every thread: the HNSW insert is parallel.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            scores, positions = part.index.search(
                vector.reshape(1, -1).astype(np.float32), k, params=part.search_parameters()
            )
        finally:
            faiss.omp_set_num_threads(threads)
        found = []
        for score, position in zip(scores[0], positions[0], strict=True):
            key = part.keys[position] if position >= 0 else None
            if key is not None:
                found.append((key, float(score)))
        return found[:CANDIDATES]

    def save_changed(self) -> int:
        """Save each HNSW partition whose index changed since it was saved, on this thread:
        at a stop, so that the next start serves every partition from its saved index with
        nothing to add (adds go straight into an HNSW index and are otherwise saved only
        with its next build). A partition still building is left to its build."""
        if self._snapshots is None:
            return 0
        saved = 0
        for context_key, part in self._partitions.items():
            # Not _partition(): taking over a finished build could start another one, which
            # the stop would then cut short. A partition with a build leaves it to that build.
            if (
                part.rebuild is not None
                or not part.changed
                or not isinstance(part.index, faiss.IndexHNSW)
            ):
                continue
            if save_or_warn(self._snapshots, context_key, part.keys, part.index):
                part.changed = False
                saved += 1
        return saved

    def settle(self) -> None:
        """Wait for every rebuild and put it in place (tests and tools; the gateway never waits)."""
        while pending := [(c, p.rebuild) for c, p in self._partitions.items() if p.rebuild]:
            for context_key, rebuild in pending:
                if not rebuild.index.cancelled():  # by close(): it will never run
                    rebuild.index.exception()  # waits
                self._partition(context_key)

    def _partition(self, context_key: str) -> Partition | None:
        """The partition, with its finished rebuild (if any) put in place first."""
        part = self._partitions.get(context_key)
        if part is None or part.rebuild is None or not part.rebuild.index.done():
            return part
        rebuild, part.rebuild = part.rebuild, None
        if rebuild.index.cancelled():  # the gateway is stopping
            return part
        try:
            built = rebuild.index.result()
        except Exception:  # keep serving from the old index; the next add or removal retries
            log.exception("rebuilding a semantic partition failed; it keeps its old index")
            return part
        added = [p for p in range(rebuild.copied, len(part.keys)) if part.keys[p] is not None]
        if len(added) > REPLAY_MAX:  # too many to insert here: the builder inserts them first
            positions = rebuild.positions + added
            self._off_loop(
                part, context_key, positions, extend_index, built, self._vectors(part, added)
            )
            return part
        if added:
            built.add(self._vectors(part, added))
        # Keys removed while the copy was being built are None: dead in the new index.
        fresh = self._install(context_key, built, [part.keys[p] for p in rebuild.positions + added])
        # The build saved its HNSW index with the keys of the copy, if it could.
        fresh.changed = not rebuild.saved.is_set() or fresh.keys != rebuild.keys
        self._maintain(context_key, fresh)  # grown past hnsw_from, or many dead, meanwhile?
        return fresh

    def _install(self, context_key: str, index: faiss.Index, keys: list[str | None]) -> Partition:
        """Make `index` the partition's, its position i holding `keys[i]` (None: dead)."""
        part = Partition(index, keys=keys)
        part.mark_added(0, len(keys))
        for position, key in enumerate(keys):
            if key is None:
                part.mark_removed(position)
                part.dead += 1
            else:
                self._where[key] = (context_key, position)
        self._partitions[context_key] = part
        return part

    def _maintain(self, context_key: str, part: Partition) -> None:
        """Start a rebuild where one is due: a flat partition has reached `hnsw_from`, or a
        quarter of the partition is dead."""
        if part.rebuild is not None:
            return
        grown = isinstance(part.index, faiss.IndexFlat) and part.live >= self._hnsw_from
        if grown or part.dead > max(64, len(part.keys) // 4):
            positions = [p for p, key in enumerate(part.keys) if key is not None]
            self._off_loop(
                part,
                context_key,
                positions,
                build_index,
                self.dim,
                self._vectors(part, positions),
                self._hnsw_from,
            )

    def _vectors(self, part: Partition, positions: list[int]) -> np.ndarray:
        if not positions:
            return np.zeros((0, self.dim), dtype=np.float32)
        return part.index.reconstruct_batch(np.array(positions, dtype=np.int64))

    def _off_loop(
        self,
        part: Partition,
        context_key: str,
        positions: list[int],
        job: Callable[..., faiss.Index],
        *args: object,
    ) -> None:
        """Run `job` on the builder for a fresh index of `part`'s vectors at `positions`, in
        that order; it takes the old index's place once done (see `_partition`)."""
        keys = [part.keys[p] for p in positions]
        saved = threading.Event()
        try:
            built = self._builder.submit(
                run_and_save, job, args, self._snapshots, context_key, keys, saved
            )
        except RuntimeError:  # closed: the gateway is stopping, the old index will do
            return
        self._building.add(built)  # before the callback, which runs at once if it is done
        built.add_done_callback(self._building.discard)
        part.rebuild = Rebuild(positions, keys, len(part.keys), built, saved)
