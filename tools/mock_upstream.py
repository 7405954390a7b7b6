"""A deterministic OpenAI-compatible upstream, for tests, the demo and the benchmarks.

It also speaks Anthropic's Messages API (POST /v1/messages) and OpenAI's Responses API
(POST /v1/responses), streamed and not, with usage.

Answers depend only on the request, so a test knows what a correct cached answer is.
Per-request fault injection through headers (the gateway forwards them):
  X-Mock-Status: 500       answer with that status and an OpenAI-shaped error
  X-Mock-Cut: N            stream N chunks, then drop the connection (no [DONE])
  X-Mock-Delay-Ms: MS      wait before answering
  X-Mock-No-Usage: 1       leave `usage` out of a non-stream answer
`GET /mock/calls` counts the calls by route; `GET /mock/last` echoes the last request's target,
headers and body; `POST /mock/reset` zeroes both.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import re
import struct
import time
from collections import Counter
from typing import Any

import orjson
from aiohttp import web

MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "mock-model")
MAX_CHOICES = 128  # OpenAI's own bound on n


def answer_text(prompt: str, model: str) -> str:
    digest = hashlib.sha256(f"{model}\n{prompt}".encode()).hexdigest()[:8]
    return f"Mock answer {digest} from {model} to: {prompt}"


def tokens(text: str) -> int:
    return max(1, math.ceil(len(re.findall(r"\w+|[^\w\s]", text)) * 1.3))


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content)
    return ""


class MockUpstream:
    def __init__(self, latency_ms: float = 0.0) -> None:
        self.latency = latency_ms / 1000
        self.calls: Counter[str] = Counter()
        self.last: dict[str, Any] = {}

    async def _begin(
        self, request: web.Request, route: str
    ) -> tuple[dict[str, Any], web.Response | None]:
        raw = await request.read()
        self.calls[route] += 1
        self.last = {
            "target": request.raw_path,  # path and query as sent
            "headers": dict(request.headers),
            "body": raw.decode(errors="replace"),
        }
        delay = self.latency + float(request.headers.get("X-Mock-Delay-Ms", 0)) / 1000
        if delay:
            await asyncio.sleep(delay)
        status = int(request.headers.get("X-Mock-Status", 200))
        if status != 200:
            error = {
                "error": {
                    "message": f"mock upstream failure {status}",
                    "type": "server_error",
                    "param": None,
                    "code": "mock",
                }
            }
            return {}, web.json_response(error, status=status)
        try:
            return orjson.loads(raw or b"{}"), None
        except orjson.JSONDecodeError:
            return {}, invalid_request("bad json", None)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, "chat")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, "completions")

    async def _complete(self, request: web.Request, kind: str) -> web.StreamResponse:
        body, failure = await self._begin(request, kind)
        if failure:
            return failure
        model = str(body.get("model", "mock-model"))
        if kind == "chat":
            prompt = last_user_text(body.get("messages") or [])
            prompt_tokens = sum(
                tokens(str(m.get("content", ""))) + 4 for m in body.get("messages") or []
            )
        else:
            prompt = str(body.get("prompt", ""))
            prompt_tokens = tokens(prompt)
        n = body.get("n") or 1
        if type(n) is not int or not 1 <= n <= MAX_CHOICES:  # as OpenAI: no huge answers
            return invalid_request(f"n must be an integer from 1 to {MAX_CHOICES}", "n")
        texts = [answer_text(prompt if i == 0 else f"{prompt} #{i}", model) for i in range(n)]
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": sum(tokens(t) for t in texts)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        ident = (
            "mock-"
            + hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]
        )
        created = int(time.time())
        if body.get("stream"):
            return await self._stream(request, kind, body, ident, created, model, texts, usage)
        if kind == "chat":
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": t, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
                for i, t in enumerate(texts)
            ]
            answer = {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": choices,
                "system_fingerprint": "fp_mock",
            }
        else:
            choices = [
                {"index": i, "text": t, "logprobs": None, "finish_reason": "stop"}
                for i, t in enumerate(texts)
            ]
            answer = {
                "id": ident,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": choices,
            }
        if not request.headers.get("X-Mock-No-Usage"):
            answer["usage"] = usage
        return web.Response(
            body=orjson.dumps(answer),
            content_type="application/json",
            headers={"X-Request-Id": ident, "Set-Cookie": "mock=1"},
        )

    async def _stream(
        self,
        request: web.Request,
        kind: str,
        body: dict[str, Any],
        ident: str,
        created: int,
        model: str,
        texts: list[str],
        usage: dict[str, int],
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Request-Id": ident}
        )
        await response.prepare(request)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        cut = int(request.headers.get("X-Mock-Cut", 0))
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
        extra = {"usage": None} if include_usage else {}
        events: list[dict[str, Any]] = []
        for i, text in enumerate(texts):
            if kind == "chat":
                events.append(
                    {
                        "index": i,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                )
            for word in re.findall(r"\S+\s*", text):
                delta: dict[str, Any] = (
                    {"delta": {"content": word}} if kind == "chat" else {"text": word}
                )
                events.append({"index": i, **delta, "logprobs": None, "finish_reason": None})
            last: dict[str, Any] = {"delta": {}} if kind == "chat" else {"text": ""}
            events.append({"index": i, **last, "logprobs": None, "finish_reason": "stop"})
        for sent, choice in enumerate(events):
            if cut and sent >= cut:
                await asyncio.sleep(0.05)
                assert request.transport is not None
                request.transport.close()  # a connection dropped mid-stream
                return response
            chunk: dict[str, Any] = {
                "id": ident,
                "object": obj,
                "created": created,
                "model": model,
                "system_fingerprint": "fp_mock",
                "choices": [choice],
                **extra,
            }
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        if include_usage:
            chunk = {
                "id": ident,
                "object": obj,
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """Anthropic's Messages API: the answer to the last user text, with usage; a long
        system prompt marked with cache_control is reported as read from the prompt cache."""
        body, failure = await self._begin(request, "messages")
        if failure:
            return failure
        model = str(body.get("model", "mock-model"))
        messages = body.get("messages") or []
        text = answer_text(last_user_text(messages), model)
        system = body.get("system")
        system_text = system if isinstance(system, str) else orjson.dumps(system or "").decode()
        cached = tokens(system_text) if isinstance(system, list) and system_text else 0
        ident = "msg_" + request_id(body)
        usage = {
            "input_tokens": sum(tokens(str(m.get("content", ""))) for m in messages),
            "output_tokens": tokens(text),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached,
        }
        message = {
            "id": ident,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            return web.json_response(message, headers={"request-id": ident})
        head = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {**usage, "output_tokens": 1},
        }
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": head},
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            {"type": "ping"},
            *(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": w},
                }
                for w in re.findall(r"\S+\s*", text)
            ),
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
            {"type": "message_stop"},
        ]
        return await self._events(request, events, ident)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        """OpenAI's Responses API: the answer to the last user text of `input`, with usage."""
        body, failure = await self._begin(request, "responses")
        if failure:
            return failure
        model = str(body.get("model", "mock-model"))
        items = body.get("input")
        prompt = items if isinstance(items, str) else last_user_text(items or [])
        text = answer_text(prompt, model)
        ident = request_id(body)
        usage: dict[str, Any] = {
            "input_tokens": tokens(str(items)) + tokens(str(body.get("instructions") or "")),
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": tokens(text),
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        part = {"type": "output_text", "text": text, "annotations": []}
        item = {
            "id": "msg_" + ident,
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [part],
        }
        response = {
            "id": "resp_" + ident,
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "model": model,
            "output": [item],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": body.get("tools") or [],
            "usage": usage,
        }
        if not body.get("stream"):
            return web.json_response(response, headers={"x-request-id": ident})
        shell = {**response, "status": "in_progress", "output": [], "usage": None}
        place = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": shell},
            {"type": "response.in_progress", "response": shell},
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**item, "status": "in_progress", "content": []},
            },
            {"type": "response.content_part.added", **place, "part": {**part, "text": ""}},
            *(
                {"type": "response.output_text.delta", **place, "delta": w, "logprobs": []}
                for w in re.findall(r"\S+\s*", text)
            ),
            {"type": "response.output_text.done", **place, "text": text, "logprobs": []},
            {"type": "response.content_part.done", **place, "part": part},
            {"type": "response.output_item.done", "output_index": 0, "item": item},
            {"type": "response.completed", "response": response},
        ]
        for number, event in enumerate(events):
            event["sequence_number"] = number
        return await self._events(request, events, ident)

    async def _events(
        self, request: web.Request, events: list[dict[str, Any]], ident: str
    ) -> web.StreamResponse:
        """Named server-sent events, as Anthropic and the Responses API send them; X-Mock-Cut
        drops the connection after that many."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream; charset=utf-8", "X-Request-Id": ident}
        )
        await response.prepare(request)
        cut = int(request.headers.get("X-Mock-Cut", 0))
        for sent, event in enumerate(events):
            if cut and sent >= cut:
                await asyncio.sleep(0.05)
                assert request.transport is not None
                request.transport.close()
                return response
            frame = f"event: {event['type']}\ndata: ".encode() + orjson.dumps(event) + b"\n\n"
            await response.write(frame)
        await response.write_eof()
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        body, failure = await self._begin(request, "embeddings")
        if failure:
            return failure
        items = body.get("input")
        items = (
            [items] if isinstance(items, str) or (items and isinstance(items[0], int)) else items
        )
        dims = int(body.get("dimensions") or 8)
        as_base64 = body.get("encoding_format") == "base64"  # the Node client's default
        data = []
        for i, item in enumerate(items or []):
            seed = hashlib.sha256(orjson.dumps(item)).digest()
            vector = [round((seed[j % 32] - 128) / 128, 6) for j in range(dims)]
            embedding: list[float] | str = (
                # OpenAI's form: the float32 values, little-endian, in base64
                base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        used = sum(tokens(i) if isinstance(i, str) else len(i) for i in items or [])
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": used, "total_tokens": used},
            }
        )

    async def models(self, request: web.Request) -> web.Response:
        self.calls["models"] += 1
        self.last = {"target": request.raw_path, "headers": dict(request.headers), "body": ""}
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 1700000000, "owned_by": "mock"}
                    for m in MODELS
                ],
            }
        )

    async def calls_handler(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self.calls))

    async def last_handler(self, request: web.Request) -> web.Response:
        return web.json_response(self.last)

    async def reset(self, request: web.Request) -> web.Response:
        self.calls.clear()
        self.last = {}
        return web.json_response({"reset": True})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 2**20)
        app.add_routes(
            [
                web.post("/v1/chat/completions", self.chat),
                web.post("/v1/completions", self.completions),
                web.post("/v1/embeddings", self.embeddings),
                web.post("/v1/messages", self.messages),
                web.post("/v1/responses", self.responses),
                web.get("/v1/models", self.models),
                web.get("/mock/calls", self.calls_handler),
                web.get("/mock/last", self.last_handler),
                web.post("/mock/reset", self.reset),
            ]
        )
        return app


def request_id(body: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def invalid_request(message: str, param: str | None) -> web.Response:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    return web.json_response({"error": error}, status=400)


def run_mock_upstream(host: str, port: int, latency_ms: float) -> None:
    print(f"mock upstream listening on http://{host}:{port}/v1", flush=True)
    web.run_app(MockUpstream(latency_ms).app(), host=host, port=port, print=None, access_log=None)
