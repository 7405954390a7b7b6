"""What to do with one request: may we read, may we store, for how long, under which keys.

`decide` is the single place where the body, the control headers and the config meet.
It is pure: pass `now` in; it never reads a clock, a file or the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from policies.controls import Controls
from policies.keys import Variant, context_key, exact_key
from policies.rules import Rule, within_rules

# chat and completions: OpenAI's; messages: Anthropic's Messages API; responses: OpenAI's
# Responses API.
Endpoint = Literal["chat", "completions", "messages", "responses"]
# Only the last user message is compared by meaning; these make a request exact-only.
# Requests whose answer depends on more than the meaning of their text: tool calls, and a
# completion that echoes its prompt (a reworded prompt's answer would echo another).
EXACT_ONLY_FIELDS = ("tools", "functions", "tool_choice", "function_call", "echo")
# Responses API requests whose answer depends on state kept upstream: exact-only.
SERVER_STATE_FIELDS = ("previous_response_id", "conversation")
TEXT_PARTS = frozenset({"text", "input_text"})  # a text part of a message, in either API
# Content that is not text: a request carrying it anywhere is exact-only.
FILE_PARTS = frozenset({"image", "document", "input_image", "input_file", "input_audio"})
# Fields whose type validate() checks, on every endpoint and on one.
FIELD_TYPES: tuple[tuple[str, Any], ...] = (
    ("stream", bool),
    ("n", int),
    ("temperature", int | float),
    ("top_p", int | float),
    ("max_tokens", int),
    ("seed", int),
)
FIELD_TYPES_OF: dict[str, tuple[tuple[str, Any], ...]] = {
    "messages": (("system", str | list), ("top_k", int), ("tools", list)),
    "responses": (
        ("instructions", str),
        ("max_output_tokens", int),
        ("background", bool),
        ("tools", list),
    ),
}
# The conversation of each endpoint: the array whose last user item is compared by meaning.
CONVERSATION = {"chat": "messages", "messages": "messages", "responses": "input"}
# X-Cache-Status of a request not answered from cache.
MissStatus = Literal["MISS", "REFRESH", "BYPASS"]


class RequestError(ValueError):
    """The body is not a valid request; `param` names the offending field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """The knobs decide() reads. No defaults here: gateway's `Config.policy()` derives it
    from the one config, whose defaults are written once (and stated in default.yaml)."""

    default_ttl: float
    max_ttl: float
    key_ignore: tuple[str, ...]
    shared_tenant: str | None
    semantic_enabled: bool
    semantic_min_chars: int
    semantic_max_chars: int
    default_threshold: float
    max_messages: int
    rules: tuple[Rule, ...]  # the config's `rules:`, first match wins


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
    status_on_miss: MissStatus
    ttl: float
    max_age: float | None
    semantic: SemanticQuery | None = field(default=None)
    tags: tuple[str, ...] = ()  # stored with the answer; not part of any key
    # Why a request that may read the cache has no semantic query (a name from
    # semantic_split, or the mode, or a length), recorded with its `exact_only` miss.
    exact_only: str | None = None

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
    if endpoint in ("chat", "messages"):
        _validate_messages(body.get("messages"), "messages", role_required=True)
    elif endpoint == "responses":
        items = body.get("input")
        _require(
            isinstance(items, str) or (isinstance(items, list) and len(items) > 0),
            "'input' is required and must be a string or a non-empty array",
            "input",
        )
        if isinstance(items, list):
            _validate_messages(items, "input", role_required=False)
    else:
        prompt = body.get("prompt")
        _require(isinstance(prompt, str | list), "'prompt' must be a string or an array", "prompt")
    for name, kinds in (*FIELD_TYPES, *FIELD_TYPES_OF.get(endpoint, ())):
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


def _validate_messages(messages: Any, name: str, role_required: bool) -> None:
    """A non-empty array of objects with a string role (or, for Responses input items,
    none) and a string or array content."""
    _require(
        isinstance(messages, list) and len(messages) > 0,
        f"'{name}' is required and must be a non-empty array",
        name,
    )
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        _require(
            isinstance(message, dict)
            and (isinstance(role, str) or (role is None and not role_required)),
            f"{name}[{i}] must be an object with a string 'role'",
            f"{name}[{i}]",
        )
        content = message.get("content")
        _require(
            content is None or isinstance(content, str | list),
            f"{name}[{i}].content must be a string or an array",
            f"{name}[{i}].content",
        )


def _text_content(content: Any) -> str | None:
    """The text of a message content, or None when it holds anything but text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(part, dict)
        and part.get("type") in TEXT_PARTS
        and isinstance(part.get("text"), str)
        for part in content
    ):
        return "\n".join(part["text"] for part in content)
    return None


def _carries_tool_output_or_file(item: Any) -> bool:
    """A conversation item that is (or holds) a tool's output, a file or an image."""
    if not isinstance(item, dict):
        return True
    kind = str(item.get("type") or "")
    if kind.endswith("_output") or kind == "item_reference" or item.get("role") == "tool":
        return True
    if item.get("tool_calls") or item.get("function_call"):
        return True
    content = item.get("content")
    return isinstance(content, list) and any(
        not isinstance(part, dict)
        or part.get("type") in FILE_PARTS
        or part.get("type") == "tool_result"
        for part in content
    )


