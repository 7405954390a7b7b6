"""The answers of each endpoint on the wire: capture an upstream stream into one answer,
replay one as a stream, and read an answer's usage.

Entries are stored in the non-stream shape (`chat.completion`, `text_completion`,
Anthropic's `message`, the Responses API's `response`), so an answer cached from a
stream serves non-stream requests and the other way round. Each endpoint streams in its
own events: OpenAI's chunks ending in `[DONE]`, Anthropic's `message_start` ...
`message_stop`, the Responses API's `response.created` ... `response.completed`.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeGuard

import orjson

from policies.keys import canonical_json, json_bytes
from policies.pricing import Usage

DONE = b"data: [DONE]\n\n"
WORDS_PER_CHUNK = 3
_PIECES = re.compile(r"\s*\S+\s*|\s+")
# The events that end a complete stream (besides [DONE]), and those that end a failed one.
END_EVENTS = frozenset({"message_stop", "response.completed"})
FAILED_EVENTS = frozenset({"error", "response.failed", "response.incomplete"})


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
            if not isinstance(event, dict):
                continue
            kind = event.get("type")
            if "error" in event or kind in FAILED_EVENTS:
                self.broken = True
            else:
                self._events.append(event)
                self.done = self.done or kind in END_EVENTS

    def completion(self) -> dict[str, Any] | None:
        """The assembled answer; None unless the stream ended cleanly, every choice finished."""
        if not self.done or self.broken or not self._events:
            return None
        try:
            answer = ASSEMBLERS[self.endpoint](self._events)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            return None  # events out of the API's shape: nothing we could serve again
        if answer is None or not complete(self.endpoint, answer):
            return None
        if self.endpoint in ("chat", "completions") and any(
            c.get("finish_reason") is None for c in answer["choices"]
        ):
            return None
        return answer


def complete(endpoint: str, answer: Any) -> bool:
    """Whether a 200 answer is one to store: a whole answer in the endpoint's shape."""
    if not isinstance(answer, dict):
        return False
    if endpoint == "messages":
        content = answer.get("content")
        return (
            answer.get("type") == "message"
            and answer.get("stop_reason") is not None
            and _objects(content)
            and all(_replayable_block(block) for block in content)
        )
    if endpoint == "responses":
        output = answer.get("output")
        if not isinstance(output, list) or not _objects(output):
            return False
        return (
            answer.get("object") == "response"
            and answer.get("status") == "completed"
            and all(_replayable_item(item) for item in output if item.get("type") == "message")
        )
    choices = answer.get("choices")
    return (
        isinstance(choices, list)
        and bool(choices)
        and _objects(choices)
        and all(_replayable_choice(endpoint, choice) for choice in choices)
    )


def _objects(value: Any) -> TypeGuard[list[dict[str, Any]]]:
    """A list of JSON objects: what a replay can walk (anything else is not stored)."""
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def _text(value: Any) -> bool:
    """Text a replay cuts into pieces: a string, or nothing."""
    return isinstance(value, str | None)


def _replayable_choice(endpoint: str, choice: dict[str, Any]) -> bool:
    """A choice replay_completion can walk: a completion's text a string, a chat message
    an object whose content is a string and whose tool calls are objects."""
    if endpoint != "chat":
        return _text(choice.get("text"))
    message = choice.get("message")
    if message is None:
        return True
    if not isinstance(message, dict):
        return False
    calls = message.get("tool_calls")
    return _text(message.get("content")) and (not calls or _objects(calls))


def _replayable_block(block: dict[str, Any]) -> bool:
    """A Messages content block replay_message can walk: its text or thinking a string."""
    kind = block.get("type")
    if kind == "text":
        return _text(block.get("text"))
    if kind == "thinking":
        return isinstance(block.get("thinking"), str) and _text(block.get("signature"))
    return True


def _replayable_item(item: dict[str, Any]) -> bool:
    """A Responses message item replay_response can walk: parts that are objects, the
    output_text ones with string text."""
    parts = item.get("content")
    return _objects(parts) and all(
        _text(part.get("text")) for part in parts if part.get("type") == "output_text"
    )


def _count(value: Any) -> int:
    """A token count as upstream reported it; 0 for anything that is not a count."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value) if math.isfinite(value) and value > 0 else 0


def answer_usage(endpoint: str, answer: dict[str, Any]) -> Usage | None:
    """The tokens upstream billed for an answer (None when it reported none). Prompt tokens
    include those the provider read from, or wrote to, its own prompt cache."""
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        return None
    if endpoint == "messages":
        read = _count(usage.get("cache_read_input_tokens"))
        written = _count(usage.get("cache_creation_input_tokens"))
        prompt = _count(usage.get("input_tokens")) + read + written
        return Usage(prompt, _count(usage.get("output_tokens")), read, written)
    if endpoint == "responses":
        details = usage.get("input_tokens_details")
        return Usage(
            _count(usage.get("input_tokens")),
            _count(usage.get("output_tokens")),
            _count(details.get("cached_tokens")) if isinstance(details, dict) else 0,
        )
    return Usage(_count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))


def assemble_completion(endpoint: str, events: list[dict[str, Any]]) -> dict[str, Any]:
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


def assemble_message(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Anthropic's message from its events: message_start, the content blocks with their
    deltas, message_delta (stop reason, final usage)."""
    message: dict[str, Any] | None = None
    blocks: dict[int, dict[str, Any]] = {}
    tool_input: dict[int, str] = {}
    for event in events:
        kind = event.get("type")
        if kind == "message_start":
            message = {**event["message"], "content": []}
        elif kind == "content_block_start":
            blocks[event["index"]] = dict(event["content_block"])
        elif kind == "content_block_delta":
            index, delta = event["index"], event["delta"]
            block = blocks[index]
            if delta["type"] == "text_delta":
                block["text"] = block.get("text", "") + delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            elif delta["type"] == "input_json_delta":
                tool_input[index] = tool_input.get(index, "") + delta["partial_json"]
            elif delta["type"] == "citations_delta":
                block["citations"] = [*(block.get("citations") or ()), delta["citation"]]
        elif kind == "message_delta" and message is not None:
            message.update(event.get("delta") or {})
            # Counts in message_delta are totals; those left out keep message_start's.
            final = {k: v for k, v in (event.get("usage") or {}).items() if v is not None}
            message["usage"] = {**(message.get("usage") or {}), **final}
    if message is None:
        return None
    for index, text in tool_input.items():
        if text:
            blocks[index]["input"] = orjson.loads(text)
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return message


