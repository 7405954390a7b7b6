"""The upstream client: one shared aiohttp session, routing by model, and clear failures."""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from gateway.config import Config
from gateway.datadir import Complaints
from gateway.tracing import NO_TRACING, Tracing

log = logging.getLogger("cachegate.upstream")
# Statuses of upstream's own answers that say it is failing (or refusing) rather than the
# request being wrong: logged like a connection that failed.
FAILING_STATUSES = frozenset({429, 500, 502, 503, 504})

# Never forwarded in either direction: they describe one hop, not the message.
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
        "Content-Length",
        "Content-Encoding",
        "Accept-Encoding",
    )
)
ANTHROPIC_PATH = "/v1/messages"  # Anthropic's routes, sent to anthropic_upstream
# Our own controls are for the gateway, not for upstream.
GATEWAY_HEADERS = frozenset(
    h.lower()
    for h in (
        "Cache-Control",
        "X-Cache-TTL",
        "X-Cache-Namespace",
        "X-Cache-Mode",
        "X-Cache-Threshold",
        "Pragma",
    )
)


class UpstreamError(Exception):
    """Upstream could not be reached (502) or did not answer in time (504)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Target:
    base_url: str  # encoded (str of a yarl URL): a request's raw path is appended as it is
    api_key: str | None
    origin: URL  # scheme, host and port: no request may leave them
    key_header: str = "Authorization"  # how api_key is sent: Bearer, or as x-api-key

    @classmethod
    def of(cls, url: str, api_key: str | None, key_header: str = "Authorization") -> Target:
        parsed = URL(url.rstrip("/?#"))
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"upstream URL {url!r} must start with http:// or https:// and a host")
        if parsed.query_string or parsed.fragment:
            raise ValueError(
                f"upstream URL {url!r} must have no query or fragment: the client's path "
                "and query are appended to it"
            )
        return cls(str(parsed), api_key, parsed.origin(), key_header)


class Upstream:
    def __init__(self, config: Config, tracing: Tracing = NO_TRACING) -> None:
        self._config = config
        self._tracing = tracing
        self._routes = [(re.compile(r.models), Target.of(r.url, r.api_key)) for r in config.routes]
        self._default = Target.of(config.upstream, config.upstream_key)
        # Anthropic's API: the root URL, to which /v1/messages is appended as sent.
        anthropic = config.anthropic_upstream.rstrip("/") + "/v1"
        self._anthropic = Target.of(anthropic, config.anthropic_upstream_key, "x-api-key")
        self._slots = asyncio.Semaphore(config.upstream_concurrency)
        self._session: aiohttp.ClientSession | None = None
        # A target that is down fails every request: one line a minute each, with the cause.
        self._failures = Complaints(log)

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self._config.upstream_connect_timeout,
            sock_read=self._config.upstream_read_timeout,
        )
        self._session = aiohttp.ClientSession(
            timeout=timeout,
            auto_decompress=True,
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
        )

    async def close(self) -> None:
        if self._session:
            await self._session.close()

    def failed(self, target: Target, cause: str) -> None:
        self._failures.say(target.base_url, "upstream %s failed: %s", target.base_url, cause)

    def target(self, model: str | None, path: str = "") -> Target:
        if path == ANTHROPIC_PATH or path.startswith(ANTHROPIC_PATH + "/"):
            return self._anthropic
        for pattern, target in self._routes:
            if model and pattern.fullmatch(model):
                return target
        return self._default

    def request_headers(self, incoming: Mapping[str, str], target: Target) -> CIMultiDict:
        headers = CIMultiDict(
            (k, v)
            for k, v in incoming.items()
            if k.lower() not in HOP_BY_HOP and k.lower() not in GATEWAY_HEADERS
        )
        headers["Accept-Encoding"] = "identity"  # we read what we cache
        if target.api_key and target.key_header == "x-api-key":
            headers.popall("Authorization", None)  # the configured key replaces the caller's
            headers["x-api-key"] = target.api_key
        elif target.api_key:
            headers["Authorization"] = f"Bearer {target.api_key}"
        return headers

    @asynccontextmanager
    async def open(
        self,
        method: str,
        incoming: URL,
        headers: Mapping[str, str],
        body: bytes | None,
        model: str | None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request to what follows /v1 in `incoming` (the client's URL: path and
        query as they were sent, percent-encoding included) and yield upstream's response."""
        assert self._session is not None, "Upstream.start() was not awaited"
        target = self.target(model, incoming.path)
        if problem := path_problem(incoming):
            raise UpstreamError(400, f"path {incoming.path!r} {problem}")
        tail = incoming.raw_path.removeprefix("/v1")
        query = incoming.raw_query_string
        url = URL(target.base_url + tail + (f"?{query}" if query else ""), encoded=True)
        if url.origin() != target.origin:  # no request picks another host
            raise UpstreamError(400, f"path {incoming.path!r} does not stay on the upstream host")
        with self._tracing.span("upstream") as span:  # the wait for a slot included
            span.set_attribute("server.address", target.origin.host or "")
            try:
                await asyncio.wait_for(self._slots.acquire(), self._config.upstream_queue_timeout)
            except TimeoutError:
                self.failed(target, "too many requests waiting for a connection")
                raise UpstreamError(
                    504, "too many requests are waiting for upstream; retry later"
                ) from None
            try:
                try:
                    response = await self._session.request(
                        method,
                        url,
                        headers=self.request_headers(headers, target),
                        data=body,
                        allow_redirects=False,
                    )
                except TimeoutError:
                    self.failed(target, "no answer in time (timeout)")
                    raise UpstreamError(
                        504, f"upstream {target.base_url} did not answer in time"
                    ) from None
                except aiohttp.ClientError as exc:
                    self.failed(target, f"unreachable ({type(exc).__name__}: {exc})")
                    raise UpstreamError(
                        502, f"upstream {target.base_url} is unreachable: {exc}"
                    ) from None
                span.set_attribute("http.response.status_code", response.status)
                if response.status in FAILING_STATUSES:
                    self.failed(target, f"answered HTTP {response.status}")
                try:
                    yield response
                except UpstreamError as exc:  # its answer broke off (read_all)
                    self.failed(target, str(exc))
                    raise
                finally:
                    response.release()
            finally:
                self._slots.release()


