"""Refresh-ahead (INTERFACE.md, "Rules, eviction, freshness"): when a hot entry served
near its expiry is refreshed from upstream in the background. Pure: the caller passes
`now` and keeps the single flight."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RefreshAhead:
    """An entry hit at least `min_hits` times and served in the last `window` (0-1) of
    its TTL is refreshed; a window of 0 turns refresh-ahead off."""

    min_hits: int = 3
    window: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.window <= 1.0:
            raise ValueError(f"window must be between 0 and 1, not {self.window}")
        if self.min_hits < 1:
            raise ValueError(f"min_hits must be at least 1, not {self.min_hits}")

    @property
    def enabled(self) -> bool:
        return self.window > 0.0

    def due(self, hits: int, created_at: float, expires_at: float, now: float) -> bool:
        """Whether an entry with `hits` hits (this one included), served at `now`, is to
        be refreshed: hot enough, fresh, and within the last `window` of its TTL."""
        ttl = expires_at - created_at
        return (
            self.enabled
            and hits >= self.min_hits
            and ttl > 0
            and expires_at - self.window * ttl <= now < expires_at
        )
