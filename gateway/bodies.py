"""Reading a request body's JSON, and deciding on a large one in a process of its own.

Parsing and keying a 30 MiB body takes a few hundred milliseconds, most of it in C calls
that hold the interpreter lock for tens of milliseconds each: in a thread of the gateway's
process they still stalled every other request's exact hit for up to 300 ms (measured
with two such bodies in flight). In a worker process they stall nothing; sending the body
there and the small Decision back costs a copy of the body.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

import orjson

from policies.controls import Controls
from policies.decide import (
    Decision,
    Endpoint,
    PolicyConfig,
    RequestError,
    decide,
    json_depth_exceeds,
)
from policies.keys import Variant

T = TypeVar("T")


class BodyError(ValueError):
    """The body is not JSON a request can be: a 400 with this message and `param`."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def parse_json(raw: bytes, max_depth: int) -> Any:
    """The body's JSON, every integer exact; BodyError when it cannot be a request.

    orjson checks it is JSON (strictly: no NaN, no lone surrogates) and not too deep;
    Python's parser then reads it again, for two things orjson cannot tell: an integer
    past 64 bits (orjson reads the nearest float, and two such bodies would share a
    key), and a key given twice in one object. We key on the last value, but a server
    may read the first: such a body could store one request's answer under another's
    key, so it is refused. A new body pays ~5 us for this; a repeat is not parsed."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BodyError(f"request body is not valid JSON: {exc}") from None
    if json_depth_exceeds(body, max_depth):
        raise BodyError(f"request JSON is nested deeper than {max_depth} levels")
    try:
        return json.loads(raw, object_pairs_hook=one_value_per_key)
    except BodyError:
        raise
    except ValueError as exc:  # past Python's limit on the digits of an integer
        raise BodyError(f"a number in the request body is too long: {exc}") from None


def one_value_per_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object of the body, or BodyError when it names a key twice."""
    read = dict(pairs)
    if len(read) < len(pairs):
        named = [key for key, _ in pairs]
        twice = next(key for key in named if named.count(key) > 1)
        raise BodyError(
            f"request JSON gives the key {twice!r} more than once in one object; send each key once"
        )
    return read


def decide_body(
    endpoint: Endpoint,
    raw: bytes,
    max_depth: int,
    controls: Controls,
    tenant: str,
    policy: PolicyConfig,
    variant: Variant,
) -> Decision | tuple[str, str | None]:
    """decide() on the raw body; (message, param) of the 400 when it is not a request.
    (Errors come back as values: exceptions with extra fields do not cross processes.)"""
    try:
        return decide(endpoint, parse_json(raw, max_depth), controls, tenant, policy, variant)
    except (BodyError, RequestError) as exc:
        return str(exc), exc.param


class BodyWorker:
    """One worker process for large bodies, started at the first one."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, job: Callable[[], T]) -> T:
        """`job` in the worker; a partial of a module function, so that it pickles."""
        if self._pool is None:
            # spawn: a fork would copy the gateway's threads' locks (ONNX, FAISS, SQLite).
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        return await asyncio.get_running_loop().run_in_executor(self._pool, job)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