def path_problem(incoming: URL) -> str | None:
    """Why the client's path must not go upstream, or None. It is sent as written, under
    the upstream base URL: nothing in it may climb out of that base on any server (dot
    segments, also with ;params or a backslash, as Tomcat and IIS read them; a second
    layer of percent-encoding; control characters)."""
    if not incoming.raw_path.startswith("/v1/"):
        return "must start with /v1/ as written, not percent-encoded"
    path = incoming.path
    if any(only_dots(segment.split(";", 1)[0]) for segment in re.split(r"[/\\]", path)):
        return "has . or .. segments"
    if "%" in path:
        return "is percent-encoded twice"
    if any(ord(char) < 0x20 or char == "\x7f" for char in path):
        return "has control characters"
    return None


def only_dots(segment: str) -> bool:
    """A segment some server may read as . or ..: dots, maybe with spaces (trimmed by
    Windows) or in a Unicode form that NFKC makes a dot (full-width)."""
    folded = unicodedata.normalize("NFKC", segment).strip()
    return bool(folded) and set(folded) <= {".", " "}


async def read_all(response: aiohttp.ClientResponse) -> bytes:
    """Upstream's whole body; a connection lost or too slow mid-body is an UpstreamError."""
    try:
        return await response.read()
    except TimeoutError:
        raise UpstreamError(504, "upstream stopped sending its answer (read timeout)") from None
    except aiohttp.ClientError as exc:
        raise UpstreamError(502, f"upstream dropped its answer midway: {exc}") from None


def response_headers(upstream: Mapping[str, str], cookies: bool = False) -> CIMultiDict:
    """Headers of an upstream answer that are safe to pass on to the client.

    Answers that may be shared (cached, or replayed to collapsed requests) never carry
    cookies: one caller's session must not reach another.
    """
    return CIMultiDict(
        (k, v)
        for k, v in upstream.items()
        if k.lower() not in HOP_BY_HOP and (cookies or k.lower() != "set-cookie")
    )
