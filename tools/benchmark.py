"""`cachegate bench`: the speed figures of shared/BENCHMARKS.md, measured black-box.

Everything HTTP is measured from this process against real child processes on loopback:
the mock upstream (latency 0), `cachegate serve` with the shipped defaults, and a bare
aiohttp server answering from a dict (the ceiling). Gateway and reference are measured
side by side in each round, and every figure is the median over the rounds, because the
machine is shared and noisy. The index-scale figures are a library measurement, each size
in its own subprocess so its resident memory is clean.

`python -m tools.benchmark ceiling|index-scale ...` runs the two child roles.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from tools.processes import (
    REPO,
    GatewayProcess,
    MockUpstreamProcess,
    free_port,
    wait_for_text,
)
from tools.processes import stop as stop_process

if TYPE_CHECKING:  # the gateway is imported where a benchmark needs it
    from gateway.entries import Entry

MODEL = "gpt-4o-mini"
API_KEY = "sk-bench"
PAIRS_FILE = REPO.parent / "shared" / "data" / "qqp_dev.jsonl"
VERIFIER_MODEL = REPO / "embeddings" / "models" / "verifier.onnx"
WRK = "/usr/bin/wrk"
# `make bench VS=litellm` installs the LiteLLM proxy here, beside the project (not in it).
LITELLM = REPO / "bench" / ".litellm-venv" / "bin" / "litellm"
LITELLM_LATENCY_REQUESTS = 200  # it answers in tens of ms: enough for a p50
WRK_CONNECTIONS = 8
WRK_THREADS = 2
SEMANTIC_STORED = 1000
SEMANTIC_CONCURRENCY = 16
STORE_CONCURRENCY = 8
INDEX_DIM = 384
INDEX_QUERIES = 1000
# An index size not built and measured within this is reported as not measured. The 1M
# build took 212 s on one machine and ~410 s on a 2.5x slower one (2026-11-27).
INDEX_BUILD_BUDGET_SECONDS = 900.0
PHASE_SECONDS = 120.0  # no sequential measuring loop runs longer than this
MIN_TEXT_CHARS = 8  # the gateway's default semantic min_chars: shorter texts are exact-only

# Quoted from BENCHMARKS.md: measured earlier on this kind of machine, not in this run.
NAIVE_SEMANTIC_HIT_P50_MS = 15.8
NAIVE_SEMANTIC_HITS_PER_S = 74.0
NAIVE_MISS_OVERHEAD_MS = 16.5


# -- the plan ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BenchPlan:
    rounds: int
    wrk_seconds: float
    latency_requests: int
    miss_prompts: int
    stream_prompts: int
    semantic_throughput_seconds: float
    index_sizes: tuple[int, ...]
    startup_entries: int
    litellm: str | None = None  # the LiteLLM proxy executable to measure beside, if asked

    @classmethod
    def for_run(cls, quick: bool) -> BenchPlan:
        if quick:
            # Start-up at 25k entries (just past hnsw_from: an HNSW build) keeps it short.
            return cls(1, 5.0, 2000, 200, 150, 5.0, (10_000, 100_000), 25_000)
        return cls(3, 5.0, 2000, 300, 200, 5.0, (10_000, 100_000, 1_000_000), 100_000)


# -- statistics ----------------------------------------------------------------------------
def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; NaN for no values (a figure that could not be measured)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def median_of(rounds: Sequence[float]) -> float:
    finite = [v for v in rounds if v == v]  # NaN != NaN: a round that measured nothing
    return statistics.median(finite) if finite else float("nan")


def say(message: str) -> None:
    print(message, flush=True)


# -- the machine ---------------------------------------------------------------------------
def describe_machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "commit": commit or "unknown",
        # The gateway honours these; a run with any of them is not at the shipped defaults.
        "inherited_cachegate_env": sorted(k for k in os.environ if k.startswith("CACHEGATE_")),
    }


def resident_bytes() -> int:
    """This process's resident memory (VmRSS), from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


# -- a low-overhead HTTP/1.1 client ----------------------------------------------------------
@dataclass(slots=True)
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    seconds: float  # from sending the request to the last byte of the answer
    first_data_seconds: float | None  # to the first `data:` byte of a streamed answer


class KeepAliveClient:
    """One persistent connection on a blocking socket: a few microseconds per request of its
    own, the same for every server it measures, so differences are the servers'."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.port = port
        self._timeout = timeout
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=self._timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _receive(self, buffer: bytearray) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(262144)
        if not chunk:
            raise ConnectionError(f"127.0.0.1:{self.port} closed the connection mid-answer")
        buffer += chunk

    def _closed_by_server(self) -> bool:
        """Whether the idle connection was closed: readable between answers means EOF."""
        assert self._sock is not None
        readable, _, _ = select.select([self._sock], [], [], 0)
        if not readable:
            return False
        try:
            return self._sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def send(self, request: bytes) -> RawResponse:
        if self._sock is not None and self._closed_by_server():
            self.close()  # dropped while idle (uvicorn does after 5 s): connect again
        sock = self._sock or self._connect()
        started = time.perf_counter()
        sock.sendall(request)
        buffer = bytearray()
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            self._receive(buffer)
        lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        rest = buffer[end + 4 :]
        first_data: float | None = None
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(rest) < length:
                self._receive(rest)
            body = bytes(rest[:length])
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body, first_data = self._read_chunked(rest, started)
        else:  # the body ends when the server closes
            with contextlib.suppress(ConnectionError):
                while True:
                    self._receive(rest)
            body = bytes(rest)
            self.close()
        seconds = time.perf_counter() - started
        if headers.get("connection", "").lower() == "close":
            self.close()
        return RawResponse(status, headers, body, seconds, first_data)

    def _read_chunked(self, rest: bytearray, started: float) -> tuple[bytes, float | None]:
        body = bytearray()
        first_data: float | None = None
        position = 0

        def note_first_data() -> None:
            nonlocal first_data
            if first_data is None and b"data:" in rest:
                first_data = time.perf_counter() - started

        note_first_data()  # it may have come with the headers
        while True:
            while (line_end := rest.find(b"\r\n", position)) < 0:
                self._receive(rest)
                note_first_data()
            size = int(bytes(rest[position:line_end]).split(b";")[0], 16)
            data_start = line_end + 2
            while len(rest) < data_start + size + 2:
                self._receive(rest)
                note_first_data()
            body += rest[data_start : data_start + size]
            position = data_start + size + 2
            if size == 0:
                return bytes(body), first_data


def post_request(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The bytes of one keep-alive POST, built once and sent many times."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Authorization: Bearer {API_KEY}",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chat_body(text: str, stream: bool = False) -> bytes:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    """Some children announce themselves a moment before they accept connections."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing accepts connections on 127.0.0.1:{port}") from None
            time.sleep(0.05)


def expect(response: RawResponse, status: str | None = None, tier: str | None = None) -> None:
    if response.status != 200:
        raise RuntimeError(f"answer {response.status}: {response.body[:300]!r}")
    got = response.headers.get("x-cache-status"), response.headers.get("x-cache-tier")
    if (status and got[0] != status) or (tier and got[1] != tier):
        raise RuntimeError(f"expected X-Cache-Status {status} tier {tier}, got {got}")


# -- child processes -------------------------------------------------------------------------
class ChildProcess(Protocol):
    def stop(self) -> None: ...


Child = TypeVar("Child", bound=ChildProcess)


