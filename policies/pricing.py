"""Prices: USD per 1M tokens by model, and what a request cost or saved. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Price:
    input: float  # USD per 1M prompt tokens
    output: float  # USD per 1M completion tokens
    cached_input: float | None = None


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

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for that usage, or None when the model has no price."""
        price = self.price(model)
        if price is None:
            return None
        return (prompt_tokens * price.input + completion_tokens * price.output) / 1_000_000
