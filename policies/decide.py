"""What to do with one request: may we read, may we store, for how long, under which keys.

`decide` is the single place where the body, the control headers and the config meet.
It is pure: pass `now` in; it never reads a clock, a file or the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from policies.controls import Controls
from policies.keys import Variant, context_key, exact_key

Endpoint = Literal["chat", "completions"]
# Only the last user message is compared by meaning; these make a request exact-only.
# Requests whose answer depends on more than the meaning of their text: tool calls, and a
# completion that echoes its prompt (a reworded prompt's answer would echo another).
EXACT_ONLY_FIELDS = ("tools", "functions", "tool_choice", "function_call", "echo")


class RequestError(ValueError):
    """The body is not a valid request; `param` names the offending field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    default_ttl: float = 7 * 86400
    max_ttl: float = 30 * 86400
    key_ignore: tuple[str, ...] = ("stream", "stream_options", "user")
    shared_tenant: str | None = None
    semantic_enabled: bool = True
    semantic_min_chars: int = 8
    semantic_max_chars: int = 2000
    default_threshold: float = 0.5
    max_messages: int = 4096


@dataclass(frozen=True, slots=True)
class SemanticQuery:
    text: str  # the last user message (or the prompt), compared by meaning
    context_key: str  # everything else; a match must be in the same partition
    threshold: float  # calibrated score a candidate must reach


@dataclass(frozen=True, slots=True)
class Decision:
    endpoint: Endpoint
    model: str
    stream: bool
    include_usage: bool
    tenant: str
    namespace: str
    key: str
    read: bool  # may answer from cache
    store: bool  # may store upstream's answer
    status_on_miss: Literal["MISS", "REFRESH", "BYPASS"]
    ttl: float
    max_age: float | None
    semantic: SemanticQuery | None = field(default=None)

    @property
    def wire_form(self) -> tuple[bool, bool]:
        """How the answer goes out: streamed or not, and a stream with a usage chunk or
        not. Requests that differ only here share a cached entry (rendered for each) but
        not a flight, whose bytes are replayed as they came."""
        return self.stream, self.stream and self.include_usage


def _require(condition: bool, message: str, param: str) -> None:
    if not condition:
        raise RequestError(message, param)


def validate(endpoint: Endpoint, body: Any) -> None:
    """Raise RequestError for a body whose fields have the wrong types."""
    _require(isinstance(body, dict), "the request body must be a JSON object", None)  # type: ignore[arg-type]
    _require(
        isinstance(body.get("model"), str) and body["model"] != "",
        "'model' is required and must be a non-empty string",
        "model",
    )
    if endpoint == "chat":
        messages = body.get("messages")
        _require(
            isinstance(messages, list) and len(messages) > 0,
            "'messages' is required and must be a non-empty array",
            "messages",
        )
        for i, message in enumerate(messages):
            _require(
                isinstance(message, dict) and isinstance(message.get("role"), str),
                f"messages[{i}] must be an object with a string 'role'",
                f"messages[{i}]",
            )
            content = message.get("content")
            _require(
                content is None or isinstance(content, str | list),
                f"messages[{i}].content must be a string or an array",
                f"messages[{i}].content",
            )
    else:
        prompt = body.get("prompt")
        _require(isinstance(prompt, str | list), "'prompt' must be a string or an array", "prompt")
    for name, kinds in (
        ("stream", bool),
        ("n", int),
        ("temperature", int | float),
        ("top_p", int | float),
        ("max_tokens", int),
        ("seed", int),
    ):
        value = body.get(name)
        _require(
            value is None
            or (isinstance(value, kinds) and not (kinds is not bool and isinstance(value, bool))),
            f"'{name}' has the wrong type",
            name,
        )
    options = body.get("stream_options")
    _require(
        options is None or isinstance(options, dict),
        "'stream_options' must be an object",
        "stream_options",
    )


def _text_content(content: Any) -> str | None:
    """The text of a message content, or None when it holds anything but text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        for part in content
    ):
        return "\n".join(part["text"] for part in content)
    return None


def semantic_split(endpoint: Endpoint, body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(text compared by meaning, the body without it), or None if the request is exact-only."""
    if any(body.get(name) for name in EXACT_ONLY_FIELDS) or (body.get("n") or 1) > 1:
        return None
    if endpoint == "completions":
        prompt = body["prompt"]
        return (prompt, {**body, "prompt": None}) if isinstance(prompt, str) else None
    messages = body["messages"]
    last = messages[-1]
    if last.get("role") != "user" or set(last) - {"role", "content", "name"}:
        return None
    if any(
        m.get("role") == "tool" or m.get("tool_calls") or m.get("function_call") for m in messages
    ):
        return None
    text = _text_content(last.get("content"))
    if text is None:
        return None
    return text, {**body, "messages": [*messages[:-1], {**last, "content": None}]}


def ttl_for(controls: Controls, config: PolicyConfig) -> float:
    """Seconds a stored answer stays fresh: X-Cache-TTL or the default, capped by max_ttl."""
    return min(config.default_ttl if controls.ttl is None else controls.ttl, config.max_ttl)


def decide(
    endpoint: Endpoint,
    body: Any,
    controls: Controls,
    tenant: str,
    config: PolicyConfig,
    variant: Variant = (),
) -> Decision:
    """The decision for one cacheable request; raises RequestError for a malformed body.
    `variant` (the query string, version headers) is part of the exact key and context."""
    validate(endpoint, body)
    if len(body.get("messages") or ()) > config.max_messages:
        raise RequestError(f"too many messages (limit {config.max_messages})", "messages")
    options = body.get("stream_options") or {}
    key = exact_key(endpoint, body, tenant, controls.namespace, config.key_ignore, variant)
    ttl = ttl_for(controls, config)
    bypass = controls.mode == "off"
    status = "BYPASS" if bypass else "REFRESH" if controls.no_cache else "MISS"
    semantic = None
    if controls.mode == "semantic" and config.semantic_enabled and not bypass:
        split = semantic_split(endpoint, body)
        if (
            split
            and config.semantic_min_chars <= len(split[0].strip()) <= config.semantic_max_chars
        ):
            text, rest = split
            semantic = SemanticQuery(
                text=text.strip(),
                context_key=context_key(
                    endpoint, rest, tenant, controls.namespace, config.key_ignore, variant
                ),
                threshold=config.default_threshold
                if controls.threshold is None
                else controls.threshold,
            )
    return Decision(
        endpoint=endpoint,
        model=body["model"],
        stream=bool(body.get("stream")),
        include_usage=bool(options.get("include_usage")),
        tenant=tenant,
        namespace=controls.namespace,
        key=key,
        read=not bypass and not controls.no_cache,
        store=not bypass and not controls.no_store and ttl > 0,
        status_on_miss=status,  # type: ignore[arg-type]
        ttl=ttl,
        max_age=controls.max_age,
        semantic=semantic,
    )


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether nested arrays/objects go deeper than `limit` (iterative: no recursion limit)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
