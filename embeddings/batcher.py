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
take more cores for it, since nothing else needs them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")


class ModelWorkers:
    """The threads that run model batches, and the inputs submitted and not yet answered
    across the batchers that share them."""

    __slots__ = ("count", "executor", "pending")

    def __init__(self, count: int) -> None:
        self.count = count
        self.executor = ThreadPoolExecutor(count, thread_name_prefix="cachegate-model")
        self.pending = 0

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class MicroBatcher(Generic[Item]):
    def __init__(
        self,
        run: Callable[[list[Item], bool], Sequence[Any]],
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
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                wide = len(batch) == 1 and self._workers.pending == 1
                self.runs += len(batch)
                try:
                    results = await loop.run_in_executor(
                        self._workers.executor, self._run, [i for i, _ in batch], wide
                    )
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
