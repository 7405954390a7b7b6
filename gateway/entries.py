"""A cached answer, as every tier and backend stores it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(slots=True)
class Entry:
    key: str  # exact key (hex)
    tenant: str
    namespace: str
    endpoint: str  # chat | completions | embeddings | messages | responses
    model: str
    body: bytes  # the answer in its non-stream shape, exactly as it is served
    created_at: float
    expires_at: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    upstream_ms: float = 0.0  # how long upstream took: the time a hit saves
    context_key: str | None = None  # semantic partition, when the entry is semantic
    text: str | None = None  # the text compared by meaning
    vector: bytes | None = None  # float32 embedding of `text`
    hits: int = 0
    checksum: str = field(default="")
    request: bytes | None = None  # the request body that stored it, kept for refresh-ahead

    def __post_init__(self) -> None:
        if not self.checksum:
            self.checksum = body_checksum(self.body)

    @property
    def size(self) -> int:
        extra = len(self.text or "") + len(self.vector or b"") + len(self.request or b"")
        return len(self.body) + extra + 256

    def age(self, now: float) -> float:
        return max(0.0, now - self.created_at)

    def fresh(self, now: float, max_age: float | None) -> bool:
        return now < self.expires_at and (max_age is None or self.age(now) <= max_age)

    def intact(self) -> bool:
        return self.checksum == body_checksum(self.body)


def body_checksum(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=8).hexdigest()
