"""The running counters behind /stats: `Totals`, changed only by ledger rows and events.

`Totals.to_json` / `Totals.from_json` are the form the totals take in a ledger `load` marker and in
the shared store (gateway.accounting.fleet); `replay` rebuilds them from a ledger.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gateway.accounting.bill import DELIVERED
from gateway.accounting.ledger import Ledger, LedgerEvent, LedgerRow
from gateway.accounting.records import REFUSED, UPSTREAM_NAMES

RESERVOIR_SIZE = 10_000
MARKER_KINDS = ("reset", "load")
COUNTED_EVENT_KINDS = ("error", "rate_limit", "speculative", "refusals")


class StatsFileError(ValueError):
    """Published or saved totals are malformed; the message names where they came from."""


def _zeros() -> dict[str, int]:
    return dict.fromkeys(UPSTREAM_NAMES, 0)


def _reservoir() -> deque[float]:
    return deque(maxlen=RESERVOIR_SIZE)


_INT_FIELDS = (
    "requests",
    "fallbacks",
    "counterfactual_tokens",
    "drafts",
    "verifications",
    "accepted",
    "rejected",
    "draft_tokens",
    "verification_tokens",
    "rate_limit_hits",
    "estimated_requests",
    "told_not_to_think",
    "refusals",
)
_FLOAT_FIELDS = ("cost_usd", "cerebras_cost_usd", "counterfactual_usd")
_COUNTER_FIELDS = (
    "by_model",
    "by_outcome",
    "by_strategy",
    "by_door",
    "prompt_tokens",
    "completion_tokens",
    "errors",
    "reasoning_tokens",
    "refusals_by_status",
    "cached_tokens",
)
_RESERVOIR_FIELDS = ("ttft_s", "duration_s")
LATENCY_BOUND = RESERVOIR_SIZE * len(_RESERVOIR_FIELDS)
# Totals added after the first version: older totals (a `load` marker in an old ledger, an older
# replica's published totals) lack them and read them as zero.
_ADDED_TOTALS: dict[str, Any] = {
    "told_not_to_think": 0,
    "reasoning_tokens": {},
    "refusals": 0,
    "refusals_by_status": {},
    "by_door": {},
    "cached_tokens": {},
}


@dataclass(slots=True)
class Totals:
    """The aggregates; `apply_row` / `apply_event` are the only ways they change."""

    requests: int = 0
    by_model: dict[str, int] = field(default_factory=_zeros)
    by_outcome: dict[str, int] = field(default_factory=dict)
    by_strategy: dict[str, int] = field(default_factory=dict)
    by_door: dict[str, int] = field(default_factory=dict)
    fallbacks: int = 0
    prompt_tokens: dict[str, int] = field(default_factory=_zeros)
    completion_tokens: dict[str, int] = field(default_factory=_zeros)
    cost_usd: float = 0.0
    cerebras_cost_usd: float = 0.0
    counterfactual_usd: float = 0.0
    counterfactual_tokens: int = 0
    drafts: int = 0
    verifications: int = 0
    accepted: int = 0
    rejected: int = 0
    draft_tokens: int = 0
    verification_tokens: int = 0
    errors: dict[str, int] = field(default_factory=_zeros)
    rate_limit_hits: int = 0
    estimated_requests: int = 0
    reasoning_tokens: dict[str, int] = field(default_factory=_zeros)
    cached_tokens: dict[str, int] = field(default_factory=_zeros)
    told_not_to_think: int = 0
    refusals: int = 0  # refused requests: never counted as served ones
    refusals_by_status: dict[str, int] = field(default_factory=dict)
    ttft_s: deque[float] = field(default_factory=_reservoir)
    duration_s: deque[float] = field(default_factory=_reservoir)

    def apply_row(self, row: LedgerRow) -> None:
        if row.outcome == REFUSED:
            self.refused(str(row.http_status))
            return
        self.requests += 1
        if row.model_used is not None:
            _bump(self.by_model, row.model_used)
        _bump(self.by_outcome, row.outcome)
        _bump(self.by_strategy, row.strategy)
        _bump(self.by_door, row.door)
        self.fallbacks += row.fallback
        _split(self.prompt_tokens, row.local_prompt_tokens, row.cerebras_prompt_tokens)
        _split(self.completion_tokens, row.local_completion_tokens, row.cerebras_completion_tokens)
        self.cost_usd += row.cost_usd
        self.cerebras_cost_usd += row.cerebras_cost_usd
        self.counterfactual_usd += row.counterfactual_usd
        if row.outcome in DELIVERED:
            self.counterfactual_tokens += (
                row.counterfactual_prompt_tokens + row.counterfactual_completion_tokens
            )
        self.verifications += row.verify_calls
        if row.accepted is not None:
            self._verdict(row.draft_tokens or 0, row.verified_tokens or 0, row.accepted)
        _split(self.errors, row.errors_local, row.errors_cerebras)
        self.rate_limit_hits += row.rate_limit_hits
        self.estimated_requests += row.estimated
        _split(self.reasoning_tokens, row.local_reasoning_tokens, row.cerebras_reasoning_tokens)
        _split(self.cached_tokens, row.local_cached_tokens, row.cerebras_cached_tokens)
        self.told_not_to_think += row.told_not_to_think
        if row.ttft_s is not None:
            self.ttft_s.append(row.ttft_s)
        if row.duration_s > 0:
            self.duration_s.append(row.duration_s)

    def refused(self, status: str, count: int = 1) -> None:
        self.refusals += count
        _bump(self.refusals_by_status, status, count)

    def apply_event(self, event: LedgerEvent) -> None:
        if event.kind == "refusals" and event.data is not None:
            for status, count in dict(event.data.get("by_status") or {}).items():
                self.refused(str(status), int(count))
        elif event.kind == "error":
            _bump(self.errors, event.model or "unknown")
        elif event.kind == "rate_limit":
            self.rate_limit_hits += 1
        elif event.kind == "speculative" and event.data is not None:
            verified = int(event.data.get("verified_tokens", 0))
            self.verifications += verified > 0
            self._verdict(
                int(event.data.get("draft_tokens", 0)), verified, bool(event.data.get("accepted"))
            )

    def _verdict(self, draft_tokens: int, verified_tokens: int, accepted: bool) -> None:
        self.drafts += 1
        self.accepted += accepted
        self.rejected += not accepted
        self.draft_tokens += draft_tokens
        self.verification_tokens += verified_tokens

    def add(self, other: Totals) -> None:
        """Add `other`'s counts to these (latency reservoirs are not added)."""
        for name in _INT_FIELDS + _FLOAT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in _COUNTER_FIELDS:
            counter = getattr(self, name)
            for key, value in getattr(other, name).items():
                _bump(counter, key, value)

    def latency_samples(self) -> int:
        """How many latency values the reservoirs hold (at most LATENCY_BOUND)."""
        return len(self.ttft_s) + len(self.duration_s)

    def to_json(self, *, latencies: bool = True) -> dict[str, Any]:
        """Every field as JSON; without `latencies` the reservoirs are empty lists."""
        data: dict[str, Any] = {name: getattr(self, name) for name in _INT_FIELDS + _FLOAT_FIELDS}
        data.update({name: dict(getattr(self, name)) for name in _COUNTER_FIELDS})
        data.update(
            {name: list(getattr(self, name)) if latencies else [] for name in _RESERVOIR_FIELDS}
        )
        return data

    @classmethod
    def from_json(cls, data: Any, where: str) -> Totals:
        """Validate every field; raise StatsFileError naming `where` and the bad key."""
        if not isinstance(data, dict):
            raise StatsFileError(f"{where}: totals must be an object")
        data = {**_ADDED_TOTALS, **data}
        totals = cls()
        for name in _INT_FIELDS:
            setattr(totals, name, _check_int(data, name, where))
        for name in _FLOAT_FIELDS:
            setattr(totals, name, _check_float(data.get(name), f"{where}: totals.{name}"))
        for name in _COUNTER_FIELDS:
            getattr(totals, name).update(_check_counter(data, name, where))
        for name in _RESERVOIR_FIELDS:
            values = data.get(name)
            if not isinstance(values, list):
                raise StatsFileError(f"{where}: totals.{name}: expected a list of numbers")
            getattr(totals, name).extend(
                _check_float(v, f"{where}: totals.{name}[{i}]") for i, v in enumerate(values)
            )
        return totals


