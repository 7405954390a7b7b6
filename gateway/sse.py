"""Server-sent events: capture an upstream stream into one completion, and replay one as a stream.

Entries are stored in the non-stream shape (`chat.completion` / `text_completion`), so
an answer cached from a stream serves non-stream requests and the other way round.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from policies.keys import canonical_json

DONE = b"data: [DONE]\n\n"
WORDS_PER_CHUNK = 3
_PIECES = re.compile(r"\s*\S+\s*|\s+")


class StreamCapture:
    """Parses the SSE bytes a client receives, to assemble the answer once the stream ends."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.done = False
        self._buffer = b""
        self._events: list[dict[str, Any]] = []
        self.broken = False  # an event we could not parse: never store what we cannot read

    def feed(self, data: bytes) -> None:
        self._buffer += data
        *frames, self._buffer = re.split(rb"\r?\n\r?\n", self._buffer)
        for frame in frames:
            payload = b"".join(
                line[5:].lstrip() for line in frame.splitlines() if line.startswith(b"data:")
            )
            if not payload:
                continue
            if payload == b"[DONE]":
                self.done = True
                continue
            try:
                event = orjson.loads(payload)
            except orjson.JSONDecodeError:
                self.broken = True
                continue
            if isinstance(event, dict) and "error" in event:
                self.broken = True
            elif isinstance(event, dict):
                self._events.append(event)

    def completion(self) -> dict[str, Any] | None:
        """The assembled answer; None unless the stream ended cleanly, every choice finished."""
        if not self.done or self.broken or not self._events:
            return None
        answer = assemble(self.endpoint, self._events)
        if not answer["choices"] or any(c.get("finish_reason") is None for c in answer["choices"]):
            return None
        return answer


def assemble(endpoint: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    first = events[0]
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    for event in events:
        usage = event.get("usage") or usage
        for delta_choice in event.get("choices") or ():
            index = delta_choice.get("index", 0)
            if endpoint == "chat":
                choice = choices.setdefault(
                    index,
                    {
                        "index": index,
                        "message": {"role": "assistant", "content": None},
                        "logprobs": None,
                        "finish_reason": None,
                    },
                )
                _merge_delta(choice["message"], delta_choice.get("delta") or {})
            else:
                choice = choices.setdefault(
                    index, {"index": index, "text": "", "logprobs": None, "finish_reason": None}
                )
                choice["text"] += delta_choice.get("text") or ""
            if delta_choice.get("logprobs"):
                _merge_logprobs(choice, delta_choice["logprobs"])
            if delta_choice.get("finish_reason"):
                choice["finish_reason"] = delta_choice["finish_reason"]
    answer: dict[str, Any] = {
        "id": first.get("id"),
        "object": "chat.completion" if endpoint == "chat" else "text_completion",
        "created": first.get("created"),
        "model": first.get("model"),
        "choices": [choices[i] for i in sorted(choices)],
    }
    if first.get("system_fingerprint") is not None:
        answer["system_fingerprint"] = first["system_fingerprint"]
    if usage:
        answer["usage"] = usage
    return answer


def _merge_delta(message: dict[str, Any], delta: dict[str, Any]) -> None:
    for field, value in delta.items():
        if field == "role" and value:
            message["role"] = value
        elif field in ("content", "refusal") and value is not None:
            message[field] = (message.get(field) or "") + value
        elif field == "tool_calls" and value:
            calls = message.setdefault("tool_calls", [])
            for part in value:
                index = part.get("index", len(calls))
                while len(calls) <= index:
                    calls.append(
                        {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
                    )
                call = calls[index]
                call["id"] = part.get("id") or call["id"]
                call["type"] = part.get("type") or call["type"]
                function = part.get("function") or {}
                call["function"]["name"] += function.get("name") or ""
                call["function"]["arguments"] += function.get("arguments") or ""
        elif field == "function_call" and value:
            call = message.setdefault("function_call", {"name": "", "arguments": ""})
            call["name"] += value.get("name") or ""
            call["arguments"] += value.get("arguments") or ""


def _merge_logprobs(choice: dict[str, Any], logprobs: dict[str, Any]) -> None:
    merged = choice["logprobs"] or {}
    for field, value in logprobs.items():
        if isinstance(value, list):
            merged[field] = (merged.get(field) or []) + value
        else:
            merged[field] = value
    choice["logprobs"] = merged


def _frame(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


def replay(endpoint: str, answer: dict[str, Any], include_usage: bool) -> Iterator[bytes]:
    """The stored answer as the SSE frames upstream would have sent: role, pieces, finish, usage."""
    chat = endpoint == "chat"
    head = {
        "id": answer.get("id"),
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": answer.get("created"),
        "model": answer.get("model"),
    }
    if answer.get("system_fingerprint") is not None:
        head["system_fingerprint"] = answer["system_fingerprint"]
    tail = {"usage": None} if include_usage else {}

    def chunk(index: int, body: dict[str, Any], finish: str | None = None) -> bytes:
        piece = {"index": index, **body, "logprobs": None, "finish_reason": finish}
        return _frame({**head, "choices": [piece], **tail})

    for choice in answer.get("choices") or ():
        index = choice.get("index", 0)
        if chat:
            message = choice.get("message") or {}
            yield chunk(index, {"delta": {"role": message.get("role", "assistant"), "content": ""}})
            for piece in _pieces(message.get("content") or ""):
                yield chunk(index, {"delta": {"content": piece}})
            if message.get("refusal"):
                yield chunk(index, {"delta": {"refusal": message["refusal"]}})
            if message.get("tool_calls"):
                calls = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
                yield chunk(index, {"delta": {"tool_calls": calls}})
            if message.get("function_call"):
                yield chunk(index, {"delta": {"function_call": message["function_call"]}})
            yield chunk(index, {"delta": {}}, choice.get("finish_reason") or "stop")
        else:
            for piece in _pieces(choice.get("text") or ""):
                yield chunk(index, {"text": piece})
            yield chunk(index, {"text": ""}, choice.get("finish_reason") or "stop")
    if include_usage:
        yield _frame({**head, "choices": [], "usage": answer.get("usage")})
    yield DONE


def _pieces(text: str) -> Iterator[str]:
    words = _PIECES.findall(text)
    for start in range(0, len(words), WORDS_PER_CHUNK):
        yield "".join(words[start : start + WORDS_PER_CHUNK])


def count_usage(
    endpoint: str, request: dict[str, Any], answer: dict[str, Any], count: Callable[[str], int]
) -> dict[str, int]:
    """Usage counted with a tokenizer, for a stream whose upstream reported none."""
    if endpoint == "chat":
        prompt = 3 + sum(
            4
            + count(
                m["content"]
                if isinstance(m.get("content"), str)
                else canonical_json(m.get("content")).decode()
            )
            for m in request.get("messages") or ()
        )
        texts = [(c.get("message") or {}).get("content") or "" for c in answer["choices"]]
        texts += [
            orjson.dumps(c["message"]["tool_calls"]).decode()
            for c in answer["choices"]
            if (c.get("message") or {}).get("tool_calls")
        ]
    else:
        p = request.get("prompt")
        prompt = count(p if isinstance(p, str) else canonical_json(p).decode())
        texts = [c.get("text") or "" for c in answer["choices"]]
    completion = sum(count(t) for t in texts)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