def semantic_split(endpoint: Endpoint, body: dict[str, Any]) -> tuple[str, dict[str, Any]] | str:
    """(text compared by meaning, the body without it), or why the request is exact-only
    (the name the ledger records with an `exact_only` miss)."""
    if endpoint in ("chat", "completions"):
        field = next((name for name in EXACT_ONLY_FIELDS if body.get(name)), None)
        if field is not None:
            return field
    if (body.get("n") or 1) > 1:
        return "n"
    state = next((name for name in SERVER_STATE_FIELDS if body.get(name)), None)
    if state is not None:
        return state
    if endpoint == "completions":
        prompt = body["prompt"]
        return (prompt, {**body, "prompt": None}) if isinstance(prompt, str) else "prompt-array"
    field_name = CONVERSATION[endpoint]
    messages = body[field_name]
    if isinstance(messages, str):  # a Responses input that is one user text
        return messages, {**body, field_name: None}
    last = messages[-1]
    if last.get("role") != "user" or last.get("type", "message") != "message":
        return "last-turn-not-user"
    if set(last) - {"role", "content", "name", "type"}:
        return "message-fields"
    if any(_carries_tool_output_or_file(m) for m in messages):
        return "tool-or-file-turns"
    text = _text_content(last.get("content"))
    if text is None:
        return "non-text"
    return text, {**body, field_name: [*messages[:-1], {**last, "content": None}]}


def ttl_for(controls: Controls, config: PolicyConfig) -> float:
    """Seconds a stored answer stays fresh: X-Cache-TTL or the default, capped by max_ttl."""
    return min(config.default_ttl if controls.ttl is None else controls.ttl, config.max_ttl)


@dataclass(frozen=True, slots=True)
class Access:
    """What the control headers allow a request of any cached route (embeddings too)."""

    read: bool  # may answer from cache
    store: bool  # may store upstream's answer
    status_on_miss: MissStatus
    ttl: float  # seconds a stored answer stays fresh


def access(controls: Controls, config: PolicyConfig, bypass: bool = False) -> Access:
    """Read, store, the status of a miss and the TTL. `bypass`: the request must not touch
    the cache whatever the headers say; X-Cache-Mode: off does the same."""
    ttl = ttl_for(controls, config)
    bypass = bypass or controls.mode == "off"
    return Access(
        read=not bypass and not controls.no_cache,
        store=not bypass and not controls.no_store and ttl > 0,
        status_on_miss="BYPASS" if bypass else "REFRESH" if controls.no_cache else "MISS",
        ttl=ttl,
    )


def semantic_query(
    endpoint: Endpoint,
    body: dict[str, Any],
    controls: Controls,
    tenant: str,
    config: PolicyConfig,
    variant: Variant,
) -> SemanticQuery | str:
    """What the semantic tier compares for this request, or why it is exact-only."""
    if controls.mode != "semantic":
        return "mode-exact"
    if not config.semantic_enabled:
        return "semantic-off"
    split = semantic_split(endpoint, body)
    if isinstance(split, str):
        return split
    text, rest = split[0].strip(), split[1]
    if len(text) < config.semantic_min_chars:
        return "too-short"
    if len(text) > config.semantic_max_chars:
        return "too-long"
    return SemanticQuery(
        text=text,
        context_key=context_key(
            endpoint, rest, tenant, controls.namespace, config.key_ignore, variant
        ),
        threshold=config.default_threshold if controls.threshold is None else controls.threshold,
    )


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
    controls, config = within_rules(endpoint, body["model"], controls, tenant, config)
    conversation = CONVERSATION.get(endpoint, "messages")
    if isinstance(body.get(conversation), list) and len(body[conversation]) > config.max_messages:
        raise RequestError(f"too many messages (limit {config.max_messages})", conversation)
    options = body.get("stream_options") or {}
    key = exact_key(endpoint, body, tenant, controls.namespace, config.key_ignore, variant)
    # A background response is fetched later by its id: there is no answer here to keep.
    allowed = access(controls, config, bypass=body.get("background") is True)
    query = (
        None
        if allowed.status_on_miss == "BYPASS"
        else semantic_query(endpoint, body, controls, tenant, config, variant)
    )
    return Decision(
        endpoint=endpoint,
        model=body["model"],
        stream=bool(body.get("stream")),
        include_usage=endpoint in ("chat", "completions") and bool(options.get("include_usage")),
        tenant=tenant,
        namespace=controls.namespace,
        key=key,
        read=allowed.read,
        store=allowed.store,
        status_on_miss=allowed.status_on_miss,
        ttl=allowed.ttl,
        max_age=controls.max_age,
        semantic=query if isinstance(query, SemanticQuery) else None,
        exact_only=query if isinstance(query, str) else None,
        tags=controls.tags,
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