def launch(stack: contextlib.ExitStack, cls: type[Child], *args: Any, **kwargs: Any) -> Child:
    """Construct a process helper so that its child is stopped at the end even when the
    helper's own start-up wait fails (its constructor starts the child, then waits)."""
    helper = cls.__new__(cls)

    def stop_if_started() -> None:
        if getattr(helper, "process", None) is not None:
            helper.stop()

    stack.callback(stop_if_started)
    cls.__init__(helper, *args, **kwargs)
    return helper


class CeilingProcess:
    """The bare aiohttp server (this module's `ceiling` role) as a child process."""

    def __init__(self, work: Path, request_body: bytes, answer: bytes) -> None:
        self.port = free_port()
        (work / "ceiling-request.json").write_bytes(request_body)
        (work / "ceiling-answer.json").write_bytes(answer)
        self.log = work / "ceiling.log"
        self.process: subprocess.Popen | None = subprocess.Popen(
            [
                *[sys.executable, "-m", "tools.benchmark", "ceiling"],
                *["--port", str(self.port), "--work", str(work)],
            ],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        wait_for_text(self.process, self.log, "ceiling listening", timeout=30)
        wait_for_port(self.port)

    def stop(self) -> None:
        stop_process(self.process)


class LiteLLMProcess:
    """The LiteLLM proxy with its in-memory cache, in front of the same mock upstream: the
    peer of the exact-hit figures, measured in the same run (`cachegate bench --vs litellm`)."""

    def __init__(self, executable: str, work: Path, upstream: str) -> None:
        self.port = free_port()
        config = work / "litellm.yaml"
        route = {"model": f"openai/{MODEL}", "api_base": upstream, "api_key": API_KEY}
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "model_list": [{"model_name": MODEL, "litellm_params": route}],
                    "litellm_settings": {"cache": True, "cache_params": {"type": "local"}},
                }
            )
        )
        self.log = work / "litellm.log"
        self.process: subprocess.Popen | None = subprocess.Popen(
            [
                *[executable, "--config", str(config), "--host", "127.0.0.1"],
                *["--port", str(self.port), "--num_workers", "1"],
            ],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            cwd=work,
            # No master key, as the gateway has none: every request is let through.
            env={**os.environ, "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true"},
        )
        wait_for_text(self.process, self.log, "Proxy initialized", timeout=300)
        wait_for_port(self.port, timeout=60)

    def stop(self) -> None:
        stop_process(self.process)


def expect_litellm_hit(response: RawResponse) -> None:
    expect(response)
    if "x-litellm-cache-key" not in response.headers:  # its mark of an answer from the cache
        raise RuntimeError("the LiteLLM proxy did not answer a repeat from its cache")


def serve_ceiling(port: int, work: Path) -> None:
    """The ceiling for a Python gateway: read the POST, answer fixed bytes from a dict.
    The same Python, aiohttp and uvloop as `cachegate serve`, and nothing else."""
    import uvloop
    from aiohttp import web

    answers = {
        (work / "ceiling-request.json").read_bytes(): (work / "ceiling-answer.json").read_bytes()
    }

    async def answer(request: web.Request) -> web.Response:
        body = answers.get(await request.read())
        if body is None:
            return web.Response(status=404, text="not in the dict")
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None, handler_cancellation=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024, reuse_address=True).start()
        print(f"ceiling listening on http://127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()  # until SIGTERM ends the process

    uvloop.run(main())


# -- questions -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Questions:
    stored: list[str]  # text_a of duplicate pairs: stored in the semantic namespace
    twins: list[str]  # text_b of the same pairs: reworded, asked afterwards
    unique: list[str]  # other questions, for misses


def load_questions(path: Path, stored: int, unique: int) -> Questions:
    """Duplicate pairs whose two sides are distinct from every other text used."""
    seen: set[str] = set()
    pairs: list[tuple[str, str]] = []
    others: list[str] = []

    def usable(text: str) -> bool:
        return MIN_TEXT_CHARS <= len(text.strip()) <= 2000 and text.strip().lower() not in seen

    with path.open() as lines:
        for line in lines:
            row = json.loads(line)
            a, b = str(row["text_a"]).strip(), str(row["text_b"]).strip()
            if row["label"] == 1 and len(pairs) < stored:
                if usable(a) and usable(b) and a.lower() != b.lower():
                    pairs.append((a, b))
                    seen.update((a.lower(), b.lower()))
            elif row["label"] == 0 and len(others) < unique and usable(a):
                others.append(a)
                seen.add(a.lower())
            if len(pairs) >= stored and len(others) >= unique:
                break
    if len(pairs) < stored or len(others) < unique:
        raise SystemExit(f"cachegate bench: {path} has too few usable questions")
    return Questions([a for a, _ in pairs], [b for _, b in pairs], others)


# -- exact hits --------------------------------------------------------------------------------
@dataclass(slots=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers and socket errors


def lua_long_string(text: str) -> str:
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def write_wrk_script(path: Path, body: bytes) -> None:
    path.write_text(
        "wrk.method = 'POST'\n"
        f"wrk.body = {lua_long_string(body.decode())}\n"
        "wrk.headers['Content-Type'] = 'application/json'\n"
        f"wrk.headers['Authorization'] = 'Bearer {API_KEY}'\n"
    )


def run_wrk(port: int, script: Path, seconds: float) -> WrkResult:
    command = [
        *[WRK, f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds:g}s", "--latency"],
        *["-s", str(script), f"http://127.0.0.1:{port}/v1/chat/completions"],
    ]
    output = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=True
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rate is None:
        raise RuntimeError(f"wrk printed no rate:\n{output}")
    latencies = {}
    for share, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\b", output, re.M):
        latencies[share] = float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+)", output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return WrkResult(
        float(rate.group(1)),
        latencies.get("50", float("nan")),
        latencies.get("99", float("nan")),
        errors,
    )


def sequential_ms(
    client: KeepAliveClient, request: bytes, count: int, status: str | None = None
) -> list[float]:
    """Latencies of `count` back-to-back requests (bounded in time too); checks every answer."""
    deadline = time.monotonic() + PHASE_SECONDS
    responses = []
    for _ in range(count):
        responses.append(client.send(request))
        if time.monotonic() > deadline:
            break
    for response in responses:
        expect(response, status)
    return [r.seconds * 1000 for r in responses]


