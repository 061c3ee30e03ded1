"""What a call takes from an upstream's quota before it runs, and what the calls in flight hold.

A reservation is one request plus the prompt's estimated tokens plus the completion limit the
upstream will be sent (after `max_completion_tokens_cap`). `InFlight` keeps the reservations of
one upstream's calls in flight with their running total, so an admission reads the total in
constant time however many calls are in flight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.accounting.tokens import PromptEstimate, completion_limit, estimate_prompt_tokens
from gateway.ratelimit import RateLimitWatcher, Unit

# What Cerebras reserves for zai-glm-4.7 when a request sets no limit (its maximum output); only
# used when `max_completion_tokens_cap` is off and the client sent no limit either.
UNCAPPED_COMPLETION_RESERVATION = 40_000


@dataclass(frozen=True, slots=True)
class Reservation:
    """What one call takes from an upstream's quota before it runs."""

    requests: float = 0.0
    tokens: float = 0.0

    def of(self, unit: Unit) -> float:
        return self.tokens if unit == "tokens" else self.requests

    def __add__(self, other: Reservation) -> Reservation:
        return Reservation(self.requests + other.requests, self.tokens + other.tokens)

    def __sub__(self, other: Reservation) -> Reservation:
        return Reservation(self.requests - other.requests, self.tokens - other.tokens)


class GatedUpstream(Protocol):
    """What the gate needs of an upstream: its watcher and the body it would send."""

    watcher: RateLimitWatcher

    def build_body(self, client_body: Mapping[str, Any]) -> dict[str, Any]: ...


def estimate_reservation(
    upstream: GatedUpstream, body: Mapping[str, Any], prompt_tokens: PromptEstimate | None = None
) -> Reservation:
    """One request, the prompt's estimated tokens and the completion limit the upstream is sent."""
    sent = upstream.build_body(body)
    limit = completion_limit(sent)
    if limit is None:
        limit = UNCAPPED_COMPLETION_RESERVATION
    prompt = prompt_tokens() if prompt_tokens is not None else estimate_prompt_tokens(body)
    return Reservation(requests=1.0, tokens=float(prompt + limit))


class InFlight:
    """The reservations of the calls in flight to one upstream, by key, and their sum.

    `total` is updated as calls are added and removed, never recomputed."""

    __slots__ = ("calls", "total")

    def __init__(self) -> None:
        self.calls: dict[int, Reservation] = {}
        self.total = Reservation()

    def __len__(self) -> int:
        return len(self.calls)

    def add(self, key: int, reservation: Reservation) -> None:
        self.calls[key] = reservation
        self.total = self.total + reservation

    def remove(self, key: int) -> None:
        """Give back the reservation under `key`; a key already removed changes nothing."""
        reservation = self.calls.pop(key, None)
        if reservation is None:
            return
        # With nothing left in flight the total is exactly zero, whatever rounding accumulated.
        self.total = self.total - reservation if self.calls else Reservation()

    def rekey(self, old: int, new: int) -> None:
        """File the reservation under `old` as `new` (the total is unchanged)."""
        self.calls[new] = self.calls.pop(old)
