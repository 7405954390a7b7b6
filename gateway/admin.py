"""Admin and observability routes: health, metrics, stats, entries, purge, the dashboard;
and feedback, which an app reaches with its own API key rather than the admin token.

Admin routes need `Authorization: Bearer <admin token>` (compared in constant time): the
configured CACHEGATE_ADMIN_TOKEN, else the one generated into the data dir
(gateway.datadir.admin_token). `admin_open_loopback: true` lets unproxied loopback
clients in without it.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import time
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from gateway.backends import PurgeFilter, StoreUnavailable
from gateway.entries import tags_of
from gateway.errors import error_response
from gateway.ledger import REPORTED, parse_since
from gateway.server import BadRequest, Exchange, Gateway, Outcome
from policies.controls import valid_tag

STATIC = Path(str(resources.files("gateway") / "static"))  # package data, installed as files


HEX_KEY = re.compile(r"[0-9a-f]{32}")  # an exact key, as X-Cache-Key shows it
PURGE_FIELDS = {
    "all": bool,
    "namespace": str,
    "model": str,
    "older_than": str,
    "key": str,
    "tag": str,
    "prompt": str,
}


def purge_filter(fields: dict[str, Any]) -> PurgeFilter:
    """A purge from CLI-like fields: all, namespace, model, older_than ('7d'), key, tag,
    prompt (a regular expression); they combine (AND)."""
    for name, value in fields.items():
        kind = PURGE_FIELDS.get(name)
        if kind is None:
            raise ValueError(f"unknown field {name!r}; use {', '.join(PURGE_FIELDS)}")
        if not isinstance(value, kind):
            raise ValueError(f"{name!r} must be a {'boolean' if kind is bool else 'string'}")
    older = fields.get("older_than")
    tag, prompt = fields.get("tag"), fields.get("prompt")
    if tag is not None and not valid_tag(tag):
        raise ValueError(f"tag {tag!r} is not a tag (1-64 of letters, digits and . _ : / @ + -)")
    if prompt is not None:
        try:
            re.compile(prompt)
        except re.error as exc:
            raise ValueError(f"prompt {prompt!r} is not a regular expression: {exc}") from None
    where = PurgeFilter(
        everything=fields.get("all") is True,
        namespace=fields.get("namespace"),
        model=fields.get("model"),
        older_than=parse_since(older) if older else None,
        key=fields.get("key"),
        tag=tag,
        prompt=prompt,
    )
    if where == PurgeFilter():
        raise ValueError("say what to purge: all, namespace, model, older_than, key, tag or prompt")
    return where


# Headers a proxy or CDN sets on what it forwards: a request carrying any of them is not
# from a local process, even when it arrives over loopback.
PROXY_HEADERS = (
    "Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Real-IP",
    "X-Client-IP",
    "X-Cluster-Client-IP",
    "Via",
    "True-Client-IP",
    "CF-Connecting-IP",
    "Fastly-Client-IP",
    "X-Original-Forwarded-For",
)


class Admin:
    def __init__(self, gateway: Gateway, admin_token: str, open_loopback: bool = False) -> None:
        self.gateway = gateway
        self.open_loopback = open_loopback
        # The bytes a caller must send; surrogateescape: a token that is not UTF-8 too.
        self.expected = f"Bearer {admin_token}".encode("utf-8", "surrogateescape")

    def allowed(self, request: web.Request) -> web.Response | None:
        """None when the caller may use admin routes, else the error to answer."""
        given = request.headers.get("Authorization", "")
        if not given.startswith("Bearer ") and "token" in request.query:
            given = "Bearer " + request.query["token"]
        sent = given.encode("utf-8", "surrogateescape")  # the bytes, even if not UTF-8
        if hmac.compare_digest(sent, self.expected):
            return None
        if self.open_loopback and unproxied_loopback(request):
            return None
        return error_response(
            401,
            "admin routes need 'Authorization: Bearer <admin token>': CACHEGATE_ADMIN_TOKEN, "
            "or the token generated into DATA_DIR/admin-token",
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def metrics(self, request: web.Request) -> web.Response:
        if denied := self.allowed(request):
            return denied
        m, cache = self.gateway.metrics, self.gateway.cache
        m.gauges.update(
            cachegate_entries=cache.store.count,
            cachegate_entry_bytes=cache.store.bytes,
            cachegate_memory_entries=len(cache.memory),
            cachegate_semantic_vectors=len(cache.index) if cache.index is not None else 0,
            cachegate_semantic_rebuilds=cache.index.rebuilding if cache.index is not None else 0,
        )
        m.model_runs = cache.model_runs()
        m.evictions = cache.store.evictions
        return web.Response(body=m.render(), content_type="text/plain", charset="utf-8")

    async def stats(self, request: web.Request) -> web.Response:
        if denied := self.allowed(request):
            return denied
        try:
            result = await self.gateway.ledger.stats(
                request.query.get("since"), request.query.get("by")
            )
        except ValueError as exc:
            return error_response(400, str(exc), "since" if "duration" in str(exc) else "by")
        except StoreUnavailable as exc:
            return error_response(503, str(exc))
        return web.json_response(result, dumps=lambda v: orjson.dumps(v).decode())

    async def top_prompts(self, request: web.Request) -> web.Response:
        if denied := self.allowed(request):
            return denied
        try:
            limit = query_limit(request, 10, 1000)
        except ValueError:
            return error_response(400, "limit must be a whole number", "limit")
        try:
            rows = await self.gateway.ledger.top_prompts(request.query.get("since"), limit)
        except ValueError as exc:
            return error_response(400, str(exc), "since")
        except StoreUnavailable as exc:
            return error_response(503, str(exc))
        return web.json_response({"data": rows}, dumps=lambda v: orjson.dumps(v).decode())

    async def latency(self, request: web.Request) -> web.Response:
        """p50/p95 of hits and misses by hour (or `bucket=day|minute`), from the ledger."""
        if denied := self.allowed(request):
            return denied
        try:
            result = await self.gateway.ledger.latency(
                request.query.get("since"), request.query.get("bucket", "hour")
            )
        except ValueError as exc:
            return error_response(400, str(exc), "since" if "duration" in str(exc) else "bucket")
        except StoreUnavailable as exc:
            return error_response(503, str(exc))
        return web.json_response(result, dumps=lambda v: orjson.dumps(v).decode())

    async def entries(self, request: web.Request) -> web.Response:
        """Stored entries, newest first: of a `namespace`, whose compared text `q` finds (a
        regular expression, ignoring case; text that is not one is searched as written);
        `detail=true` adds each one's text, tokens and dollars saved (its hits at its
        model's price). The response also counts every entry stored and their bytes."""
        if denied := self.allowed(request):
            return denied
        try:
            limit = query_limit(request, 100, 10000)
        except ValueError:
            return error_response(400, "limit must be a whole number", "limit")
        searched = request.query.get("q") or None
        detail = request.query.get("detail", "false").lower() in ("1", "true", "yes")
        now = time.time()
        store = self.gateway.cache.store
        try:
            rows = await store.list_entries(
                request.query.get("namespace") or None, limit, prompt_pattern(searched)
            )
        except StoreUnavailable as exc:
            return error_response(503, str(exc))
        data = [self.listed(row, now, detail) for row in rows]
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "total_entries": store.count,
                "total_bytes": store.bytes,
            },
            dumps=lambda v: orjson.dumps(v).decode(),
        )

    def listed(self, row: dict[str, Any], now: float, detail: bool) -> dict[str, Any]:
        """An entry as /cache/entries shows it; never its tenant."""
        shown = {
            **{
                name: row[name]
                for name in ("key", "model", "namespace", "endpoint", "hits", "size")
            },
            "age": round(now - row["created_at"], 3),
            "expires_in": round(row["expires_at"] - now, 3),
        }
        if detail:
            prompt, completion = row.get("prompt_tokens") or 0, row.get("completion_tokens") or 0
            each = self.gateway.prices.cost(row["model"], prompt, completion)
            shown.update(
                prompt=(row.get("text") or "")[:500],
                prompt_tokens=prompt,
                completion_tokens=completion,
                usd_saved=None if each is None else round(each * (row["hits"] or 0), 8),
            )
            shown["tags"] = list(tags_of(row.get("tags")))
        return shown

    async def purge(self, request: web.Request) -> web.Response:
        if denied := self.allowed(request):
            return denied
        try:
            fields = orjson.loads(await self.gateway.read_body(request) or b"{}")
            if not isinstance(fields, dict):
                raise ValueError("the body must be a JSON object")
            where = purge_filter(fields)
        except BadRequest as exc:
            return error_response(exc.status, str(exc))
        except (ValueError, orjson.JSONDecodeError) as exc:
            return error_response(400, f"cannot purge: {exc}")
        try:
            purged = await self.gateway.cache.purge(where, time.time())
        except StoreUnavailable as exc:
            return error_response(503, str(exc))
        return web.json_response({"purged": purged})

    async def feedback(self, request: web.Request) -> web.Response:
        """An app reports a bad answer with the caller's own API key: the entry goes for
        every replica and the ledger counts it, with the tier it was served from (semantic
        when the request's own key differs from the entry's)."""
        exchange = Exchange.arrived(request)
        try:
            body = orjson.loads(await self.gateway.read_body(request) or b"null")
            key, request_key = feedback_keys(body)
        except BadRequest as exc:
            return error_response(exc.status, str(exc), exc.param)
        except orjson.JSONDecodeError as exc:
            return error_response(400, f"the feedback body is not valid JSON: {exc}")
        tenant = self.gateway.tenant(request)
        cache = self.gateway.cache
        if not cache.store.available:
            return error_response(503, "the cache store is unreachable; report it again later")
        entry = await cache.get(key)
        purged = 0
        if entry is not None and entry.tenant == tenant:
            try:
                purged = await cache.purge(PurgeFilter(key=key, tenant=tenant), exchange.now)
            except StoreUnavailable as exc:
                return error_response(503, str(exc))
        if entry is None or not purged:
            return error_response(
                404,
                f"no cached answer {key} for this API key: send the X-Cache-Key of an "
                "answer served to this key, with the same API key",
                "key",
            )
        tier = None if request_key is None else "exact" if request_key == key else "semantic"
        outcome = Outcome(REPORTED, tier=tier, key=key, request_key=request_key)
        self.gateway.ledger_record(
            exchange,
            outcome,
            tenant=tenant,
            namespace=entry.namespace,
            endpoint=entry.endpoint,
            model=entry.model,
        )
        return web.json_response({"key": key, "purged": purged, "tier": tier})

    async def dashboard(self, request: web.Request) -> web.StreamResponse:
        if denied := self.allowed(request):
            return denied
        return web.FileResponse(
            STATIC / "dashboard.html", headers={"Content-Type": "text/html; charset=utf-8"}
        )

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/healthz", self.healthz),
            web.get("/metrics", self.metrics),
            web.get("/cache/stats", self.stats),
            web.get("/cache/top-prompts", self.top_prompts),
            web.get("/cache/latency", self.latency),
            web.get("/cache/entries", self.entries),
            web.post("/cache/purge", self.purge),
            web.post("/cache/feedback", self.feedback),
            web.get("/dashboard", self.dashboard),
        ]


