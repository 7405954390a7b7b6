"""Cache keys: canonical JSON of everything that can change an answer, hashed.

The exact key covers the whole request body (minus an ignore-list) plus tenant,
namespace and endpoint. The context key covers the same minus the one text that the
semantic tier compares by meaning, so two requests can only match semantically when
everything around that text is identical.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

ANONYMOUS_TENANT = "anonymous"


def canonical_json(value: Any) -> bytes:
    """Byte-identical for equal JSON values: keys sorted, no whitespace."""
    return json_bytes(value, sort_keys=True)


def json_bytes(value: Any, sort_keys: bool = False) -> bytes:
    """A JSON value written compactly, any integer JSON allows included."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except orjson.JSONEncodeError:  # an integer past 64 bits either way: orjson cannot write it
        return json.dumps(
            value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False
        ).encode()


def digest(*parts: bytes | str) -> str:
    """A 128-bit hex digest of the parts, unambiguous about where each part ends."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def tenant_of(credentials: Sequence[tuple[str, str]], shared_tenant: str | None = None) -> str:
    """The caller's tenant: a hash of the API key it sent (never the key), or the configured
    shared one. `credentials` are the (header, value) pairs sent with a value. With several
    (a placeholder Authorization beside the real api-key, say) the hash covers them all:
    any of them may be the key upstream reads, and one shared placeholder must not make
    one tenant of every caller."""
    if shared_tenant:
        return shared_tenant
    if not credentials:
        return ANONYMOUS_TENANT
    if len(credentials) == 1:  # the value alone, as before several were read
        text = credentials[0][1].strip()
    else:
        text = "\n".join(f"{name.lower()}: {value.strip()}" for name, value in credentials)
    # surrogateescape: a header value that is not UTF-8 hashes as the bytes that were sent.
    return "t_" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:24]


def without(body: dict[str, Any], ignored: Iterable[str]) -> dict[str, Any]:
    ignored = set(ignored)
    return {k: v for k, v in body.items() if k not in ignored}


Variant = tuple[tuple[str, str], ...]
"""What besides the body selects an answer: the query string's parameters (Azure's
api-version) and an API's version headers (anthropic-version), as sorted (name, value)."""


def _variant_part(variant: Variant) -> tuple[bytes, ...]:
    # Only when there is one, so that the keys of plain requests stay what they were.
    return (canonical_json(variant),) if variant else ()


def exact_key(
    endpoint: str,
    body: dict[str, Any],
    tenant: str,
    namespace: str,
    ignored: Iterable[str],
    variant: Variant = (),
) -> str:
    return digest(
        "exact",
        endpoint,
        tenant,
        namespace,
        canonical_json(without(body, ignored)),
        *_variant_part(variant),
    )


def context_key(
    endpoint: str,
    body_without_text: dict[str, Any],
    tenant: str,
    namespace: str,
    ignored: Iterable[str],
    variant: Variant = (),
) -> str:
    """Partition of the semantic tier; the body must already have the compared text removed."""
    return digest(
        "context",
        endpoint,
        tenant,
        namespace,
        canonical_json(without(body_without_text, ignored)),
        *_variant_part(variant),
    )


def item_key(
    tenant: str, namespace: str, params: dict[str, Any], item: Any, variant: Variant = ()
) -> str:
    """Key of one input item of an embeddings request (model, dimensions, format, the item)."""
    return digest(
        "embedding",
        tenant,
        namespace,
        canonical_json(params),
        canonical_json(item),
        *_variant_part(variant),
    )
