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

# Every digit read as 0, so one search finds a run of 19 digits (2**64 has 20, -2**63 - 1
# has 19): a regular expression took half a second over a 30 MiB body, this a tenth of it.
DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
LONG_DIGIT_RUN = b"0" * 19


class BodyError(ValueError):
    """The body is not JSON a request can be: a 400 with this message and `param`."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def parse_json(raw: bytes, max_depth: int) -> Any:
    """The body's JSON, every integer exact; BodyError when it cannot be a request."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BodyError(f"request body is not valid JSON: {exc}") from None
    if json_depth_exceeds(body, max_depth):
        raise BodyError(f"request JSON is nested deeper than {max_depth} levels")
    if LONG_DIGIT_RUN in raw.translate(DIGITS_AS_ZERO):
        # orjson reads an integer past its range (below -2**63, above 2**64 - 1) as the
        # nearest float, and two such bodies would share a key: read these (now known
        # valid) exactly.
        try:
            body = json.loads(raw)
        except ValueError as exc:  # past Python's limit on the digits of an integer
            raise BodyError(f"a number in the request body is too long: {exc}") from None
    return body


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