def assemble_response(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The Responses API sends the whole response in its last event, response.completed."""
    completed = [e for e in events if e.get("type") == "response.completed"]
    return completed[-1]["response"] if completed else None


ASSEMBLERS: dict[str, Callable[[list[dict[str, Any]]], dict[str, Any] | None]] = {
    "chat": lambda events: assemble_completion("chat", events),
    "completions": lambda events: assemble_completion("completions", events),
    "messages": assemble_message,
    "responses": assemble_response,
}


def _frame(event: dict[str, Any]) -> bytes:
    return b"data: " + json_bytes(event) + b"\n\n"


def _named_frame(event: dict[str, Any]) -> bytes:
    """An event as Anthropic and the Responses API send theirs: named by its type."""
    return b"event: " + event["type"].encode() + b"\ndata: " + json_bytes(event) + b"\n\n"


def replay(endpoint: str, answer: dict[str, Any], include_usage: bool) -> Iterator[bytes]:
    """The stored answer as the SSE frames upstream would have sent, the text in pieces."""
    if endpoint == "messages":
        return replay_message(answer)
    if endpoint == "responses":
        return replay_response(answer)
    return replay_completion(endpoint, answer, include_usage)


def replay_message(answer: dict[str, Any]) -> Iterator[bytes]:
    """Anthropic's events: message_start, each content block (start, deltas, stop),
    message_delta with the stop reason and usage, message_stop."""
    head = {**answer, "content": [], "stop_reason": None, "stop_sequence": None}
    yield _named_frame({"type": "message_start", "message": head})
    for index, block in enumerate(answer.get("content") or ()):
        kind = block.get("type")
        deltas: list[dict[str, Any]] = []
        if kind == "text":
            start = {**block, "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block.get("text") or "")]
        elif kind == "thinking":
            start = {**block, "thinking": "", "signature": ""}
            deltas = [
                *({"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"])),
                {"type": "signature_delta", "signature": block.get("signature") or ""},
            ]
        elif kind in ("tool_use", "server_tool_use"):
            start = {**block, "input": {}}
            partial = json_bytes(block.get("input") or {}).decode()
            deltas = [{"type": "input_json_delta", "partial_json": partial}]
        else:  # a block that arrives whole (redacted thinking, a tool's result)
            start = block
        yield _named_frame({"type": "content_block_start", "index": index, "content_block": start})
        for delta in deltas:
            yield _named_frame({"type": "content_block_delta", "index": index, "delta": delta})
        yield _named_frame({"type": "content_block_stop", "index": index})
    delta = {"stop_reason": answer.get("stop_reason"), "stop_sequence": answer.get("stop_sequence")}
    usage = answer.get("usage") or {}
    yield _named_frame({"type": "message_delta", "delta": delta, "usage": usage})
    yield _named_frame({"type": "message_stop"})


def replay_response(answer: dict[str, Any]) -> Iterator[bytes]:
    """The Responses API's events: response.created, response.in_progress, each output
    item (added, its content parts with the text in deltas, done), response.completed."""
    numbers = itertools.count()

    def event(kind: str, **fields: Any) -> bytes:
        return _named_frame({"type": kind, "sequence_number": next(numbers), **fields})

    shell = {**answer, "status": "in_progress", "output": [], "usage": None}
    yield event("response.created", response=shell)
    yield event("response.in_progress", response=shell)
    for out, item in enumerate(answer.get("output") or ()):
        if item.get("type") != "message":  # a function call, reasoning: each whole
            yield event("response.output_item.added", output_index=out, item=item)
            yield event("response.output_item.done", output_index=out, item=item)
            continue
        opened = {**item, "status": "in_progress", "content": []}
        yield event("response.output_item.added", output_index=out, item=opened)
        place = {"item_id": item.get("id"), "output_index": out}
        for index, part in enumerate(item.get("content") or ()):
            text = part.get("text") or ""
            if part.get("type") != "output_text":  # a refusal: whole
                yield event("response.content_part.added", **place, content_index=index, part=part)
            else:
                empty = {**part, "text": ""}
                yield event("response.content_part.added", **place, content_index=index, part=empty)
                for piece in _pieces(text):
                    yield event(
                        "response.output_text.delta",
                        **place,
                        content_index=index,
                        delta=piece,
                        logprobs=[],
                    )
                done: dict[str, Any] = {"content_index": index, "text": text, "logprobs": []}
                yield event("response.output_text.done", **place, **done)
            yield event("response.content_part.done", **place, content_index=index, part=part)
        yield event("response.output_item.done", output_index=out, item=item)
    yield event("response.completed", response=answer)


def replay_completion(
    endpoint: str, answer: dict[str, Any], include_usage: bool
) -> Iterator[bytes]:
    """OpenAI's chunks: role, pieces, finish, usage, [DONE]."""
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
            json_bytes(c["message"]["tool_calls"]).decode()
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
