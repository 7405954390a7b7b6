"""Micro-batching: concurrent requests share one trip to a worker thread, off the event loop.

Each `submit` adds its item to the open batch; one worker thread takes whatever has
gathered when it is free (up to `max_batch`) and runs the batch function once. Under
load batches grow by themselves; alone, a request waits for no one. (The int8 ONNX models
then run each item on its own so that no result depends on its neighbours; the torch
embedder runs the batch as one call.) An input that is the only model work pending,
across every batcher that shares its `Load`, is run `wide`: the model may take more cores,
since nothing else needs them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")


class Load:
    """Model inputs submitted and not yet answered, across the batchers that share it."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = 0


class MicroBatcher(Generic[Item]):
    def __init__(
        self,
        run: Callable[[list[Item], bool], Sequence[Any]],
        max_batch: int,
        name: str,
        load: Load,
    ) -> None:
        self._run = run
        self._load = load
        self.runs = 0  # inputs run through the model so far (for /metrics)
        self._max_batch = max_batch
        self._queue: list[tuple[Item, asyncio.Future]] = []
        self._busy = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"cachegate-{name}")

    async def submit(self, item: Item) -> Any:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if not self._busy:
            self._busy = True
            asyncio.get_running_loop().create_task(self._drain())
        self._load.pending += 1
        try:
            return await future
        finally:
            self._load.pending -= 1

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                wide = len(batch) == 1 and self._load.pending == 1
                self.runs += len(batch)
                try:
                    results = await loop.run_in_executor(
                        self._executor, self._run, [i for i, _ in batch], wide
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
            self._busy = False

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
