"""Micro-batching: concurrent requests share one trip to a worker thread, off the event loop.

Each `submit` adds its item to the open batch; a free worker thread takes whatever has
gathered (up to `max_batch`) and runs the batch function once. Under load batches grow by
themselves; alone, a request waits for no one. (The int8 ONNX models then run each item
on its own so that no result depends on its neighbours; the torch embedder runs the batch
as one call.)

The batchers of one gateway (embedder and verifier) share one `ModelWorkers`: a pool of
threads, one per core by default, so whichever model has work uses every core; with a
thread of its own each, the slower verifier capped hits at its own pace while the other
core idled. An input that is the only model work pending is run `wide`: the model may
take more cores for it, since nothing else needs them. Wide runs all go to the first
thread: onnxruntime's two-thread run slowed by a millisecond or two when the thread
calling it changed from one run to the next (embedder and verifier alternating over a
pool's threads), and a lone semantic hit runs both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

import numpy as np

Item = TypeVar("Item")
Results = Sequence[Any] | np.ndarray  # a batch function's answer: one result per item


class ModelWorkers:
    """The threads that run model batches, one batch at a time each, and the inputs
    submitted and not yet answered across the batchers that share them."""

    __slots__ = ("busy", "count", "pending", "threads")

    def __init__(self, count: int) -> None:
        self.count = count
        self.threads = [
            ThreadPoolExecutor(1, thread_name_prefix=f"cachegate-model-{i}") for i in range(count)
        ]
        self.busy = [0] * count  # batches handed to each thread and not yet done
        self.pending = 0

    async def run(
        self, model: Callable[[list[Any], bool], Results], batch: list[Any], wide: bool
    ) -> Results:
        """Run `model` on `batch` on a thread: a wide run on the first (nothing else is in
        flight then), any other on the least busy, the first last."""
        chosen = 0 if wide else min(range(self.count), key=lambda i: (self.busy[i], -i))
        self.busy[chosen] += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.threads[chosen], model, batch, wide
            )
        finally:
            self.busy[chosen] -= 1

    def close(self) -> None:
        for thread in self.threads:
            thread.shutdown(wait=False, cancel_futures=True)


class MicroBatcher(Generic[Item]):
    def __init__(
        self,
        run: Callable[[list[Item], bool], Results],
        max_batch: int,
        workers: ModelWorkers,
    ) -> None:
        self._run = run
        self._workers = workers
        self.runs = 0  # inputs run through the model so far (for /metrics)
        self._max_batch = max_batch
        self._queue: list[tuple[Item, asyncio.Future]] = []
        self._draining = 0  # batches of this model in flight, at most one per worker

    async def submit(self, item: Item) -> Any:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._draining < self._workers.count:
            self._draining += 1
            asyncio.get_running_loop().create_task(self._drain())
        self._workers.pending += 1
        try:
            return await future
        finally:
            self._workers.pending -= 1

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                wide = len(batch) == 1 and self._workers.pending == 1
                self.runs += len(batch)
                try:
                    results = await self._workers.run(self._run, [i for i, _ in batch], wide)
                except Exception as exc:  # the model failed: fail these requests, keep serving
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._draining -= 1