def _bump(counter: dict[str, int], key: str, by: int = 1) -> None:
    counter[key] = counter.get(key, 0) + by


def _split(counter: dict[str, int], local: int, cerebras: int) -> None:
    """Add a row's per-upstream pair (the ledger keeps one column per upstream)."""
    counter["local"] += local
    counter["cerebras"] += cerebras


def _check_int(data: dict[str, Any], name: str, where: str) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise StatsFileError(f"{where}: totals.{name}: expected an integer, got {value!r}")
    return value


def _check_float(value: Any, where: str) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value):
        raise StatsFileError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _check_counter(data: dict[str, Any], name: str, where: str) -> dict[str, int]:
    value = data.get(name)
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        raise StatsFileError(f"{where}: totals.{name}: expected an object of integers")
    return value


def replay(ledger: Ledger) -> Totals:
    """The totals since the latest `reset` or `load` marker (a `load` marker carries them)."""
    marker = ledger.latest_event(MARKER_KINDS)
    totals, since_row, since_event = Totals(), 0, 0
    if marker is not None:
        since_row, since_event = marker.last_request_id, marker.id
        if marker.kind == "load":
            totals = Totals.from_json(marker.data, f"ledger {ledger.path}: event {marker.id}")
    for row in ledger.iter_rows(since_row):
        totals.apply_row(row)
    for event in ledger.events(since_event, kinds=COUNTED_EVENT_KINDS):
        totals.apply_event(event)
    return totals
