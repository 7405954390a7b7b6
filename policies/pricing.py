"""Prices: USD per 1M tokens by model, and what a request cost or saved. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Price:
    input: float  # USD per 1M prompt tokens
    output: float  # USD per 1M completion tokens
    cached_input: float | None = None  # prompt tokens read from the provider's prompt cache
    cache_write: float | None = None  # prompt tokens written to it (Anthropic)


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens an answer was billed. `prompt` counts every input token, including the
    `cached` ones (read from the provider's own prompt cache) and the `cache_write` ones
    (written to it), which are priced apart where the table has their price."""

    prompt: int
    completion: int
    cached: int = 0
    cache_write: int = 0


class PriceTable:
    """Looks a model up exactly, then by the longest priced name that prefixes it plus '-'.

    So "gpt-4o-mini-2024-07-18" is priced as "gpt-4o-mini". Unknown models cost nothing
    and are reported as unpriced.
    """

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = dict(prices)
        self._by_length = sorted(self._prices, key=len, reverse=True)

    @classmethod
    def from_mapping(cls, document: Mapping[str, Any]) -> PriceTable:
        models = document.get("models") or {}
        return cls(
            {
                name: Price(
                    float(p["input"]),
                    float(p["output"]),
                    None if p.get("cached_input") is None else float(p["cached_input"]),
                    None if p.get("cache_write") is None else float(p["cache_write"]),
                )
                for name, p in models.items()
            }
        )

    def price(self, model: str) -> Price | None:
        if model in self._prices:
            return self._prices[model]
        for name in self._by_length:
            if model.startswith(name + "-"):
                return self._prices[name]
        # Provider-prefixed names ("openai/gpt-4o") price as the bare model.
        return self.price(model.split("/", 1)[1]) if "/" in model else None

    def cost(
        self,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> float | None:
        """USD for that usage, or None when the model has no price. Prompt tokens read from
        or written to the provider's prompt cache (part of `prompt_tokens`) cost its cache
        prices, or the input price where the table has none."""
        price = self.price(model)
        if price is None:
            return None
        cached = min(cached_tokens, prompt_tokens)
        written = min(cache_write_tokens, prompt_tokens - cached)
        read_price = price.input if price.cached_input is None else price.cached_input
        write_price = price.input if price.cache_write is None else price.cache_write
        micro = (
            (prompt_tokens - cached - written) * price.input
            + cached * read_price
            + written * write_price
            + completion_tokens * price.output
        )
        return micro / 1_000_000