def unproxied_loopback(request: web.Request) -> bool:
    """A client on this host that no proxy header marks as forwarded: behind a proxy on
    this host every client looks local."""
    if any(header in request.headers for header in PROXY_HEADERS):
        return False
    try:
        return ipaddress.ip_address((request.remote or "").split("%")[0]).is_loopback
    except ValueError:
        return False


def feedback_keys(body: Any) -> tuple[str, str | None]:
    """The entry's key and the reporting request's key (optional) of a feedback body;
    BadRequest for anything else."""
    if not isinstance(body, dict):
        raise BadRequest(400, "the feedback body must be a JSON object with 'key' and 'verdict'")
    unknown = set(body) - {"key", "request_key", "verdict"}
    if unknown:
        raise BadRequest(
            400, f"unknown field {sorted(unknown)[0]!r}; use key, request_key, verdict"
        )
    if body.get("verdict") != "bad":
        raise BadRequest(400, "'verdict' must be \"bad\" (the only verdict taken)", "verdict")
    for field in ("key", "request_key"):
        value = body.get(field)
        if (field == "key" or value is not None) and not (
            isinstance(value, str) and HEX_KEY.fullmatch(value)
        ):
            header = "X-Cache-Key" if field == "key" else "X-Cache-Request-Key"
            raise BadRequest(
                400, f"{field!r} must be the 32 hex digits of the {header} header", field
            )
    return body["key"], body.get("request_key")


def prompt_pattern(text: str | None) -> re.Pattern[str] | None:
    """What `q` searches for: a regular expression ignoring case, or the text as written
    when it is not a valid one (a stray parenthesis in a prompt)."""
    if text is None:
        return None
    try:
        return re.compile(text, re.IGNORECASE)
    except re.error:
        return re.compile(re.escape(text), re.IGNORECASE)


def query_limit(request: web.Request, default: int, most: int) -> int:
    """The `limit` query parameter within 1..most; ValueError unless it is ASCII digits."""
    text = request.query.get("limit", str(default))
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"limit {text!r} is not a whole number")
    return max(1, min(int(text), most))
