"""Prices per model, in integer micro-dollars per 1M tokens."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from gateway.config import Price

MICROS = 1_000_000


def usd_to_micros(usd: Decimal | float | str) -> int:
    return int((Decimal(str(usd)) * MICROS).to_integral_value())


@dataclass(frozen=True, slots=True)
class ModelPrice:
    input: int  # micro-dollars per 1M prompt tokens
    output: int  # micro-dollars per 1M completion tokens
    cached_input: int  # micro-dollars per 1M cached prompt tokens

    @classmethod
    def from_config(cls, p: Price) -> ModelPrice:
        cached = p.cached_input if p.cached_input is not None else p.input
        return cls(usd_to_micros(p.input), usd_to_micros(p.output), usd_to_micros(cached))

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> int:
        """Micro-dollars for one request, rounded up to a whole micro-dollar."""
        cached = min(max(cached_tokens, 0), prompt_tokens)
        nano = ((prompt_tokens - cached) * self.input + cached * self.cached_input
                + completion_tokens * self.output)
        return -(-nano // MICROS)  # ceil division

    def as_usd(self) -> dict[str, float]:
        return {"input": self.input / MICROS, "cached_input": self.cached_input / MICROS,
                "output": self.output / MICROS}


FREE = ModelPrice(0, 0, 0)
