"""The request path, top to bottom. Read this file to know what happens to a request.

POST /v1/chat/completions, /v1/completions, /v1/messages (Anthropic), /v1/responses
  read body (413) -> decision (repeats of the same bytes reuse theirs; else parse JSON,
      control headers and the body, 400 on anything malformed)
  -> exact tier -> semantic tier -> HIT: answer from the entry (replayed as SSE for streams)
  -> MISS: join the single flight for the key; the leader calls upstream, streams the
     answer through while capturing it, stores it once complete; followers replay it
  -> upstream failed: an expired entry within max_stale is served as STALE, else 502/504
POST /v1/embeddings     each input item cached on its own; only missing items go upstream
any other /v1/*         passed through, streamed both ways
every request           counted in the ledger (written in batches, off the hot path)
The cached endpoints differ only in their wire format: how a body is read
(policies/decide.py) and how an answer streams (gateway/sse.py). /v1/messages goes to
anthropic_upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, TypeVar, cast

import aiohttp
import numpy as np
import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.backends import Ledger
from gateway.bodies import BodyError, BodyWorker, decide_body, parse_json
from gateway.cache import Cache, MissReason, remember
from gateway.config import Config
from gateway.entries import Entry, body_checksum
from gateway.errors import error_response
from gateway.flights import Flight, Flights
from gateway.ledger import Record
from gateway.metrics import Metrics
from gateway.sse import StreamCapture, answer_usage, complete, count_usage, replay
from gateway.tracing import NO_TRACING, Tracing
from gateway.upstream import Upstream, UpstreamError, read_all, response_headers
from policies.controls import (
    ControlError,
    Controls,
    parse_controls,
    valid_namespace,
)
from policies.decide import (
    Decision,
    Endpoint,
    PolicyConfig,
    RequestError,
    access,
    decide,
)
from policies.keys import Variant, canonical_json, item_key, tenant_of
from policies.pricing import PriceTable, Usage
from policies.rules import PATHS, within_rules

log = logging.getLogger("cachegate")

JSON = "application/json"
SSE = "text/event-stream"
RETRY_STALE_STATUSES = frozenset({429, 500, 502, 503, 504})
# What a decision depends on besides the body; see Gateway.decision_for.
# The caller's API key, however the upstream expects it (OpenAI, Azure, Anthropic style).
CREDENTIAL_HEADERS = ("Authorization", "api-key", "x-api-key")
QUERY_KEY = "?key"  # a key passed in the query string, as caller_credentials names it
# Headers that select another version of an API's answer: part of the key (request_variant).
VERSION_HEADERS = ("anthropic-version", "anthropic-beta")
ENDPOINTS = {path: endpoint for endpoint, path in PATHS.items()}  # the ledger's endpoint names
DECISION_HEADERS = (
    *CREDENTIAL_HEADERS,
    *VERSION_HEADERS,
    "Cache-Control",
    "X-Cache-TTL",
    "X-Cache-Namespace",
    "X-Cache-Mode",
    "X-Cache-Threshold",
    "X-Cache-Tags",
)
DECISIONS_KEPT = 20_000
# Endpoints whose stored answers say how many prompt tokens the provider's own prompt
# cache read or wrote (entries keep only the totals): a hit reads them from the answer.
PROMPT_CACHE_USAGE = frozenset({"messages", "responses"})
# Bodies from this size are joined in a thread and decided in a worker process (bodies.py):
# tens to hundreds of milliseconds of work that would otherwise hold up every other
# request's hit.
OFF_LOOP_BYTES = 2**20


T = TypeVar("T")
# How often a replica waiting for another replica's answer looks for it.
FLIGHT_POLL_SECONDS = 0.05


class BadRequest(Exception):
    """Turns into an OpenAI-shaped 4xx before anything else happens."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param = status, param


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request as it arrived: what every step of its path reads besides the decision."""

    request: web.Request
    started: float  # time.perf_counter() at arrival: the ledger's latency runs from here
    now: float  # time.time() at arrival: freshness and ages are judged at this instant

    @classmethod
    def arrived(cls, request: web.Request) -> Exchange:
        return cls(request, time.perf_counter(), time.time())


@dataclass(slots=True)
class Miss:
    """A decided request on its way upstream, alone or leading the flight of its key."""

    decision: Decision
    raw: bytes  # the body as the client sent it: forwarded as is
    vector: np.ndarray | None  # its embedding, when the semantic tier computed one
    flight: Flight | None  # the identical requests waiting for its answer
    why: MissReason | None  # why the cache had no answer (None when it was not read)


@dataclass(slots=True)
class Outcome:
    """What the ledger learns about one request."""

    status: str
    tier: str | None = None
    similarity: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of the prompt tokens, read from the provider's prompt cache
    cache_write_tokens: int = 0  # ... written to it
    upstream_ms: float = 0.0
    bytes: int = 0
    http_status: int = 200
    key: str | None = None
    request_key: str | None = None  # of a REPORTED answer: the request it was served to
    why: MissReason | None = None  # why a request that read the cache found nothing


class Gateway:
    def __init__(
        self,
        config: Config,
        cache: Cache,
        upstream: Upstream,
        ledger: Ledger,
        prices: PriceTable,
        metrics: Metrics,
        policy: PolicyConfig,
        count_tokens,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self.config = config
        self.cache = cache
        self.upstream = upstream
        self.ledger = ledger
        self.prices = prices
        self.metrics = metrics
        self.policy = policy
        self.count_tokens = count_tokens
        self.tracing = tracing
        self.flights = Flights()
        self.bodies = BodyWorker()
        self.decisions: dict[bytes, Decision] = {}  # request_fingerprint -> decision
        # Entry key -> the expiry of the version being (or last) refreshed: once per TTL.
        self.refreshing: dict[str, float] = {}
        self.refreshes: set[asyncio.Task] = set()

    # -- reading the request ------------------------------------------------------------
    async def read_body(self, request: web.Request) -> bytes:
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise BadRequest(
                413, f"request body is {request.content_length} bytes; the limit is {limit}"
            )
        pause = self.config.client_body_timeout
        chunks, size = [], 0
        try:
            if request.content.is_eof() and (request.content_length or 0) < OFF_LOOP_BYTES:
                # The whole body came with the headers (the usual small request): nothing
                # to wait for, so no deadline to arm; a timer a request cost exact hits ~5%.
                raw = request.content.read_nowait()
                if len(raw) > limit:
                    raise BadRequest(413, f"request body is over the limit of {limit} bytes")
                return raw
            # A client may pause its body for at most client_body_timeout at a time.
            async with asyncio.timeout(pause) as deadline:
                while chunk := await request.content.readany():
                    size += len(chunk)
                    if size > limit:
                        raise BadRequest(413, f"request body is over the limit of {limit} bytes")
                    chunks.append(chunk)
                    deadline.reschedule(asyncio.get_running_loop().time() + pause)
        except TimeoutError:
            if request.transport is not None:  # the client is too slow to wait for
                request.transport.close()
            raise BadRequest(
                408, f"the request body paused for over {pause:g}s (client_body_timeout)"
            ) from None
        except web.RequestPayloadError as exc:  # a Content-Encoding its bytes do not follow
            raise BadRequest(400, f"cannot read the request body: {exc}") from None
        except ConnectionResetError:  # nobody reads the answer; the ledger counts it
            raise BadRequest(400, "the client left before its request body was complete") from None
        if size >= OFF_LOOP_BYTES:
            return await asyncio.to_thread(b"".join, chunks)  # a copy that lets the loop run
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def parse_json(self, raw: bytes) -> Any:
        try:
            return parse_json(raw, self.config.max_json_depth)
        except BodyError as exc:
            raise BadRequest(400, str(exc), exc.param) from None

    def controls(self, request: web.Request) -> tuple[Controls, str]:
        try:
            controls = parse_controls(request.headers.items())
        except ControlError as exc:
            raise BadRequest(400, str(exc), exc.header) from None
        for header in CREDENTIAL_HEADERS:
            if len(request.headers.getall(header, ())) > 1:  # upstream gets both: which key?
                raise BadRequest(400, f"{header} is sent more than once", header)
        credentials = caller_credentials(request)
        for header, value in credentials:
            if header != QUERY_KEY and not value.isascii():
                # aiohttp would forward it with those bytes dropped: another key than this one.
                raise BadRequest(400, f"the API key in {header} is not ASCII", header)
        return controls, tenant_of(credentials, self.policy.shared_tenant)

    def tenant(self, request: web.Request) -> str:
        return tenant_of(caller_credentials(request), self.policy.shared_tenant)

    async def parsed(self, raw: bytes) -> Any:
        """parse_json, in a thread for a large body."""
        return await off_loop_if_large(raw, self.parse_json, raw)

    async def decision_for(self, request: web.Request, endpoint: Endpoint, raw: bytes) -> Decision:
        """decide() for this body and these headers. A decision is a pure function of them,
        so byte-identical repeats (the common cache hit) skip parsing and validation. A
        large body is decided in a worker process (bodies.py), and not remembered."""
        if len(raw) >= OFF_LOOP_BYTES:
            controls, tenant = self.controls(request)
            decided = await self.bodies.run(
                partial(
                    decide_body,
                    endpoint,
                    raw,
                    self.config.max_json_depth,
                    controls,
                    tenant,
                    self.policy,
                    request_variant(request),
                )
            )
            if isinstance(decided, tuple):
                raise BadRequest(400, *decided)
            return decided
        fingerprint = request_fingerprint(endpoint, raw, request)
        decision = self.decisions.get(fingerprint)
        if decision is None:
            decision = self.new_decision(request, endpoint, raw)
            remember(self.decisions, fingerprint, decision, DECISIONS_KEPT)
        return decision

    def new_decision(self, request: web.Request, endpoint: Endpoint, raw: bytes) -> Decision:
        body = self.parse_json(raw)
        controls, tenant = self.controls(request)
        try:
            return decide(endpoint, body, controls, tenant, self.policy, request_variant(request))
        except RequestError as exc:
            raise BadRequest(400, str(exc), exc.param) from None

    # -- chat and text completions, Anthropic's messages, OpenAI's responses ----------------
    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self.completion(request, "chat")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self.completion(request, "completions")

    async def messages(self, request: web.Request) -> web.StreamResponse:
        return await self.completion(request, "messages")

    async def responses(self, request: web.Request) -> web.StreamResponse:
        return await self.completion(request, "responses")

    async def completion(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        exchange = Exchange.arrived(request)
        try:
            raw = await self.read_body(request)
            decision = await self.decision_for(request, endpoint, raw)
        except BadRequest as exc:
            return self.rejected(exchange, exc.status, str(exc), exc.param)

        vector, why = None, None
        if decision.read:
            with self.tracing.span("lookup"):
                stored = await self.cache.get(decision.key)
                fresh = stored is not None and stored.fresh(exchange.now, decision.max_age)
                entry = stored if fresh else None
                found = (
                    await self.cache.semantic(decision.semantic, exchange.now, decision.max_age)
                    if entry is None and decision.semantic is not None
                    else None
                )
            if entry is not None:
                return await self.serve_entry(exchange, decision, entry, tier="exact")
            if found is not None:
                if found.entry is not None:
                    return await self.serve_entry(
                        exchange, decision, found.entry, tier="semantic", score=found.score
                    )
                vector, why = found.vector, found.why
            else:
                why = MissReason("exact_only", decision.exact_only)
            if stored is not None:  # this very request's answer is stored, but too old
                why = MissReason("expired", stored.too_old(exchange.now))

            flight, leads = self.flights.join(decision.key, decision.wire_form)
            if not leads:
                return await self.follow(exchange, decision, flight)
        else:
            flight = None
        token = ""
        error: Exception | None = None
        try:
            # Only a request whose answer is stored leads (or waits for) other replicas:
            # holding a flight that stores nothing would queue them one by one behind it.
            if flight is not None and decision.store:
                entry, token = await self.lead_across_replicas(decision)
                if entry is not None:  # another replica's answer: for this flight's followers too
                    response = await self.serve_entry(exchange, decision, entry)
                    response.headers["X-Cache-Collapsed"] = "true"
                    flight.start(response.status, response.headers)
                    flight.publish(cast(bytes, response.body))
                    return response
            return await self.call_upstream(exchange, Miss(decision, raw, vector, flight, why))
        except BaseException as exc:
            # Followers see an upstream failure, whatever stopped the leader.
            error = (
                exc
                if isinstance(exc, UpstreamError)
                else UpstreamError(
                    502, "the identical request this one was waiting for failed; retry"
                )
            )
            raise
        finally:
            if flight is not None:
                self.flights.land(decision.key, decision.wire_form, error)
            if token:
                await self.cache.store.flush()  # the answer is stored before the others look
                await self.cache.store.release_flight(decision.key, token)

    async def lead_across_replicas(self, decision: Decision) -> tuple[Entry | None, str]:
        """Replicas on one Redis: claim this key's flight, or wait while another replica
        holds it. (its stored answer, "") when that replica stored one; (None, token) when
        this replica calls upstream, and releases `token` after (completion's finally):
        it claimed the flight, or the holder ended it (or died) without an answer stored.
        With SQLite, at once (None, "")."""
        while (token := await self.cache.store.claim_flight(decision.key)) is None:
            await asyncio.sleep(FLIGHT_POLL_SECONDS)
            entry = await self.cache.exact(decision.key, time.time(), decision.max_age)
            if entry is not None:
                return entry, ""
        return None, token

    async def call_upstream(self, exchange: Exchange, miss: Miss) -> web.StreamResponse:
        """The leader's miss: forward, answer the client as bytes arrive, store when complete."""
        decision, flight, request = miss.decision, miss.flight, exchange.request
        try:
            async with self.upstream.open(
                "POST", request.rel_url, request.headers, miss.raw, decision.model
            ) as up:
                if up.status in RETRY_STALE_STATUSES:
                    stale = await self.stale_entry(decision, exchange.now)
                    if stale is not None:
                        if flight is not None:
                            flight.finish(UpstreamError(up.status, "upstream failed"))
                        return await self.serve_entry(exchange, decision, stale, status="STALE")
                headers = response_headers(up.headers)
                headers.update(
                    self.cache_headers(decision.status_on_miss, decision.key, decision.key)
                )
                if flight is not None:
                    flight.start(up.status, headers)
                if up.headers.get("Content-Type", "").startswith(SSE):
                    return await self.relay_stream(exchange, miss, up, headers)
                data = await read_all(up)
                if flight is not None:
                    flight.publish(data)
                answer = None
                if up.status == 200:
                    try:
                        answer = await off_loop_if_large(data, orjson.loads, data)
                    except orjson.JSONDecodeError:
                        log.warning("upstream sent a 200 that is not JSON; not caching it")
                await self.settle_miss(
                    exchange, miss, status=up.status, answer=answer, data=data, size=len(data)
                )
                return web.Response(body=data, status=up.status, headers=headers)
        except UpstreamError as exc:
            if flight is not None:
                flight.finish(exc)  # followers fail (or serve STALE) the same way
            return await self.upstream_failed(exchange, decision, exc, miss.why)

    async def relay_stream(
        self,
        exchange: Exchange,
        miss: Miss,
        up: aiohttp.ClientResponse,
        headers: CIMultiDict[str],
    ) -> web.StreamResponse:
        decision, flight, request = miss.decision, miss.flight, exchange.request
        response = web.StreamResponse(status=up.status, headers=headers)
        client_gone = not await prepared(response, request)
        capture = StreamCapture(decision.endpoint)
        size, cut = 0, None
        try:
            async for chunk in up.content.iter_any():
                capture.feed(chunk)
                size += len(chunk)
                if flight is not None:
                    flight.publish(chunk)
                if not client_gone:
                    try:
                        await response.write(chunk)
                    except ConnectionResetError:
                        # The client left; upstream bills the answer anyway, so read it to
                        # the end for the followers and the cache.
                        client_gone = True
        except (aiohttp.ClientError, TimeoutError) as exc:  # upstream cut the stream
            cut = exc
            log.warning(
                "upstream stream for %s ended early (%s); not caching it",
                decision.key,
                type(exc).__name__,
            )
        if cut is None and not client_gone:
            # The client has the whole answer before it is stored; one that left at the
            # last byte still leaves a complete answer to store.
            with contextlib.suppress(ConnectionResetError):
                await response.write_eof()
        await self.settle_miss(
            exchange,
            miss,
            status=up.status if cut is None else 502,
            answer=capture.completion() if cut is None else None,
            data=None,
            size=size,
        )
        if cut is not None:
            if flight is not None:
                flight.finish(UpstreamError(502, "upstream ended the stream early"))
            # Drop the connection rather than end the chunked body cleanly: a client must
            # see a cut answer as an error, not as a short complete one.
            if request.transport is not None:
                request.transport.close()
        return response

    async def settle_miss(
        self,
        exchange: Exchange,
        miss: Miss,
        *,
        status: int,
        answer: dict[str, Any] | None,
        data: bytes | None,
        size: int,
    ) -> None:
        """After upstream answered (`status`, `size` bytes; `answer` parsed when complete,
        `data` its bytes when not streamed): store a complete 200 answer, hand its usage to
        the followers, record the request."""
        decision = miss.decision
        upstream_ms = (time.perf_counter() - exchange.started) * 1000
        usage = await self.store_answer(miss, answer if status == 200 else None, data, upstream_ms)
        if miss.flight is not None:
            miss.flight.usage = usage
        self.record(
            exchange,
            decision,
            Outcome(
                decision.status_on_miss if status == 200 else "ERROR",
                prompt_tokens=usage.prompt,
                completion_tokens=usage.completion,
                cached_tokens=usage.cached,
                cache_write_tokens=usage.cache_write,
                upstream_ms=upstream_ms,
                bytes=size,
                http_status=status,
                key=decision.key,
                why=miss.why,
            ),
        )

    async def store_answer(
        self, miss: Miss, answer: dict[str, Any] | None, data: bytes | None, upstream_ms: float
    ) -> Usage:
        """Store a complete 200 answer (when allowed); returns the tokens it was billed."""
        decision = miss.decision
        if answer is None or not complete(decision.endpoint, answer):
            return Usage(0, 0)
        tokens, counted = self.billed(decision.endpoint, miss.raw, answer)
        if counted:
            data = None  # the stored body carries the counted usage
        if not decision.store:
            return tokens
        semantic = decision.semantic
        vector = miss.vector
        if semantic is not None and vector is None:
            vector = await self.cache.embed(semantic.text)
        now = time.time()
        body = data if data is not None else orjson.dumps(answer)
        self.cache.put(
            Entry(
                key=decision.key,
                tenant=decision.tenant,
                namespace=decision.namespace,
                endpoint=decision.endpoint,
                model=decision.model,
                body=body,
                checksum=await off_loop_if_large(body, body_checksum, body),
                created_at=now,
                expires_at=now + decision.ttl,
                prompt_tokens=tokens.prompt,
                completion_tokens=tokens.completion,
                upstream_ms=upstream_ms,
                context_key=semantic.context_key if semantic else None,
                text=semantic.text if semantic else None,
                request=miss.raw if self.config.refresh_ahead.enabled else None,
                tags=decision.tags,
            ),
            vector if semantic else None,
        )
        return tokens

    def billed(self, endpoint: str, request: bytes, answer: dict[str, Any]) -> tuple[Usage, bool]:
        """The tokens upstream billed for a complete `answer` to `request`. A chat or text
        completion it reported none for is counted with the tokenizer and the count written
        into `answer` (True: a stored body must be written anew from `answer`)."""
        tokens = answer_usage(endpoint, answer)
        if tokens is None and endpoint in ("chat", "completions"):
            request_body = orjson.loads(request)
            answer["usage"] = count_usage(endpoint, request_body, answer, self.count_tokens)
            return answer_usage(endpoint, answer) or Usage(0, 0), True
        return tokens or Usage(0, 0), False

    async def follow(
        self, exchange: Exchange, decision: Decision, flight: Flight
    ) -> web.StreamResponse:
        """A collapsed request: replay what the leader receives instead of calling upstream."""
        request = exchange.request
        try:
            await flight.started()
            status = flight.status or 502
            headers = flight.headers.copy()
            if status == 200:  # an upstream error relayed is no hit
                headers.update(self.cache_headers("HIT", decision.key, decision.key, "exact"))
            headers["X-Cache-Collapsed"] = "true"
            response: web.StreamResponse
            if not decision.stream:
                data = b"".join([chunk async for chunk in flight.follow()])
                response = web.Response(body=data, status=status, headers=headers)
            else:
                response = web.StreamResponse(status=status, headers=headers)
                try:
                    await response.prepare(request)
                    async for chunk in flight.follow():
                        await response.write(chunk)
                    await response.write_eof()
                except ConnectionResetError:
                    pass  # the client left; the leader reads on for the others and the cache
                except UpstreamError:
                    # The leader's stream was cut: cut this one too, never end it cleanly.
                    if request.transport is not None:
                        request.transport.close()
                    self.record(
                        exchange, decision, Outcome("ERROR", http_status=502, key=decision.key)
                    )
                    return response
        except UpstreamError as exc:
            return await self.upstream_failed(exchange, decision, exc)
        # Saved: the leader's tokens; not time, since this request waited for upstream too.
        usage = flight.usage
        self.record(
            exchange,
            decision,
            Outcome(
                "HIT" if status == 200 else "ERROR",
                tier="exact" if status == 200 else None,
                prompt_tokens=usage.prompt,
                completion_tokens=usage.completion,
                cached_tokens=usage.cached,
                cache_write_tokens=usage.cache_write,
                http_status=status,
                key=decision.key,
            ),
        )
        return response

    async def stale_entry(self, decision: Decision, now: float) -> Entry | None:
        if decision.status_on_miss == "BYPASS":
            return None
        entry = await self.cache.get(decision.key)
        if entry is None or now - entry.expires_at > self.config.max_stale:
            return None
        return entry

    async def upstream_failed(
        self,
        exchange: Exchange,
        decision: Decision,
        exc: UpstreamError,
        why: MissReason | None = None,
    ) -> web.StreamResponse:
        stale = await self.stale_entry(decision, exchange.now)
        if stale is not None:
            return await self.serve_entry(exchange, decision, stale, status="STALE")
        outcome = Outcome("ERROR", http_status=exc.status, key=decision.key, why=why)
        self.record(exchange, decision, outcome)
        return error_response(exc.status, str(exc))

    # -- answering from an entry ------------------------------------------------------------
    def cache_headers(
        self,
        status: str,
        key: str | None,
        request_key: str | None,
        tier: str | None = None,
        score: float | None = None,
        age: float | None = None,
    ) -> dict[str, str]:
        """`key`: the entry answering (or stored); `request_key`: this request's exact key,
        which an app sends back with `key` to report a bad answer (POST /cache/feedback)."""
        headers = {"X-Cache-Status": status}
        if key is not None and status != "BYPASS":
            headers["X-Cache-Key"] = key
        if request_key is not None:
            headers["X-Cache-Request-Key"] = request_key
        if tier is not None:
            headers["X-Cache-Tier"] = tier
        if score is not None:
            headers["X-Cache-Similarity"] = f"{score:.4f}"
        if age is not None:
            headers["Age"] = str(int(age))
        return headers

    async def serve_entry(
        self,
        exchange: Exchange,
        decision: Decision,
        entry: Entry,
        *,
        status: Literal["HIT", "STALE"] = "HIT",
        tier: Literal["exact", "semantic"] = "exact",
        score: float | None = None,
    ) -> web.Response:
        """Answer from `entry`: a HIT of `tier` (`score`: a semantic match's), or STALE."""
        now = exchange.now
        headers = self.cache_headers(status, entry.key, decision.key, tier, score, entry.age(now))
        answer = None
        if decision.stream:
            answer = orjson.loads(entry.body)
            body = b"".join(replay(decision.endpoint, answer, decision.include_usage))
        else:
            body = entry.body
        content_type = SSE if decision.stream else JSON
        response = web.Response(body=body, headers=headers, content_type=content_type)
        if status == "HIT":
            self.cache.hit(entry, now)
            self.refresh_if_due(exchange, entry)
        usage = Usage(entry.prompt_tokens, entry.completion_tokens)
        if decision.endpoint in PROMPT_CACHE_USAGE:
            # What the provider's prompt cache would have served is saved at its price.
            usage = answer_usage(decision.endpoint, answer or orjson.loads(entry.body)) or usage
        self.record(
            exchange,
            decision,
            Outcome(
                status,
                tier=tier if status == "HIT" else None,
                similarity=score,
                prompt_tokens=usage.prompt,
                completion_tokens=usage.completion,
                cached_tokens=usage.cached,
                cache_write_tokens=usage.cache_write,
                upstream_ms=entry.upstream_ms,
                bytes=len(body),
                key=entry.key,
            ),
        )
        return response

    # -- refresh-ahead ------------------------------------------------------------------------
    def refresh_if_due(self, exchange: Exchange, entry: Entry) -> None:
        """Refresh a hot entry served near its expiry, once per entry and TTL, in the
        background: this request is answered from the entry as it is. The request's own
        headers carry the credentials (its tenant's, the entry's) upstream."""
        policy = self.config.refresh_ahead
        if (
            entry.request is None
            or not policy.due(entry.hits, entry.created_at, entry.expires_at, exchange.now)
            or self.refreshing.get(entry.key) == entry.expires_at
        ):
            return
        remember(self.refreshing, entry.key, entry.expires_at, DECISIONS_KEPT)
        task = asyncio.create_task(self.refresh(exchange.request, entry))
        self.refreshes.add(task)  # held until done, or the loop may drop it midway
        task.add_done_callback(self.refreshes.discard)

    async def drop_refreshes(self) -> None:
        """Cancel the refreshes in flight at a stop (their entries serve on until they
        expire): none may call upstream, store or record after those close."""
        refreshes = list(self.refreshes)
        for task in refreshes:
            task.cancel()
        await asyncio.gather(*refreshes, return_exceptions=True)

    async def refresh(self, origin: web.Request, entry: Entry) -> None:
        """Ask upstream again with the entry's own request and store the answer under the
        same key with a TTL as long as the old one, from now; tags, hits, text and vector
        kept. A ledger row (REFRESH) counts what upstream was paid. `origin`, the request
        served from the entry, lends its headers (credentials) and URL."""
        exchange = Exchange.arrived(origin)  # the refresh's own clocks
        # One refresh per entry and TTL across replicas (a shared store's lock).
        if entry.request is None or not await self.cache.store.claim_refresh(
            entry.key, entry.expires_at
        ):
            return
        body = orjson.loads(entry.request)
        for streaming in ("stream", "stream_options"):  # the stored shape is the whole answer
            body.pop(streaming, None)
        try:
            async with self.upstream.open(
                "POST", origin.rel_url, origin.headers, canonical_json(body), entry.model
            ) as up:
                data = await read_all(up)
                status = up.status
        except UpstreamError as exc:
            log.warning("refresh of %s failed (%s); it is served until it expires", entry.key, exc)
            return
        try:
            answer = orjson.loads(data) if status == 200 else None
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict) or not complete(entry.endpoint, answer):
            log.warning(
                "refresh of %s got no complete answer (HTTP %d); it is served until it expires",
                entry.key,
                status,
            )
            return
        usage, counted = self.billed(entry.endpoint, entry.request, answer)
        stored = time.time()
        upstream_ms = (time.perf_counter() - exchange.started) * 1000
        refreshed = dataclasses.replace(
            entry,
            body=orjson.dumps(answer) if counted else data,
            checksum="",  # computed anew for the new body
            created_at=stored,
            expires_at=stored + (entry.expires_at - entry.created_at),
            prompt_tokens=usage.prompt,
            completion_tokens=usage.completion,
            upstream_ms=upstream_ms,
        )
        # An entry purged meanwhile (reported bad, say) stays gone: its key, text and vector
        # would bring the same match back.
        if await self.cache.get(entry.key) is not None:
            self.cache.put(refreshed, None)  # the vector is the entry's: its text is the same
        outcome = Outcome(
            "REFRESH",
            prompt_tokens=usage.prompt,
            completion_tokens=usage.completion,
            cached_tokens=usage.cached,
            cache_write_tokens=usage.cache_write,
            upstream_ms=upstream_ms,
            bytes=len(data),
            key=entry.key,
        )
        self.ledger_record(
            exchange,
            outcome,
            tenant=entry.tenant,
            namespace=entry.namespace,
            endpoint=entry.endpoint,
            model=entry.model,
        )

    # -- embeddings -------------------------------------------------------------------------
    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        """Each input item is its own entry; a batch sends upstream only the items not cached."""
        exchange = Exchange.arrived(request)
        now = exchange.now
        try:
            body = await self.parsed(await self.read_body(request))
            controls, tenant = self.controls(request)
            items, single = embedding_items(body)
        except BadRequest as exc:
            return self.rejected(exchange, exc.status, str(exc), exc.param)
        model = body["model"]
        controls, policy = within_rules("embeddings", model, controls, tenant, self.policy)
        params = {k: v for k, v in body.items() if k not in ("input", *policy.key_ignore)}
        variant = request_variant(request)
        keys = [item_key(tenant, controls.namespace, params, item, variant) for item in items]
        allowed = access(controls, policy)
        who = {"tenant": tenant, "namespace": controls.namespace, "model": model}
        found: dict[int, Entry] = {}
        # Embeddings are cached exactly, item by item; an item stored but too old says why.
        why = MissReason("exact_only", "embeddings")
        if allowed.read:
            for i, key in enumerate(keys):
                entry = await self.cache.get(key)
                if entry is not None and entry.fresh(now, controls.max_age):
                    found[i] = entry
                elif entry is not None:
                    why = MissReason("expired", entry.too_old(now))
        missing = [i for i in range(len(items)) if i not in found]
        vectors: dict[int, Any] = {}
        spent_tokens, upstream_ms = 0, 0.0
        if missing:
            sub = {**body, "input": items[missing[0]] if single else [items[i] for i in missing]}
            answer, failure = await self.fetch_embeddings(request, sub, len(missing))
            upstream_ms = (time.perf_counter() - exchange.started) * 1000
            if failure is not None:  # upstream errors pass through, never cached
                failure_body = cast(bytes, failure.body or b"")  # a Response made of bytes
                outcome = Outcome("ERROR", http_status=failure.status, bytes=len(failure_body))
                self.ledger_record(exchange, outcome, endpoint="embeddings", **who)
                return failure
            rows = sorted(answer["data"], key=lambda row: row.get("index", 0))
            spent_tokens = (answer_usage("embeddings", answer) or Usage(0, 0)).prompt
            counts = [self.count_item(items[i]) for i in missing]
            for i, row, tokens in zip(
                missing, rows, split_tokens(spent_tokens, counts), strict=True
            ):
                vectors[i] = row.get("embedding")
                if allowed.store:
                    stored = time.time()
                    self.cache.put(
                        Entry(
                            key=keys[i],
                            tenant=tenant,
                            namespace=controls.namespace,
                            endpoint="embeddings",
                            model=model,
                            body=orjson.dumps(
                                {"embedding": row.get("embedding"), "tokens": tokens}
                            ),
                            created_at=stored,
                            expires_at=stored + allowed.ttl,
                            prompt_tokens=tokens,
                            upstream_ms=upstream_ms / max(1, len(missing)),
                            tags=controls.tags,
                        ),
                        None,
                    )
        saved_tokens = 0
        for i, entry in found.items():
            stored = orjson.loads(entry.body)
            vectors[i] = stored["embedding"]
            saved_tokens += int(stored.get("tokens") or 0)
            self.cache.hit(entry, now)
        result = orjson.dumps(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": vectors[i]}
                    for i in range(len(items))
                ],
                "model": model,
                "usage": {"prompt_tokens": spent_tokens, "total_tokens": spent_tokens},
            }
        )
        status = allowed.status_on_miss if missing else "HIT"
        only_key = keys[0] if len(keys) == 1 else None
        headers = self.cache_headers(
            status, only_key, only_key, "exact" if status == "HIT" else None
        )
        headers["X-Cache-Items-Cached"] = f"{len(found)}/{len(items)}"
        if status == "HIT":
            headers["Age"] = str(int(min(e.age(now) for e in found.values())))
        outcome = Outcome(
            status,
            tier="exact" if status == "HIT" else None,
            prompt_tokens=saved_tokens if status == "HIT" else spent_tokens,
            upstream_ms=upstream_ms if missing else sum(e.upstream_ms for e in found.values()),
            bytes=len(result),
            key=only_key,
            why=why if status == "MISS" else None,
        )
        self.ledger_record(exchange, outcome, endpoint="embeddings", **who)
        return web.Response(body=result, headers=headers, content_type=JSON)

    async def fetch_embeddings(
        self, request: web.Request, body: dict[str, Any], count: int
    ) -> tuple[dict[str, Any], web.Response | None]:
        """Upstream's answer for the missing items, or the response to fail with."""
        try:
            async with self.upstream.open(
                "POST",
                request.rel_url,
                request.headers,
                canonical_json(body),  # (it may hold an integer orjson cannot write)
                body["model"],
            ) as up:
                data = await read_all(up)
                if up.status != 200:
                    headers = response_headers(up.headers)
                    headers["X-Cache-Status"] = "MISS"
                    return {}, web.Response(body=data, status=up.status, headers=headers)
        except UpstreamError as exc:
            return {}, error_response(exc.status, str(exc))
        try:
            answer = orjson.loads(data)
            rows = answer["data"]
            if len(rows) == count and all(
                isinstance(row, dict) and isinstance(row.get("index", 0), int) for row in rows
            ):
                return answer, None
        except (orjson.JSONDecodeError, KeyError, TypeError):
            pass
        return {}, error_response(502, f"upstream did not answer {count} embeddings in JSON")

    def count_item(self, item: Any) -> int:
        return len(item) if isinstance(item, list) else self.count_tokens(item)

    # -- everything else under /v1 ------------------------------------------------------------
    async def passthrough(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self.read_body(request) if request.body_exists else None
        except BadRequest as exc:
            return error_response(exc.status, str(exc))
        try:
            async with self.upstream.open(
                request.method,
                request.rel_url,
                request.headers,
                body,
                None,
            ) as up:
                headers = response_headers(up.headers, cookies=True)
                headers["X-Cache-Status"] = "BYPASS"  # not a cacheable route
                response = web.StreamResponse(status=up.status, headers=headers)
                try:
                    await response.prepare(request)
                    async for chunk in up.content.iter_any():
                        await response.write(chunk)
                except (aiohttp.ClientError, TimeoutError, ConnectionResetError):
                    if request.transport is not None:  # a cut body must not look complete
                        request.transport.close()
                    return response
                await response.write_eof()
                return response
        except UpstreamError as exc:
            return error_response(exc.status, str(exc))

    # -- the ledger -----------------------------------------------------------------------------
    def rejected(
        self, exchange: Exchange, status: int, message: str, param: str | None = None
    ) -> web.Response:
        """Answer a refused request with its error, and count it."""
        request = exchange.request
        namespace = request.headers.get("X-Cache-Namespace", "default").strip()
        if not valid_namespace(namespace):  # rejected for it, maybe: not ledger text
            namespace = "(invalid)"
        self.ledger_record(
            exchange,
            Outcome("ERROR", http_status=status),
            tenant=self.tenant(request),
            namespace=namespace,
            endpoint=ENDPOINTS.get(request.path, request.path),
            model="",
        )
        return error_response(status, message, param)

    def record(self, exchange: Exchange, decision: Decision, outcome: Outcome) -> None:
        # The ledger keeps a preview of the compared text only where the answer may be kept.
        prompt = decision.semantic.text[:200] if decision.semantic and decision.store else None
        self.ledger_record(
            exchange,
            outcome,
            tenant=decision.tenant,
            namespace=decision.namespace,
            endpoint=decision.endpoint,
            model=decision.model,
            prompt=prompt,
        )

    def ledger_record(
        self,
        exchange: Exchange,
        outcome: Outcome,
        *,
        tenant: str,
        namespace: str,
        endpoint: str,
        model: str,
        prompt: str | None = None,
    ) -> None:
        usd = self.prices.cost(
            model,
            outcome.prompt_tokens,
            outcome.completion_tokens,
            outcome.cached_tokens,
            outcome.cache_write_tokens,
        )
        why = outcome.why
        record = Record(
            ts=exchange.now,
            tenant=tenant,
            namespace=namespace,
            endpoint=endpoint,
            model=model,
            status=outcome.status,
            tier=outcome.tier,
            similarity=outcome.similarity,
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            usd=usd or 0.0,
            priced=int(usd is not None or not model),
            latency_ms=(time.perf_counter() - exchange.started) * 1000,
            upstream_ms=outcome.upstream_ms,
            bytes=outcome.bytes,
            http_status=outcome.http_status,
            key=outcome.key,
            prompt=prompt,
            request_key=outcome.request_key,
            reason=why.reason if why else None,
            detail=why.detail if why else None,
            score=why.score if why else None,
        )
        self.ledger.record(record)
        self.metrics.observe(record)
        self.tracing.annotate(record)


async def off_loop_if_large(data: bytes, work: Callable[..., T], *args: Any) -> T:
    """`work(*args)`, in a thread when `data` is large: hashing and copying let the loop
    run meanwhile, and parsing at least lets it run between the parser's steps."""
    if len(data) >= OFF_LOOP_BYTES:
        return await asyncio.to_thread(work, *args)
    return work(*args)


async def prepared(response: web.StreamResponse, request: web.Request) -> bool:
    """Send a streamed response's status and headers; False if the client has left."""
    try:
        await response.prepare(request)
    except ConnectionResetError:
        return False
    return True


def caller_credentials(request: web.Request) -> list[tuple[str, str]]:
    """The credentials sent with a value, as (header, value): the credential headers, and
    a key passed in the query string (`?key=`, as Google's APIs take one)."""
    headers = request.headers
    sent = [(h, v) for h in CREDENTIAL_HEADERS for v in headers.getall(h, ()) if v.strip()]
    sent += [(QUERY_KEY, v) for v in request.rel_url.query.getall("key", ()) if v.strip()]
    return sent


def request_variant(request: web.Request) -> Variant:
    """The query string's parameters, sorted (the `key` is the tenant's, not the answer's),
    and the version headers of the API: what selects another answer besides the body."""
    query = [(name, value) for name, value in request.rel_url.query.items() if name != "key"]
    versions = [(f"{h}:", v) for h in VERSION_HEADERS for v in request.headers.getall(h, ())]
    return tuple(sorted(query)) + tuple(versions)


def header_values(headers: CIMultiDictProxy[str], name: str) -> str:
    """Every value `name` was sent with, each after a \\x01 ("" when not sent)."""
    return "\x01".join(["", *headers.getall(name)]) if name in headers else ""


def request_fingerprint(endpoint: str, raw: bytes, request: web.Request) -> bytes:
    """A hash of what a decision depends on: the endpoint, the query string as sent and
    DECISION_HEADERS, a line each, then the body. Each header line is every value the
    header was sent with, each after a \\x01: no header value (nor a raw query string) can
    hold a line break or a control character, so a header not sent, sent empty or sent
    twice each give their own line (and may decide otherwise). The exact-hit path runs
    this on every request: two hash calls, and no copy of the body."""
    headers = request.headers
    lines = "\n".join(
        [
            endpoint,
            request.rel_url.raw_query_string,
            *(header_values(headers, h) for h in DECISION_HEADERS),
            "",
        ]
    )
    fingerprint = hashlib.blake2b(lines.encode("utf-8", "surrogateescape"), digest_size=16)
    fingerprint.update(raw)
    return fingerprint.digest()


def embedding_items(body: Any) -> tuple[list[Any], bool]:
    """The input items of an embeddings request, and whether the input was a single item."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest(400, "'model' is required and must be a non-empty string", "model")
    value = body.get("input")
    if isinstance(value, str) or (
        isinstance(value, list) and value and all(isinstance(t, int) for t in value)
    ):
        return [value], True
    if (
        isinstance(value, list)
        and value
        and all(
            isinstance(item, str)
            or (isinstance(item, list) and all(isinstance(t, int) for t in item))
            for item in value
        )
    ):
        return value, False
    raise BadRequest(400, "'input' must be a string, an array of strings, or token arrays", "input")


def split_tokens(total: int, weights: list[int]) -> list[int]:
    """Split upstream's token count over the items in proportion to their own counts."""
    weight_sum = sum(weights) or len(weights)
    shares = [total * (w or 1) // weight_sum for w in weights]
    shares[-1] += total - sum(shares)
    return shares
