"""From a RequestRecord to its ledger row: each field mapped to its column by name, in code.

Values are coerced, never raised on: a bad number is logged and stored as the column's default,
a call that is not an UpstreamCall is logged and left out, so bad input never costs the row.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.accounting.ledger.schema import LedgerRow
from gateway.accounting.records import RequestRecord, SpeculativeRecord, UpstreamCall

log = logging.getLogger("gateway.accounting.ledger")


def as_int(value: object, what: str) -> int:
    """A non-negative int, or 0 (logged) when `value` is not a finite number."""
    if type(value) is int:  # the usual case, without the conversions below
        return value if value > 0 else 0
    try:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(value)
        number: int = int(value)  # type: ignore[call-overload]
        return max(0, number)
    except (TypeError, ValueError, OverflowError):
        log.warning("ledger: bad %s %r stored as 0", what, value)
        return 0


def _finite(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def as_float(value: object, what: str, default: float) -> float:
    """A finite float; None gives `default`, and so does anything else (logged)."""
    number = as_optional_float(value, what, default)
    return default if number is None else number


def as_optional_float(value: object, what: str, default: float | None = None) -> float | None:
    """A finite float; None stays None, anything else (logged) gives `default`."""
    if value is None:
        return None
    if type(value) is float and math.isfinite(value):  # the usual case
        return value
    number = _finite(value)
    if number is None:
        log.warning("ledger: bad %s %r stored as %r", what, value, default)
        return default
    return number


def as_str(value: object) -> str | None:
    return None if value is None else str(value)


def call_json(call: UpstreamCall) -> dict[str, Any]:
    """One call as stored in the row's `calls` list (every field of UpstreamCall)."""
    return {
        "upstream": call.upstream,
        "role": call.role,
        "status": call.status,
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens,
        "cached_tokens": call.cached_tokens,
        "estimated": call.estimated,
        "error": call.error,
        "http_status": call.http_status,
        "reasoning_tokens": call.reasoning_tokens,
        "thinking_off": call.thinking_off,
    }


@dataclass(slots=True)
class _UpstreamSums:
    prompt: int = 0
    completion: int = 0
    reasoning: int = 0
    cached: int = 0
    errors: int = 0

    def add(self, call: UpstreamCall) -> None:
        self.prompt += as_int(call.prompt_tokens, "prompt_tokens")
        self.cached += as_int(call.cached_tokens, "cached_tokens")
        self.completion += as_int(call.completion_tokens, "completion_tokens")
        self.reasoning += as_int(call.reasoning_tokens, "reasoning_tokens")
        self.errors += call.status in ("error", "rate_limited")


@dataclass(slots=True)
class _CallSums:
    """What the row sums over a record's calls."""

    local: _UpstreamSums
    cerebras: _UpstreamSums
    verify_calls: int = 0
    rate_limit_hits: int = 0
    estimated: bool = False
    told_not_to_think: bool = False

    @classmethod
    def of(cls, calls: list[UpstreamCall]) -> _CallSums:
        sums = cls(_UpstreamSums(), _UpstreamSums())
        for call in calls:
            if call.upstream == "local":
                sums.local.add(call)
            elif call.upstream == "cerebras":
                sums.cerebras.add(call)
            else:
                log.warning("ledger: call to unknown upstream %r not summed", call.upstream)
            sums.verify_calls += call.role == "verify"
            sums.rate_limit_hits += call.status == "rate_limited"
            sums.estimated = sums.estimated or bool(call.estimated)
            sums.told_not_to_think = sums.told_not_to_think or bool(call.thinking_off)
        return sums


def _known_calls(record: RequestRecord) -> list[UpstreamCall]:
    calls = []
    for call in record.calls or ():
        if isinstance(call, UpstreamCall):
            calls.append(call)
        else:
            log.warning("ledger: req=%s call %r is not an UpstreamCall; left out",
                        record.request_id, call)  # fmt: skip
    return calls


def flatten(
    record: RequestRecord,
    *,
    cost_usd: float,
    counterfactual_usd: float,
    cerebras_cost_usd: float | None = None,
) -> LedgerRow:
    """Turn a record into a row (id 0). Bad values are logged and replaced, never raised.

    `cerebras_cost_usd` is the part of `cost_usd` billed by Cerebras (defaults to all of it).
    """
    calls = _known_calls(record)
    sums = _CallSums.of(calls)
    spec: SpeculativeRecord | None = record.speculative
    cost = as_float(cost_usd, "cost_usd", 0.0)
    return LedgerRow(
        id=0,
        recorded_at=time.time(),
        request_id=str(record.request_id),
        started_at=as_float(record.started_at, "started_at", 0.0),
        strategy=str(record.strategy),
        stream=bool(record.stream),
        outcome=str(record.outcome),
        http_status=as_int(record.http_status, "http_status"),
        model_used=as_str(record.model_used),
        error_type=as_str(record.error_type),
        ttft_s=as_optional_float(record.ttft_s, "ttft_s"),
        duration_s=as_float(record.duration_s, "duration_s", 0.0),
        routing_reason=as_str(record.routing_reason),
        fallback=bool(record.fallback),
        local_prompt_tokens=sums.local.prompt,
        local_completion_tokens=sums.local.completion,
        cerebras_prompt_tokens=sums.cerebras.prompt,
        cerebras_completion_tokens=sums.cerebras.completion,
        verify_calls=sums.verify_calls,
        errors_local=sums.local.errors,
        errors_cerebras=sums.cerebras.errors,
        rate_limit_hits=sums.rate_limit_hits,
        estimated=sums.estimated,
        cost_usd=cost,
        cerebras_cost_usd=(
            cost
            if cerebras_cost_usd is None
            else as_float(cerebras_cost_usd, "cerebras_cost_usd", 0.0)
        ),
        counterfactual_usd=as_float(counterfactual_usd, "counterfactual_usd", 0.0),
        counterfactual_prompt_tokens=as_int(
            record.counterfactual_prompt_tokens, "counterfactual_prompt_tokens"
        ),
        counterfactual_completion_tokens=as_int(
            record.counterfactual_completion_tokens, "counterfactual_completion_tokens"
        ),
        draft_tokens=None if spec is None else as_int(spec.draft_tokens, "draft_tokens"),
        verified_tokens=None if spec is None else as_int(spec.verified_tokens, "verified_tokens"),
        accepted=None if spec is None else bool(spec.accepted),
        spilled_over=None if spec is None else bool(spec.spilled_over),
        similarity=None if spec is None else as_float(spec.similarity, "similarity", 0.0),
        decided_by=None if spec is None else str(spec.decided_by),
        calls=orjson.dumps([call_json(c) for c in calls], default=str).decode(),
        local_reasoning_tokens=sums.local.reasoning,
        cerebras_reasoning_tokens=sums.cerebras.reasoning,
        told_not_to_think=sums.told_not_to_think,
        door=str(record.door),
        local_cached_tokens=sums.local.cached,
        cerebras_cached_tokens=sums.cerebras.cached,
    )


def new_request_id(prefix: str) -> str:
    """A unique id for records synthesised outside the proxy path."""
    return f"{prefix}-{uuid.uuid4().hex}"
