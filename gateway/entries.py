"""A cached answer, as every tier and backend stores it, and how its body is kept on disk."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import zstandard

# What an entry costs a store besides its body and text and vector (keys, columns, indexes).
ENTRY_OVERHEAD = 256


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
    tags: tuple[str, ...] = ()  # X-Cache-Tags of the request that stored it

    def __post_init__(self) -> None:
        if not self.checksum:
            self.checksum = body_checksum(self.body)

    @property
    def size(self) -> int:
        """Bytes held in memory; a store counts the body and request as it keeps them
        (BodyCodec)."""
        return len(self.body) + len(self.request or b"") + self.overhead

    @property
    def overhead(self) -> int:
        return len(self.text or "") + len(self.vector or b"") + ENTRY_OVERHEAD

    def age(self, now: float) -> float:
        return max(0.0, now - self.created_at)

    def fresh(self, now: float, max_age: float | None) -> bool:
        return now < self.expires_at and (max_age is None or self.age(now) <= max_age)

    def too_old(self, now: float) -> str:
        """Why an entry that is not fresh is not: its TTL ran out, or the request's max-age."""
        return "ttl" if now >= self.expires_at else "max-age"

    def intact(self) -> bool:
        return self.checksum == body_checksum(self.body)


def body_checksum(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=8).hexdigest()


def tags_text(tags: tuple[str, ...]) -> str:
    """Tags as a store keeps them: ",a,b," (each between commas, so a purge looks for
    ",a,"), or "" for none."""
    return f",{','.join(tags)}," if tags else ""


def tags_of(text: str | None) -> tuple[str, ...]:
    return tuple(tag for tag in (text or "").split(",") if tag)


class DamagedBody(ValueError):
    """A stored body that cannot be unpacked: the entry is dropped, never served."""


class BodyCodec:
    """Bodies of at least `min_bytes` are kept zstd-compressed in a store (None: never).
    The entry's checksum covers the body as served, so it is checked after unpacking.
    One codec per store, used by one thread at a time (zstandard's contexts are not
    thread-safe): SQLite packs on its writer thread and unpacks on the event loop."""

    LEVEL = 3  # zstd's default: tens of microseconds for a few KiB, off the request path

    def __init__(self, min_bytes: int | None) -> None:
        self.min_bytes = min_bytes
        self._compressor = zstandard.ZstdCompressor(level=self.LEVEL)
        self._decompressor = zstandard.ZstdDecompressor()

    def pack(self, body: bytes) -> tuple[bytes, bool]:
        """(the bytes to store, whether they are compressed)."""
        if self.min_bytes is None or len(body) < self.min_bytes:
            return body, False
        packed = self._compressor.compress(body)
        return (packed, True) if len(packed) < len(body) else (body, False)

    def unpack(self, stored: bytes, compressed: bool) -> bytes:
        if not compressed:
            return stored
        try:
            return self._decompressor.decompress(stored)
        except zstandard.ZstdError as exc:
            raise DamagedBody(str(exc)) from None
