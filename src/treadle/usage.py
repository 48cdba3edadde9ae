"""Usage limits per run, and prices from the maintained ``genai-prices`` table."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from .types import Usage

__all__ = ["UsageLimits", "price_usd"]

FREE_PROVIDERS = {"local", "llama.cpp", "scripted"}


@dataclass(slots=True)
class UsageLimits:
    """Bounds on one run. Exceeding one ends the run with ``error_type="UsageLimitExceeded"``
    and the step history intact. ``cost_limit_usd`` needs a model ``genai-prices`` knows
    (``pip install 'treadle[prices]'``); local models cost nothing."""

    request_limit: int | None = None
    input_tokens_limit: int | None = None
    output_tokens_limit: int | None = None
    total_tokens_limit: int | None = None
    tool_calls_limit: int | None = None
    cost_limit_usd: float | None = None

    def before_request(self, usage: Usage) -> str | None:
        if self.request_limit is not None and usage.requests >= self.request_limit:
            return f"the request limit of {self.request_limit} model calls was reached"
        # tokens or cost already past a limit (spent by a nested run): no further call
        return self.after_response(usage)

    def after_response(self, usage: Usage) -> str | None:
        checks = ((self.input_tokens_limit, usage.input_tokens, "input tokens"),
                  (self.output_tokens_limit, usage.output_tokens, "output tokens"),
                  (self.total_tokens_limit, usage.total_tokens, "total tokens"))
        for limit, value, what in checks:
            if limit is not None and value > limit:
                return f"{value} {what} exceed the limit of {limit}"
        if self.cost_limit_usd is not None and usage.cost_usd > self.cost_limit_usd:
            return f"the cost ${usage.cost_usd:.6f} exceeds the limit of ${self.cost_limit_usd:.6f}"
        return None

    def before_tools(self, usage: Usage, n: int) -> str | None:
        if self.tool_calls_limit is not None and usage.tool_calls + n > self.tool_calls_limit:
            return f"{usage.tool_calls + n} tool calls would exceed the limit of {self.tool_calls_limit}"
        return None


def price_usd(usage: Usage, model_name: str | None, provider: str | None) -> float | None:
    """The price of one call, or None when unknown. Local models are free."""
    if provider in FREE_PROVIDERS or (model_name or "").startswith(("local", "scripted")):
        return 0.0
    if not model_name:
        return None
    return _price(usage.input_tokens, usage.output_tokens, model_name, provider)


@functools.lru_cache(maxsize=1024)
def _price(input_tokens: int, output_tokens: int, model: str, provider: str | None) -> float | None:
    try:
        import genai_prices
    except ImportError:
        return None
    try:
        calc: Any = genai_prices.calc_price(genai_prices.Usage(input_tokens=input_tokens,
                                                               output_tokens=output_tokens),
                                            model_ref=model, provider_id=provider)
    except LookupError:
        return None
    return float(calc.total_price)
