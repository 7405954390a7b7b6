"""The model workers: every core runs model work, whichever model it is for."""

from __future__ import annotations

import asyncio
import threading

import pytest

from embeddings.batcher import MicroBatcher, ModelWorkers

BARRIER_SECONDS = 3.0


def meeting(parties: int):
    """A model run that returns only once `parties` runs are inside it at the same time
    (a BrokenBarrierError otherwise), and records whether each ran wide."""
    barrier = threading.Barrier(parties, timeout=BARRIER_SECONDS)
    wide_runs: list[bool] = []

    def run(items: list[str], wide: bool) -> list[str]:
        wide_runs.append(wide)
        barrier.wait()
        return [item.upper() for item in items]

    return run, wide_runs


async def submit_together(*calls) -> list:
    return await asyncio.gather(*(batcher.submit(item) for batcher, item in calls))


def test_the_embedder_and_the_verifier_run_at_once_on_two_workers():
    run, wide_runs = meeting(2)
    workers = ModelWorkers(2)
    embed, verify = MicroBatcher(run, 32, workers), MicroBatcher(run, 32, workers)
    try:
        assert asyncio.run(submit_together((embed, "a"), (verify, "b"))) == ["A", "B"]
    finally:
        workers.close()
    assert wide_runs == [False, False]  # each had company: neither took the idle cores


def test_one_model_uses_both_workers_when_it_alone_has_work():
    run, _ = meeting(2)
    workers = ModelWorkers(2)
    verify = MicroBatcher(run, 1, workers)  # batches of one: two batches for two inputs
    try:
        assert asyncio.run(submit_together((verify, "a"), (verify, "b"))) == ["A", "B"]
        assert verify.runs == 2
    finally:
        workers.close()


def test_one_worker_runs_one_batch_at_a_time():
    """The check above can fail: with a single worker the two runs never meet."""
    run, _ = meeting(2)
    workers = ModelWorkers(1)
    embed, verify = MicroBatcher(run, 32, workers), MicroBatcher(run, 32, workers)
    try:
        with pytest.raises(threading.BrokenBarrierError):
            asyncio.run(submit_together((embed, "a"), (verify, "b")))
    finally:
        workers.close()


def test_an_input_alone_runs_wide():
    run, wide_runs = meeting(1)
    workers = ModelWorkers(2)
    embed = MicroBatcher(run, 32, workers)
    try:
        assert asyncio.run(submit_together((embed, "a"))) == ["A"]
    finally:
        workers.close()
    assert wide_runs == [True]


def test_lone_inputs_of_both_models_run_on_one_thread():
    """After both threads have worked, a lone input (run wide) of either model still goes
    to the same thread: onnxruntime's wide runs slow down when their calling thread changes."""
    run, _ = meeting(2)
    workers = ModelWorkers(2)
    embed, verify = MicroBatcher(run, 32, workers), MicroBatcher(run, 32, workers)
    callers: list[tuple[bool, int]] = []

    def where(items: list[str], wide: bool) -> list[str]:
        callers.append((wide, threading.get_ident()))
        return items

    async def scenario() -> None:
        await submit_together((embed, "a"), (verify, "b"))  # both threads busy at once
        lone_embed, lone_verify = MicroBatcher(where, 32, workers), MicroBatcher(where, 32, workers)
        for _ in range(4):
            await lone_embed.submit("q")
            await lone_verify.submit("q")

    try:
        asyncio.run(scenario())
    finally:
        workers.close()
    assert [wide for wide, _ in callers] == [True] * 8
    assert len({thread for _, thread in callers}) == 1