# -- misses and streams ------------------------------------------------------------------------
@dataclass(slots=True)
class MissRound:
    """Per-path samples (ms) of one round of unique prompts; paths that were not MISS are
    left out and counted."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    not_missed: Counter[str] = field(default_factory=Counter)


def miss_round(targets: Targets, prompts: list[str], namespace: str, stream: bool) -> MissRound:
    """Each prompt once through the gateway (default path and exact mode, each in its own
    fresh namespace) and once straight to the upstream, interleaved so noise hits all three."""
    paths = {
        "default": (
            targets.gateway,
            "/v1/chat/completions",
            {"X-Cache-Namespace": f"{namespace}-d"},
        ),
        "exact": (
            targets.gateway,
            "/v1/chat/completions",
            {"X-Cache-Namespace": f"{namespace}-e", "X-Cache-Mode": "exact"},
        ),
        "direct": (targets.upstream, "/v1/chat/completions", {}),
    }
    result = MissRound({name: [] for name in paths})
    deadline = time.monotonic() + PHASE_SECONDS
    names = list(paths)
    for i, prompt in enumerate(prompts):
        if time.monotonic() > deadline:
            break
        body = chat_body(prompt, stream)
        for name in names[i % 3 :] + names[: i % 3]:  # rotate the order: no path always first
            client, path, headers = paths[name]
            response = client.send(post_request(client.port, path, body, headers))
            expect(response)
            if name != "direct" and response.headers.get("x-cache-status") != "MISS":
                result.not_missed[name] += 1
                continue
            seconds = response.first_data_seconds if stream else response.seconds
            if seconds is None:
                raise RuntimeError(f"{name}: a streamed answer without any `data:` line")
            result.samples[name].append(seconds * 1000)
    return result


# -- semantic hits -----------------------------------------------------------------------------
async def post_all(
    port: int, bodies: list[bytes], headers: dict[str, str], concurrency: int
) -> list[tuple[int, str | None]]:
    """(HTTP status, X-Cache-Status) of each body, `concurrency` at a time."""
    import aiohttp

    results: list[tuple[int, str | None]] = [(0, None)] * len(bodies)
    slots = asyncio.Semaphore(concurrency)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    base = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(headers=base, timeout=timeout) as session:

        async def one(i: int, body: bytes) -> None:
            async with slots, session.post(url, data=body, headers=headers) as response:
                await response.read()
                results[i] = (response.status, response.headers.get("X-Cache-Status"))

        await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
    return results


async def semantic_hit_rate(
    port: int,
    bodies: list[bytes],
    headers: dict[str, str],
    warm: list[bytes],
    seconds: float | None,
) -> tuple[float, Counter[str]]:
    """Semantic hits per second with SEMANTIC_CONCURRENCY workers asking `bodies`, and the
    count of every (status, tier) seen. `seconds` None: each body once, so every ask is
    the first of its text in its namespace and runs the models; else round and round for
    that long (repeats: remembered verdicts). `warm` (requests that are no rewordings) opens
    the connections first, untimed."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    base = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}", **headers}
    connector = aiohttp.TCPConnector(limit=SEMANTIC_CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(headers=base, connector=connector, timeout=timeout) as session:
        counts: Counter[str] = Counter()
        queue: list[bytes] = []
        asked = 0

        async def worker(until: float) -> None:
            nonlocal asked
            while time.perf_counter() < until and asked < len(queue):
                body = queue[asked]
                asked += 1
                async with session.post(url, data=body) as response:
                    await response.read()
                    tier = response.headers.get("X-Cache-Tier") or "-"
                    counts[
                        f"{response.status} {response.headers.get('X-Cache-Status')} {tier}"
                    ] += 1

        async def run(work: list[bytes], until: float) -> None:
            nonlocal queue, asked
            queue, asked = work, 0
            await asyncio.gather(*(worker(until) for _ in range(SEMANTIC_CONCURRENCY)))

        await run(warm[: 2 * SEMANTIC_CONCURRENCY], time.perf_counter() + 2)
        counts.clear()
        started = time.perf_counter()
        if seconds is None:
            await run(bodies, started + PHASE_SECONDS)
        else:  # bounded in count as well as time
            await run(bodies * (int(seconds * 20_000) // len(bodies) + 1), started + seconds)
        elapsed = time.perf_counter() - started
    return counts["200 HIT semantic"] / elapsed, counts


# -- index scale (library, one subprocess per size) ---------------------------------------------
def bench_entry(
    i: int,
    body: bytes,
    text: str,
    vector: Any,
    created_at: float,
    context_key: str | None = None,
) -> Entry:
    """The i-th stored chat answer of a benchmark, a day to live."""
    from gateway.entries import Entry

    return Entry(
        key=f"{i:032x}",
        tenant="t_bench",
        namespace="default",
        endpoint="chat",
        model=MODEL,
        body=body,
        created_at=created_at,
        expires_at=created_at + 86400,
        context_key=context_key,
        text=text,
        vector=vector.tobytes(),
    )


def random_unit_vectors(rng: Any, count: int, dim: int) -> Any:
    import numpy as np

    vectors = rng.standard_normal((count, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def measure_index(size: int, queries: int) -> dict[str, Any]:
    """Load one partition of `size` random unit vectors as a start-up load does (one add,
    which returns once the vectors are searchable; past hnsw_from the HNSW index is then
    built on the index thread), wait for that build, then time single lookups. Runs in a
    fresh process (see `index-scale`)."""
    import faiss
    import numpy as np

    from gateway.config import SemanticConfig
    from gateway.semantic import SemanticIndex

    rng = np.random.default_rng(size)
    hnsw_from = SemanticConfig().hnsw_from
    rss_before = resident_bytes()
    vectors = np.empty((size, INDEX_DIM), dtype=np.float32)
    for start in range(0, size, 50_000):  # in slices: no float64 temporaries of it all
        count = min(50_000, size - start)
        vectors[start : start + count] = random_unit_vectors(rng, count, INDEX_DIM)
    keys = [f"{i:032x}" for i in range(size)]  # as long as real keys
    index = SemanticIndex(INDEX_DIM, hnsw_from)
    started = time.perf_counter()
    index.add_many("bench", keys, vectors)
    add_seconds = time.perf_counter() - started
    index.settle()
    build_seconds = time.perf_counter() - started
    del vectors, keys  # the index keeps its own copies
    rss_after = resident_bytes()
    probes = random_unit_vectors(rng, queries, INDEX_DIM)

    for probe in probes[:50]:  # warm-up
        index.search("bench", probe)
    lookups = []
    for probe in probes:
        started = time.perf_counter()
        index.search("bench", probe)
        lookups.append((time.perf_counter() - started) * 1000)
    return {
        "size": size,
        "kind": "hnsw" if size >= hnsw_from else "flat",
        "add_seconds": add_seconds,
        "build_seconds": build_seconds,
        "lookup_p50_ms": percentile(lookups, 0.5),
        "lookup_p99_ms": percentile(lookups, 0.99),
        "faiss_build_threads": faiss.omp_get_max_threads(),
        "bytes_per_entry": (rss_after - rss_before) / size,
        "rss_bytes": rss_after,
    }


def index_scale(size: int) -> dict[str, Any]:
    say(f"  index scale: {size:,} vectors ...")
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.benchmark", "index-scale", "--size", str(size)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        output, _ = process.communicate(timeout=INDEX_BUILD_BUDGET_SECONDS)
    except subprocess.TimeoutExpired:
        return {"size": size, "error": f"not built within {INDEX_BUILD_BUDGET_SECONDS:.0f}s"}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode != 0:
        return {"size": size, "error": f"exited {process.returncode}"}
    result = json.loads(output.strip().splitlines()[-1])
    say(
        f"    {result['kind']}: searchable after {result['add_seconds']:.1f}s, "
        f"built in {result['build_seconds']:.1f}s, "
        f"lookup p50 {result['lookup_p50_ms']:.3f} ms p99 {result['lookup_p99_ms']:.3f} ms, "
        f"{result['bytes_per_entry']:.0f} B/entry"
    )
    return result


# -- start-up ----------------------------------------------------------------------------------
def fill_entries_db(data_dir: Path, count: int) -> None:
    """`count` semantic entries in one partition, written through the store API."""
    import numpy as np

    from gateway.backends import StoreLimits
    from gateway.store import SqliteStore

    async def fill() -> None:
        store = SqliteStore(
            data_dir / "entries.db", StoreLimits(max_entries=10 * count, max_bytes=2**40)
        )
        rng = np.random.default_rng(7)
        now = time.time()
        for start in range(0, count, 10_000):
            vectors = random_unit_vectors(rng, min(10_000, count - start), INDEX_DIM)
            for offset, vector in enumerate(vectors):
                i = start + offset
                store.put(
                    bench_entry(
                        i,
                        b'{"id":"bench","object":"chat.completion","choices":[]}',
                        f"stored question number {i}",
                        vector,
                        created_at=now,
                        context_key="bench-startup",
                    )
                )
            await store.flush()
        await store.close()

    asyncio.run(fill())


# -- compression -------------------------------------------------------------------------------
COMPRESSION_ANSWERS = 300


def chat_answers(texts: list[str], count: int, seed: int = 11) -> list[bytes]:
    """`count` chat.completion bodies of 1-4 KB as OpenAI sends them: an opening line,
    paragraphs and a bulleted list of human-written sentences (Quora questions, the bench's
    only prose), the usual id, fingerprint and usage around them."""
    import random

    import orjson

    rng = random.Random(seed)
    answers = []
    for i in range(count):
        target = rng.randint(1000, 4000)
        parts = [f"Here is a short answer to your question about {rng.choice(texts)[:60]}"]
        while sum(map(len, parts)) < target - 600:
            if rng.random() < 0.3:
                parts.append("\n".join(f"- {rng.choice(texts)}" for _ in range(3)))
            else:
                parts.append(" ".join(rng.choice(texts) for _ in range(rng.randint(2, 5))))
        content = "\n\n".join(parts)
        answers.append(
            orjson.dumps(
                {
                    "id": f"chatcmpl-{rng.getrandbits(96):024x}",
                    "object": "chat.completion",
                    "created": 1764633600 + i,
                    "model": "gpt-4o-mini-2024-07-18",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": rng.randint(12, 200),
                        "completion_tokens": len(content) // 4,
                        "total_tokens": len(content) // 4 + 200,
                        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
                    },
                    "service_tier": "default",
                    "system_fingerprint": f"fp_{rng.getrandbits(40):010x}",
                }
            )
        )
    return answers


def measure_compression(pairs_file: Path = PAIRS_FILE) -> dict[str, Any]:
    """Bytes per stored entry with compression off and at the default bound, on realistic
    chat answers, as the stores count them (body, compared text, 384-float vector, overhead)."""
    import numpy as np

    from gateway.entries import BodyCodec
    from gateway.store import StoreLimits, stored_row

    with pairs_file.open() as lines:
        read = (json.loads(line)["text_a"].strip() for line in itertools.islice(lines, 5000))
        texts = [text for text in read if text]
    bodies = chat_answers(texts, COMPRESSION_ANSWERS)
    rng = np.random.default_rng(3)
    entries = [
        bench_entry(i, body, texts[i], random_unit_vectors(rng, 1, INDEX_DIM)[0], created_at=0.0)
        for i, body in enumerate(bodies)
    ]
    bound = StoreLimits().compress_min_bytes
    result: dict[str, Any] = {
        "answers": len(bodies),
        "answer_bytes_min": min(map(len, bodies)),
        "answer_bytes_max": max(map(len, bodies)),
        "compress_min_bytes": bound,
    }
    for name, codec in (("plain", BodyCodec(None)), ("zstd", BodyCodec(bound))):
        started = time.perf_counter()
        rows = [stored_row(entry, codec) for entry in entries]
        pack_us = (time.perf_counter() - started) / len(entries) * 1e6
        result[f"{name}_body_bytes_per_entry"] = sum(len(v["body"]) for v, _ in rows) / len(rows)
        result[f"{name}_stored_bytes_per_entry"] = sum(size for _, size in rows) / len(rows)
        result[f"{name}_pack_us"] = pack_us
    return result


def compression_line(result: dict[str, Any]) -> str:
    return (
        f"compression: {result['answers']} chat answers of {result['answer_bytes_min']:,}-"
        f"{result['answer_bytes_max']:,} B stored at {result['zstd_body_bytes_per_entry']:,.0f} B "
        f"a body instead of {result['plain_body_bytes_per_entry']:,.0f} "
        f"({result['zstd_body_bytes_per_entry'] / result['plain_body_bytes_per_entry']:.0%}); "
        f"with the compared text and vector {result['zstd_stored_bytes_per_entry']:,.0f} B an "
        f"entry instead of {result['plain_stored_bytes_per_entry']:,.0f}; "
        f"{result['zstd_pack_us']:.0f} us to pack one"
    )


def wait_for_line(gateway: GatewayProcess, line: re.Pattern[str], since: float) -> float | None:
    """Seconds from `since` until the gateway's log has `line`, or None if not within
    INDEX_BUILD_BUDGET_SECONDS."""
    while not line.search(gateway.log.read_text(errors="replace")):
        if time.perf_counter() - since > INDEX_BUILD_BUDGET_SECONDS:
            return None
        time.sleep(0.2)
    return time.perf_counter() - since


def measure_startup(work: Path, count: int, env: dict[str, str]) -> dict[str, Any]:
    """How long a gateway takes to listen on `count` stored semantic entries, and to have
    their HNSW index built (in the background, once it listens) and saved; then the same
    for a restart, which serves from the saved index."""
    say(f"  start-up: filling entries.db with {count:,} semantic entries ...")
    data_dir = work / "startup" / "data"
    data_dir.mkdir(parents=True)
    started = time.perf_counter()
    fill_entries_db(data_dir, count)
    say(f"    filled in {time.perf_counter() - started:.1f}s; starting cachegate serve on it ...")
    built = re.compile(rf"HNSW index of {count} vectors built in ([\d.]+)s")
    with contextlib.ExitStack() as stack:
        started = time.perf_counter()
        # Nothing is asked of the upstream: the process is stopped once its index is saved.
        gateway = launch(stack, GatewayProcess, data_dir, "http://127.0.0.1:9/v1", env=env)
        ready = time.perf_counter() - started
        hnsw_ready = wait_for_line(gateway, built, started)
        wait_for_line(gateway, re.compile(rf"index of {count} vectors saved"), started)
        gateway.stop()
        first_log = gateway.log.read_text(errors="replace")
        started = time.perf_counter()
        gateway.start()
        restart_ready = time.perf_counter() - started
        restart_log = gateway.log.read_text(errors="replace")[len(first_log) :]
    loaded = re.search(
        r"semantic index: (\d+) vectors in \d+ partitions?, loaded in ([\d.]+)s", first_log
    )
    result: dict[str, Any] = {
        "entries": count,
        "ready_seconds": ready,
        "restart_ready_seconds": restart_ready,
        # Nothing was stored meanwhile, so the saved HNSW index serves as soon as it listens.
        "restart_reused_saved_index": f"reusing its saved index ({count} kept" in restart_log,
    }
    if loaded:
        result.update(vectors=int(loaded.group(1)), load_seconds=float(loaded.group(2)))
    if hnsw_ready is not None and (hnsw := built.search(first_log)):
        result.update(hnsw_ready_seconds=hnsw_ready, hnsw_build_seconds=float(hnsw.group(1)))
    say(
        f"    listening after {ready:.1f}s (vectors loaded in "
        f"{result.get('load_seconds', float('nan')):.1f}s); HNSW index ready after "
        f"{result.get('hnsw_ready_seconds', float('nan')):.1f}s"
    )
    say(
        f"    restarted: listening after {restart_ready:.1f}s, "
        + (
            "serving from the saved HNSW index"
            if result["restart_reused_saved_index"]
            else "the saved index was NOT reused"
        )
    )
    return result


# -- the report --------------------------------------------------------------------------------
@dataclass(slots=True)
class Row:
    figure: str
    measured: str
    goal: str = ""
    met: bool | None = None
    compared_with: str = ""
    ratio: str = ""
    spread: str = ""  # (max - min) / median over the rounds


def spread(rounds: Sequence[float]) -> str:
    finite = [v for v in rounds if v == v]
    if len(finite) < 2 or not median_of(finite):
        return ""
    return f"±{(max(finite) - min(finite)) / abs(median_of(finite)) / 2 * 100:.0f}%"


def ms(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f} ms" if abs(value) < 10 else f"{value:.1f} ms"


def print_table(machine: dict[str, Any], rows: list[Row], notes: list[str]) -> None:
    say("")
    say(
        f"cachegate bench — {machine['date']} — {machine['cpu']}, {machine['cores']} cores, "
        f"Python {machine['python']}, commit {machine['commit']}, "
        f"load average at start {machine['load_average_at_start'][0]}"
    )
    headers = ("figure", "measured", "goal", "met", "compared with", "ratio", "spread")
    cells = [
        (
            r.figure,
            r.measured,
            r.goal,
            "" if r.met is None else "yes" if r.met else "NO",
            r.compared_with,
            r.ratio,
            r.spread,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    say(line)
    say("-" * len(line))
    for cell in cells:
        say("  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)).rstrip())
    for note in notes:
        say(f"note: {note}")


def without_nan(value: Any) -> Any:
    """JSON has no NaN: a figure that could not be measured becomes null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nan(v) for v in value]
    return value


def ratio(numerator: float, denominator: float) -> str:
    if numerator != numerator or denominator != denominator or not denominator:
        return ""
    return f"{numerator / denominator:.2f}"


# -- the run -----------------------------------------------------------------------------------
@dataclass(slots=True)
class Results:
    """Per-round raw figures, filled phase by phase; the table and JSON are made from it."""

    rounds: dict[str, list[float]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.rounds.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return median_of(self.rounds.get(name, []))


@dataclass(slots=True)
class Targets:
    """The running servers of the HTTP figures, each with its keep-alive client."""

    gateway: KeepAliveClient
    upstream: KeepAliveClient
    ceiling: KeepAliveClient
    hit_body: bytes  # the one cached request of the exact-hit figures
    wrk_script: Path
    litellm: KeepAliveClient | None  # the LiteLLM proxy, when measured side by side


def measure_http(plan: BenchPlan, work: Path, env: dict[str, str], results: Results) -> None:
    questions = load_questions(PAIRS_FILE, SEMANTIC_STORED, plan.miss_prompts + plan.stream_prompts)
    with contextlib.ExitStack() as stack:
        say("starting the mock upstream and cachegate serve (shipped defaults) ...")
        upstream = launch(stack, MockUpstreamProcess, work, 0)
        wait_for_port(upstream.port)
        started = time.perf_counter()
        gateway = launch(stack, GatewayProcess, work / "data", upstream.url, env=env)
        results.facts["gateway_ready_seconds_empty"] = time.perf_counter() - started
        say(f"  gateway ready in {results.facts['gateway_ready_seconds_empty']:.1f}s")
        gateway_client = stack.enter_context(contextlib.closing(KeepAliveClient(gateway.port)))
        hit_body = chat_body("What is the capital of France, and why is it there?")
        hit_request = post_request(gateway.port, "/v1/chat/completions", hit_body, {})
        expect(gateway_client.send(hit_request), "MISS")
        cached = gateway_client.send(hit_request)
        expect(cached, "HIT", "exact")
        # The ceiling answers the very bytes the gateway serves for that request.
        ceiling = launch(stack, CeilingProcess, work, hit_body, cached.body)
        litellm = None
        if plan.litellm is not None:
            say("starting the LiteLLM proxy (in-memory cache) on the same mock upstream ...")
            proxy = launch(stack, LiteLLMProcess, plan.litellm, work, upstream.url)
            litellm = stack.enter_context(contextlib.closing(KeepAliveClient(proxy.port)))
            request = post_request(proxy.port, "/v1/chat/completions", hit_body, {})
            expect(litellm.send(request))
            expect_litellm_hit(litellm.send(request))
        targets = Targets(
            gateway_client,
            stack.enter_context(contextlib.closing(KeepAliveClient(upstream.port))),
            stack.enter_context(contextlib.closing(KeepAliveClient(ceiling.port))),
            hit_body,
            work / "exact-hit.lua",
            litellm,
        )
        write_wrk_script(targets.wrk_script, hit_body)
        ceiling_request = post_request(ceiling.port, "/v1/chat/completions", hit_body, {})
        if targets.ceiling.send(ceiling_request).body != cached.body:
            raise RuntimeError("the ceiling does not answer the gateway's cached bytes")

        for round_number in range(1, plan.rounds + 1):
            exact_hit_round(plan, targets, round_number, results)
            for stream in (False, True):
                miss_rounds(plan, targets, questions, round_number, stream, results)
        # Without the verifier model the gateway runs the cosine verifier: no models to time.
        models = ModelsAlone.load() if VERIFIER_MODEL.exists() else None
        semantic_hits(plan, gateway.port, gateway_client, questions, models, results)
        say("stopping the gateway, the mock upstream and the ceiling ...")


def exact_hit_round(plan: BenchPlan, targets: Targets, round_number: int, results: Results) -> None:
    # Alternate who goes first, so a drift in the machine's load favours neither.
    servers = [("gateway", targets.gateway, "HIT"), ("ceiling", targets.ceiling, None)]
    if targets.litellm is not None:
        servers.append(("litellm", targets.litellm, None))
    if round_number % 2 == 0:
        servers.reverse()
    say(f"round {round_number}/{plan.rounds}: exact-hit latency, concurrency 1 ...")
    for name, client, status in servers:
        request = post_request(client.port, "/v1/chat/completions", targets.hit_body, {})
        count = LITELLM_LATENCY_REQUESTS if name == "litellm" else plan.latency_requests
        sequential_ms(client, request, count // 10, status)  # warm-up
        samples = sequential_ms(client, request, count, status)
        results.add(f"exact_latency_p50_ms.{name}", percentile(samples, 0.5))
        results.add(f"exact_latency_p99_ms.{name}", percentile(samples, 0.99))
    say(
        f"  gateway p50 {ms(results.rounds['exact_latency_p50_ms.gateway'][-1])}, "
        f"ceiling p50 {ms(results.rounds['exact_latency_p50_ms.ceiling'][-1])}"
    )
    say(
        f"round {round_number}/{plan.rounds}: exact-hit throughput, "
        f"wrk {plan.wrk_seconds:g}s each ..."
    )
    for name, client, _ in servers:
        measured = run_wrk(client.port, targets.wrk_script, plan.wrk_seconds)
        if measured.errors:
            raise RuntimeError(f"wrk against the {name}: {measured.errors} failed requests")
        results.add(f"exact_rps.{name}", measured.requests_per_second)
        results.add(f"exact_wrk_p50_ms.{name}", measured.p50_ms)
        say(f"  {name}: {measured.requests_per_second:,.0f} req/s (wrk p50 {ms(measured.p50_ms)})")
    # wrk sees only status codes: check the gateway still answers that request from the cache.
    request = post_request(targets.gateway.port, "/v1/chat/completions", targets.hit_body, {})
    expect(targets.gateway.send(request), "HIT", "exact")
    if targets.litellm is not None:
        request = post_request(targets.litellm.port, "/v1/chat/completions", targets.hit_body, {})
        expect_litellm_hit(targets.litellm.send(request))


def miss_rounds(
    plan: BenchPlan,
    targets: Targets,
    questions: Questions,
    round_number: int,
    stream: bool,
    results: Results,
) -> None:
    kind = "stream" if stream else "miss"
    split = plan.miss_prompts
    prompts = questions.unique[split:] if stream else questions.unique[:split]
    say(
        f"round {round_number}/{plan.rounds}: {'streamed' if stream else 'plain'} misses, "
        f"{len(prompts)} unique prompts ..."
    )
    # Warm every path (connections, first-call costs) in a throwaway namespace.
    miss_round(targets, prompts[:10], f"warm-{kind}-{round_number}", stream)
    measured = miss_round(targets, prompts, f"bench-{kind}-{round_number}", stream)
    direct = percentile(measured.samples["direct"], 0.5)
    results.add(f"{kind}_direct_p50_ms", direct)
    for path in ("default", "exact"):
        p50 = percentile(measured.samples[path], 0.5)
        results.add(f"{kind}_{path}_p50_ms", p50)
        results.add(f"{kind}_{path}_overhead_ms", p50 - direct)
        results.add(f"{kind}_{path}_not_missed", measured.not_missed[path])
    say(
        f"  {'first byte' if stream else 'answer'} p50: direct {ms(direct)}; through the "
        f"gateway {ms(results.rounds[f'{kind}_default_p50_ms'][-1])} (default path), "
        f"{ms(results.rounds[f'{kind}_exact_p50_ms'][-1])} (exact mode)"
    )


@dataclass(slots=True)
class ModelsAlone:
    """The shipped embedder and verifier in the bench process, as the gateway runs them at
    its defaults: what a first ask costs on this machine before any gateway work, the floor
    under the semantic figures (the models are most of a first ask)."""

    embedder: Any
    verifier: Any
    workers: int

    @classmethod
    def load(cls) -> ModelsAlone:
        from embeddings.onnx_minilm import OnnxMiniLMEmbedder
        from embeddings.verifier import CrossEncoderVerifier
        from gateway.config import SemanticConfig

        semantic = SemanticConfig()
        threads, idle_threads = semantic.threads, semantic.idle_threads
        return cls(
            OnnxMiniLMEmbedder.load(threads=threads, idle_threads=idle_threads),
            CrossEncoderVerifier.load(threads=threads, idle_threads=idle_threads),
            semantic.worker_count,
        )

    def first_ask(self, asked: str, stored: str, stored_vector: Any, wide: bool) -> float:
        """One first ask, as the gateway runs it: the asked text embedded, the pair scored."""
        from embeddings.verifier import Candidate
        from policies.prompts import decompose, request_overlap

        vector = self.embedder.encode([asked], wide)[0]
        overlap = request_overlap(decompose(asked), decompose(stored))
        cosine = float(vector @ stored_vector)
        # Whether a word was swapped changes the score, not the time: read as not.
        return float(
            self.verifier.scores([Candidate(asked, stored, cosine, overlap, False)], wide)[0]
        )

    def measure(self, asked: list[str], stored: list[str], results: Results) -> None:
        """Each pair's first ask alone, on `idle_threads` (the gateway at concurrency 1),
        then all of them on `workers` threads at once (the gateway under load)."""
        from concurrent.futures import ThreadPoolExecutor

        vectors = self.embedder.encode(stored)
        embed_ms, ask_ms = [], []
        for text, match, vector in zip(asked, stored, vectors, strict=True):
            started = time.perf_counter()
            self.embedder.encode([text], True)
            embed_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            self.first_ask(text, match, vector, True)
            ask_ms.append((time.perf_counter() - started) * 1000)
        results.add("models_embed_p50_ms", percentile(embed_ms, 0.5))
        results.add("models_first_ask_p50_ms", percentile(ask_ms, 0.5))
        started = time.perf_counter()
        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(self.first_ask, asked, stored, vectors, [False] * len(asked)))
        results.add("models_first_asks_per_s", len(asked) / (time.perf_counter() - started))
        say(
            f"  models alone: embedding p50 {ms(results.rounds['models_embed_p50_ms'][-1])}, "
            f"first ask p50 {ms(results.rounds['models_first_ask_p50_ms'][-1])}; "
            f"{results.rounds['models_first_asks_per_s'][-1]:,.0f} first asks/s "
            f"on {self.workers} threads"
        )


def semantic_hits(
    plan: BenchPlan,
    port: int,
    client: KeepAliveClient,
    questions: Questions,
    models: ModelsAlone | None,
    results: Results,
) -> None:
    """Reworded questions, asked for the first time (the models run) and repeated.

    A repeat of a matched request reuses its verdict without running the models, so each
    round stores the questions afresh in namespaces of its own: one for the latency at
    concurrency 1 (then the twins that hit are asked once more: repeats), one for the
    throughput at concurrency 16 (the twins that hit, each asked once, then round and
    round: repeats). Verdicts are deterministic, so the same twins hit in both.
    """
    # A twin that misses must not be stored, or it would later be found exactly.
    twin_headers = {"Cache-Control": "no-store"}
    for round_number in range(1, plan.rounds + 1):
        latency_space = {**twin_headers, "X-Cache-Namespace": f"bench-semantic-{round_number}"}
        store_questions(port, questions.stored, latency_space)
        say(
            f"round {round_number}/{plan.rounds}: semantic-hit latency, "
            f"{len(questions.twins)} reworded questions, each asked for the first time ..."
        )
        requests = [
            post_request(port, "/v1/chat/completions", chat_body(t), latency_space)
            for t in questions.twins
        ]
        latencies, hits, tiers = semantic_latencies(client, requests)
        results.add("semantic_p50_ms", percentile(latencies, 0.5))
        results.add("semantic_p99_ms", percentile(latencies, 0.99))
        results.add("semantic_hit_fraction", len(latencies) / max(sum(tiers.values()), 1))
        results.facts.setdefault("semantic_outcomes", []).append(dict(tiers))
        say(
            f"  {len(latencies)}/{sum(tiers.values())} semantic hits ({dict(tiers)}); "
            f"p50 {ms(results.rounds['semantic_p50_ms'][-1])}, "
            f"p99 {ms(results.rounds['semantic_p99_ms'][-1])}"
        )
        if not hits:
            say("  no question hit: nothing to repeat")
            continue
        repeats, _, repeat_tiers = semantic_latencies(client, [requests[i] for i in hits])
        results.add("semantic_repeat_p50_ms", percentile(repeats, 0.5))
        say(
            f"  the {len(hits)} hits asked again: p50 "
            f"{ms(results.rounds['semantic_repeat_p50_ms'][-1])} ({dict(repeat_tiers)})"
        )

        burst_space = {**twin_headers, "X-Cache-Namespace": f"bench-burst-{round_number}"}
        store_questions(port, questions.stored, burst_space)
        hit_bodies = [chat_body(questions.twins[i]) for i in hits]
        stored_bodies = [chat_body(q) for q in questions.stored]  # exact hits: the warm-up
        for name, seconds in (
            ("semantic_hits_per_s", None),
            ("semantic_repeat_hits_per_s", plan.semantic_throughput_seconds),
        ):
            say(
                f"round {round_number}/{plan.rounds}: semantic-hit throughput, concurrency "
                f"{SEMANTIC_CONCURRENCY}, "
                + (
                    f"{len(hit_bodies)} first asks ..."
                    if seconds is None
                    else f"repeats for {seconds:g}s ..."
                )
            )
            rate, counts = asyncio.run(
                semantic_hit_rate(port, hit_bodies, burst_space, stored_bodies, seconds)
            )
            results.add(name, rate)
            results.facts.setdefault(f"{name}_outcomes", []).append(dict(counts))
            say(f"  {rate:,.0f} semantic hits/s ({dict(counts)})")
        if models is not None:
            say(f"round {round_number}/{plan.rounds}: the same first asks, models alone ...")
            models.measure(
                [questions.twins[i] for i in hits], [questions.stored[i] for i in hits], results
            )


def store_questions(port: int, texts: list[str], headers: dict[str, str]) -> None:
    """Store each text's answer in the headers' namespace (Cache-Control: no-cache, so each
    is stored even when it resembles another)."""
    say(f"semantic: storing {len(texts)} questions in {headers['X-Cache-Namespace']} ...")
    started = time.perf_counter()
    stored = asyncio.run(
        post_all(
            port,
            [chat_body(q) for q in texts],
            {**headers, "Cache-Control": "no-cache"},
            STORE_CONCURRENCY,
        )
    )
    failed = [s for s in stored if s != (200, "REFRESH")]
    if failed:
        raise RuntimeError(
            f"storing the semantic questions: {len(failed)} failed, e.g. {failed[0]}"
        )
    say(f"  stored in {time.perf_counter() - started:.1f}s")


def semantic_latencies(
    client: KeepAliveClient, requests: list[bytes]
) -> tuple[list[float], list[int], Counter[str]]:
    """Ask each request once at concurrency 1: the latencies (ms) of the semantic hits, the
    positions of the requests that were semantic hits, and the count of every (status,
    tier) seen."""
    deadline = time.monotonic() + PHASE_SECONDS
    latencies: list[float] = []
    hits: list[int] = []
    tiers: Counter[str] = Counter()
    for position, request in enumerate(requests):
        if time.monotonic() > deadline:
            break
        response = client.send(request)
        expect(response)
        headers = response.headers
        tier = f"{headers.get('x-cache-status')} {headers.get('x-cache-tier', '-')}"
        tiers[tier] += 1
        if tier == "HIT semantic":
            latencies.append(response.seconds * 1000)
            hits.append(position)
    return latencies, hits, tiers


def latency_row(
    results: Results,
    figure: str,
    name: str,
    limit_ms: float | None = None,
    compared_with: str = "",
    reference_ms: float = float("nan"),
) -> Row:
    """A latency figure against its goal (at most `limit_ms`, when it has one)."""
    value = results.median(name)
    return Row(
        figure,
        ms(value),
        "" if limit_ms is None else f"<= {limit_ms:g} ms",
        None if limit_ms is None else value <= limit_ms,
        compared_with,
        ratio(value, reference_ms),
        spread(results.rounds.get(name, [])),
    )


def build_rows(
    results: Results, index_results: list[dict[str, Any]], startup: dict[str, Any] | None
) -> list[Row]:
    r = results.rounds
    m = results.median
    gateway_rps, ceiling_rps = m("exact_rps.gateway"), m("exact_rps.ceiling")
    share = [
        g / c
        for g, c in zip(r.get("exact_rps.gateway", []), r.get("exact_rps.ceiling", []), strict=True)
    ]
    rows = [
        Row(
            "exact-hit throughput (wrk, 8 conn)",
            f"{gateway_rps:,.0f} req/s",
            ">= 0.5 x ceiling",
            median_of(share) >= 0.5,
            f"bare aiohttp {ceiling_rps:,.0f} req/s",
            f"{median_of(share):.2f}",
            spread(share),
        ),
        *(
            latency_row(
                results,
                f"exact-hit latency {share} (c=1)",
                f"exact_latency_{share}_ms.gateway",
                limit,
                f"bare aiohttp {share} {ms(m(f'exact_latency_{share}_ms.ceiling'))}",
                m(f"exact_latency_{share}_ms.ceiling"),
            )
            for share, limit in (("p50", 1.0), ("p99", None))
        ),
    ]
    if "exact_rps.litellm" in r:
        litellm_rps, litellm_p50 = m("exact_rps.litellm"), m("exact_latency_p50_ms.litellm")
        rows += [
            Row(
                "exact-hit throughput vs LiteLLM proxy",
                f"{gateway_rps:,.0f} req/s",
                "(side by side)",
                None,
                f"LiteLLM proxy, in-memory cache: {litellm_rps:,.0f} req/s",
                f"{gateway_rps / litellm_rps:.1f}",
            ),
            Row(
                "exact-hit latency p50 (c=1) vs LiteLLM proxy",
                ms(m("exact_latency_p50_ms.gateway")),
                "(side by side)",
                None,
                f"LiteLLM proxy {ms(litellm_p50)}",
                f"{m('exact_latency_p50_ms.gateway') / litellm_p50:.3f}",
            ),
        ]
    fraction = m("semantic_hit_fraction")
    rows += [
        latency_row(
            results,
            "semantic-hit latency p50 (c=1, 1k stored)",
            "semantic_p50_ms",
            10.0,
            f"ref: naive cache {NAIVE_SEMANTIC_HIT_P50_MS} ms",
            NAIVE_SEMANTIC_HIT_P50_MS,
        ),
        latency_row(results, "semantic-hit latency p99 (c=1)", "semantic_p99_ms"),
        latency_row(
            results,
            "repeated rewording latency p50 (c=1)",
            "semantic_repeat_p50_ms",
            compared_with="(insight) the same hits asked again: the verdict is reused",
        ),
        Row(
            "semantic hits among reworded twins",
            "n/a" if fraction != fraction else f"{fraction * 100:.1f}%",
            "",
            None,
            "only these count toward the latency",
        ),
        Row(
            "semantic-hit throughput (c=16, first asks)",
            f"{m('semantic_hits_per_s'):,.0f} hits/s",
            ">= 300/s",
            m("semantic_hits_per_s") >= 300,
            f"ref: naive cache {NAIVE_SEMANTIC_HITS_PER_S:g}/s",
            ratio(m("semantic_hits_per_s"), NAIVE_SEMANTIC_HITS_PER_S),
            spread(r.get("semantic_hits_per_s", [])),
        ),
        Row(
            "models alone: first asks/s (all cores)",
            f"{m('models_first_asks_per_s'):,.0f}/s",
            "(insight)",
            None,
            "the semantic-hit throughput's share of it",
            ratio(m("semantic_hits_per_s"), m("models_first_asks_per_s")),
            spread(r.get("models_first_asks_per_s", [])),
        ),
        Row(
            "models alone: first ask / embedding p50 (c=1)",
            f"{ms(m('models_first_ask_p50_ms'))} / {ms(m('models_embed_p50_ms'))}",
            "(insight)",
            None,
            "floors under the semantic-hit p50 / a default-path miss (ratio: the former)",
            ratio(m("semantic_p50_ms"), m("models_first_ask_p50_ms")),
        ),
        Row(
            "repeated rewordings throughput (c=16)",
            f"{m('semantic_repeat_hits_per_s'):,.0f} hits/s",
            "(insight)",
            None,
            f"ref: naive cache {NAIVE_SEMANTIC_HITS_PER_S:g}/s",
            ratio(m("semantic_repeat_hits_per_s"), NAIVE_SEMANTIC_HITS_PER_S),
            spread(r.get("semantic_repeat_hits_per_s", [])),
        ),
    ]
    for kind, label, goal, limit in (
        ("miss", "miss overhead p50", "<= 15 ms", 15.0),
        ("stream", "stream first-byte overhead p50", "<= 2 ms", 2.0),
    ):
        direct = m(f"{kind}_direct_p50_ms")
        for path in ("default", "exact"):
            overhead = m(f"{kind}_{path}_overhead_ms")
            rows.append(
                Row(
                    f"{label} ({'default path' if path == 'default' else 'X-Cache-Mode: exact'})",
                    "n/a" if overhead != overhead else f"+{ms(overhead)}",
                    goal if path == "default" else "(insight)",
                    overhead <= limit if path == "default" else None,
                    f"upstream direct p50 {ms(direct)}",
                    ratio(m(f"{kind}_{path}_p50_ms"), direct),
                    spread(r.get(f"{kind}_{path}_overhead_ms", [])),
                )
            )
    for found in index_results:
        size = found["size"]
        name = f"index {size // 1000:,}k" if size < 1_000_000 else f"index {size // 1_000_000}M"
        if "error" in found:
            rows.append(Row(f"{name} lookup", f"not measured: {found['error']}"))
            continue
        rows.append(
            Row(
                f"{name} ({found['kind']}) lookup p50 / p99",
                f"{found['lookup_p50_ms']:.3f} / {found['lookup_p99_ms']:.3f} ms",
                "p99 <= 2 ms" if size >= 1_000_000 else "",
                found["lookup_p99_ms"] <= 2.0 if size >= 1_000_000 else None,
                f"searchable {found['add_seconds']:.1f}s, built {found['build_seconds']:.1f}s "
                f"on {found['faiss_build_threads']} threads, "
                f"{found['bytes_per_entry']:,.0f} B/entry",
            )
        )
    if startup is not None:
        if "error" in startup:
            rows.append(Row("start-up", f"not measured: {startup['error']}"))
        else:
            hnsw = startup.get("hnsw_ready_seconds")
            empty = results.facts.get("gateway_ready_seconds_empty", float("nan"))
            rows.append(
                Row(
                    f"start-up, {startup['entries'] // 1000}k entries: listening / HNSW ready",
                    f"{startup['ready_seconds']:.1f} s / "
                    + ("n/a" if hnsw is None else f"{hnsw:.1f} s"),
                    "(reported)",
                    None,
                    f"empty data dir {empty:.1f}s; exact search until the HNSW is built",
                )
            )
            restarted = startup["restart_ready_seconds"]
            rows.append(
                Row(
                    "restart on the saved index: listening / HNSW ready",
                    f"{restarted:.1f} s / "
                    + (f"{restarted:.1f} s" if startup["restart_reused_saved_index"] else "n/a"),
                    "(reported)",
                    None,
                    "the first start's figures above",
                )
            )
    return rows


def gateway_env() -> tuple[dict[str, str], list[str]]:
    """The shipped defaults, except the cosine verifier while the verifier model is absent."""
    if VERIFIER_MODEL.exists():
        return {}, []
    warning = (
        f"{VERIFIER_MODEL.relative_to(REPO)} is missing: measured with "
        "CACHEGATE_SEMANTIC_VERIFIER=cosine, not the shipped cross-encoder"
    )
    return {"CACHEGATE_SEMANTIC_VERIFIER": "cosine"}, [warning]


def run_bench(args: argparse.Namespace) -> None:
    """`cachegate bench [--quick] [--json FILE] [--vs litellm]`: measure, print the table,
    maybe write JSON."""
    plan = BenchPlan.for_run(bool(args.quick))
    if args.vs == "litellm":
        if not LITELLM.exists():
            raise SystemExit(
                f"cachegate bench: {LITELLM} is missing; `make bench VS=litellm` installs it"
            )
        plan = dataclasses.replace(plan, litellm=str(LITELLM))
    machine = describe_machine()
    env, notes = gateway_env()
    for warning in notes:
        say(f"WARNING: {warning}")
    if machine["inherited_cachegate_env"]:
        notes.append("inherited by the gateway: " + ", ".join(machine["inherited_cachegate_env"]))
    if not Path(WRK).exists():
        raise SystemExit(f"cachegate bench: {WRK} is missing (apt-get install wrk)")
    say(
        f"cachegate bench: {plan.rounds} round(s) on {machine['cpu']} ({machine['cores']} cores), "
        f"load average {machine['load_average_at_start'][0]}"
    )
    # A SIGTERM (a CI timeout, `kill`) ends the run as Ctrl-C does, through the cleanup
    # that stops every process it started, rather than leaving them running.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    work = Path(tempfile.mkdtemp(prefix="cachegate-bench-"))
    results = Results()
    index_results: list[dict[str, Any]] = []
    startup: dict[str, Any] | None = None
    compression: dict[str, Any] | None = None
    began = time.monotonic()
    keep_logs = False
    try:
        measure_http(plan, work, env, results)
        say("index scale (library, one subprocess per size) ...")
        index_results = [index_scale(size) for size in plan.index_sizes]
        try:
            startup = measure_startup(work, plan.startup_entries, env)
        except Exception as exc:  # a figure that failed is reported, not the run lost
            startup = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        try:
            compression = measure_compression()
            say(f"  {compression_line(compression)}")
            notes.append(compression_line(compression))
        except Exception as exc:  # as for start-up: reported, not the run lost
            compression = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    except KeyboardInterrupt:
        say("\ncachegate bench: interrupted; every process it started has been stopped")
        raise SystemExit(130) from None
    except Exception:
        keep_logs = True
        say(f"cachegate bench: failed; the processes' logs are kept in {work}")
        raise
    finally:
        if not keep_logs:
            shutil.rmtree(work, ignore_errors=True)
    for name in ("semantic_hits_per_s", "semantic_repeat_hits_per_s"):
        for outcomes in results.facts.get(f"{name}_outcomes", [])[:1]:
            flipped = sum(n for outcome, n in outcomes.items() if outcome != "200 HIT semantic")
            if flipped:
                notes.append(
                    f"{name}: {flipped} of {sum(outcomes.values())} asks of twins that were "
                    f"semantic hits at concurrency 1 were not at concurrency "
                    f"{SEMANTIC_CONCURRENCY} ({outcomes})"
                )
    notes.append(
        "ratio: the gateway's figure over the compared one (for overhead rows: gateway p50 over "
        "direct p50); 'ref:' figures are quoted from BENCHMARKS.md, not measured in this run"
    )
    notes.append(
        "quoted from BENCHMARKS.md: LiteLLM proxy, cached, 120-150 req/s with p50 51-57 ms at "
        f"8 connections; naive semantic cache miss +{NAIVE_MISS_OVERHEAD_MS} ms"
        + ("" if plan.litellm else "; `make bench VS=litellm` measures LiteLLM in the run")
    )
    notes.append(
        f"took {time.monotonic() - began:.0f}s; load average at end {os.getloadavg()[0]:.2f}"
    )
    rows = build_rows(results, index_results, startup)
    print_table(machine, rows, notes)
    if args.json:
        report = {
            "machine": machine,
            "plan": dataclasses.asdict(plan),
            "rows": [dataclasses.asdict(row) for row in rows],
            "medians": {name: results.median(name) for name in results.rounds},
            "rounds": results.rounds,
            "facts": results.facts,
            "index_scale": index_results,
            "startup": startup,
            "compression": compression,
            "notes": notes,
        }
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(without_nan(report), indent=2))
        say(f"wrote {args.json}")


# -- the child roles ---------------------------------------------------------------------------
def child_main(argv: list[str]) -> None:
    top = argparse.ArgumentParser(prog="python -m tools.benchmark")
    roles = top.add_subparsers(dest="role", required=True)
    ceiling = roles.add_parser("ceiling", help="the bare aiohttp server")
    ceiling.add_argument("--port", type=int, required=True)
    ceiling.add_argument("--work", type=Path, required=True)
    scale = roles.add_parser("index-scale", help="build and probe one SemanticIndex")
    scale.add_argument("--size", type=int, required=True)
    args = top.parse_args(argv)
    if args.role == "ceiling":
        serve_ceiling(args.port, args.work)
    else:
        print(json.dumps(measure_index(args.size, INDEX_QUERIES)), flush=True)


if __name__ == "__main__":
    child_main(sys.argv[1:])
