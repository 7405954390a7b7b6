"""`cachegate warm FILE.jsonl`: fill the cache before traffic arrives, by sending known
requests through a running gateway (so they are stored exactly as a client's would be).

Each line is a chat completions body, or `{"path": "/v1/...", "body": {...}}` for another
route. Requests go out `concurrency` at a time; a progress bar counts them and a summary
says how many answers were stored, were already cached, and failed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from tqdm import tqdm

CHAT = "/v1/chat/completions"
# How a gateway's X-Cache-Status reads for warming: stored now, there already, or not kept.
OUTCOMES = {"MISS": "stored", "HIT": "already cached", "STALE": "already cached"}


@dataclass(frozen=True, slots=True)
class WarmRequest:
    line: int
    path: str
    body: Any


def read_requests(path: Path) -> Iterator[WarmRequest | str]:
    """The requests of a JSON-lines file, or for a line that is not one, what is wrong."""
    with path.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, 1):
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except ValueError as exc:
                yield f"line {number}: not JSON ({exc})"
                continue
            if not isinstance(value, dict):
                yield f"line {number}: not a JSON object"
            elif "path" in value:
                route, body = value.get("path"), value.get("body")
                if not isinstance(route, str) or not route.startswith("/v1/") or body is None:
                    yield f"line {number}: 'path' must be a /v1/ route, with a 'body'"
                else:
                    yield WarmRequest(number, route, body)
            else:
                yield WarmRequest(number, CHAT, value)


async def warm(
    path: Path, gateway: str, concurrency: int, namespace: str | None, api_key: str | None
) -> Counter[str]:
    """Send every request of `path` through `gateway`; counts by outcome (OUTCOMES, and
    `not stored` for answers the gateway did not keep, `failed`), problems printed."""
    items = list(read_requests(path))
    counts: Counter[str] = Counter()
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if namespace:
        headers["X-Cache-Namespace"] = namespace
    queue: asyncio.Queue[WarmRequest] = asyncio.Queue()
    with tqdm(total=len(items), unit="req", desc="warming", disable=None) as bar:
        for item in items:
            if isinstance(item, str):
                counts["failed"] += 1
                bar.write(item, file=sys.stderr)
                bar.update()
            else:
                queue.put_nowait(item)

        async def work(session: aiohttp.ClientSession) -> None:
            while not queue.empty():
                request = queue.get_nowait()
                outcome, problem = await send(session, gateway, request, headers)
                counts[outcome] += 1
                if problem:
                    bar.write(f"line {request.line}: {problem}", file=sys.stderr)
                bar.update()

        timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(work(session) for _ in range(max(1, concurrency))))
    return counts


async def send(
    session: aiohttp.ClientSession, gateway: str, request: WarmRequest, headers: dict[str, str]
) -> tuple[str, str | None]:
    """(outcome, what went wrong) of one request."""
    url = gateway.rstrip("/") + request.path
    try:
        async with session.post(url, data=json.dumps(request.body), headers=headers) as answer:
            text = await answer.read()
            status = answer.headers.get("X-Cache-Status", "")
            if answer.status != 200:
                return "failed", f"{answer.status} {text[:200].decode(errors='replace')}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return "failed", f"{url}: {exc or type(exc).__name__}"
    return OUTCOMES.get(status, "not stored"), None


def summary(counts: Counter[str]) -> str:
    said = [f"{counts[name]} {name}" for name in ("stored", "already cached", "failed")]
    if counts["not stored"]:
        said.append(f"{counts['not stored']} not stored (X-Cache-Status BYPASS: a rule or mode)")
    return ", ".join(said)
