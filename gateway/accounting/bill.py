"""The price of one recorded request, computed once: the ledger, `/stats`, `/metrics` and the
budget all read this bill and never multiply tokens by a price themselves.

- cost of a call = (prompt - cached) x input price + cached x cached-input price
  + completion x output price, with the prices of the call's upstream (none configured: free).
  `cached_tokens` are the part of the prompt the upstream served from its cache.
- cost of a request = sum over ALL its calls (answer, draft, verify, cancelled or failed).
- counterfactual = what Cerebras would have billed for the delivered answer (the record's
  counterfactual tokens at Cerebras prices) when the outcome delivered one (`ok`,
  `client_disconnected`), else 0.
- saved = counterfactual - the Cerebras part of the cost (negative when routing cost more).

Token counts that are not non-negative numbers are priced as 0, as the ledger stores them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.accounting.records import RequestRecord, UpstreamCall
from gateway.config import Prices

DELIVERED = frozenset({"ok", "client_disconnected"})
COUNTERFACTUAL_UPSTREAM = "cerebras"
FREE = Prices()

Tariff = Mapping[str, Prices]


@dataclass(frozen=True, slots=True)
class Bill:
    """What one request cost, in US dollars. `calls[i]` prices `record.calls[i]`."""

    calls: tuple[float, ...]
    local_usd: float
    cerebras_usd: float
    counterfactual_usd: float

    @property
    def total_usd(self) -> float:
        return self.local_usd + self.cerebras_usd

    @property
    def saved_usd(self) -> float:
        return cost_saved_usd(self.counterfactual_usd, self.cerebras_usd)


def cost_saved_usd(counterfactual_usd: float, cerebras_cost_usd: float) -> float:
    """Money saved against all-Cerebras (negative when routing cost more), to 6 decimals."""
    return round(counterfactual_usd - cerebras_cost_usd, 6)


def token_count(value: Any) -> int:
    """A token count as billed and stored: a number as a non-negative int, anything else 0."""
    if type(value) is int:  # the usual case, without the conversion below
        return value if value > 0 else 0
    try:
        return max(0, int(value))
    except (TypeError, ValueError, OverflowError):
        return 0


def price(prices: Prices, prompt_tokens: Any, completion_tokens: Any, cached_tokens: Any) -> float:
    """Dollars for these token counts; cached tokens are part of the prompt (at most all of it)."""
    prompt = token_count(prompt_tokens)
    cached = min(token_count(cached_tokens), prompt)
    return (
        (prompt - cached) * prices.input_per_million
        + cached * prices.cached_rate
        + token_count(completion_tokens) * prices.output_per_million
    ) / 1_000_000


def call_cost(call: UpstreamCall, tariff: Tariff) -> float:
    """One upstream call at its upstream's prices."""
    prices = tariff.get(str(call.upstream), FREE)
    return price(prices, call.prompt_tokens, call.completion_tokens, call.cached_tokens)


def bill(record: RequestRecord, tariff: Tariff) -> Bill:
    """Price `record` once (see the module docstring for the formulas)."""
    calls = tuple(call_cost(call, tariff) for call in record.calls or ())
    local = cerebras = 0.0
    for call, cost in zip(record.calls or (), calls, strict=True):
        if call.upstream == "cerebras":
            cerebras += cost
        elif call.upstream == "local":
            local += cost
    counterfactual = 0.0
    if record.outcome in DELIVERED:
        counterfactual = price(
            tariff.get(COUNTERFACTUAL_UPSTREAM, FREE),
            record.counterfactual_prompt_tokens,
            record.counterfactual_completion_tokens,
            record.counterfactual_cached_tokens,
        )
    return Bill(calls, local, cerebras, counterfactual)
