"""The `/stats` JSON blocks, rendered from `Totals` (gateway.accounting.aggregates).

The formulas are those of gateway.accounting.stats; dollars are rounded to 6 decimals, percents
to 2, latencies are nearest-rank percentiles in milliseconds to 1 decimal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from gateway.accounting.aggregates import Totals
from gateway.accounting.bill import cost_saved_usd
from gateway.accounting.ledger import Ledger
from gateway.accounting.records import UPSTREAM_NAMES


def format_uptime(seconds: float) -> str:
    """'2h 15m' style (hours keep counting past a day)."""
    minutes = max(0, int(seconds)) // 60
    return f"{minutes // 60}h {minutes % 60}m"


def _percentile(sorted_values: list[float], pct: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return round(sorted_values[rank - 1] * 1000, 1)


def _ms_summary(values: list[float]) -> dict[str, float | None]:
    values.sort()
    return {"p50": _percentile(values, 50), "p95": _percentile(values, 95)}


def _ratio(part: float, whole: float, scale: float) -> float:
    return part / whole * scale if whole else 0.0


def merge_extra(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Add `extra` beside `base`: dicts present in both are merged one level deep."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def render(t: Totals, uptime_s: float) -> dict[str, Any]:
    """The `/stats` blocks of `t` (without `performance.*_ms` and `ledger`)."""
    tokens = {
        name: {
            "prompt": t.prompt_tokens.get(name, 0),
            "completion": t.completion_tokens.get(name, 0),
            "total": t.prompt_tokens.get(name, 0) + t.completion_tokens.get(name, 0),
        }
        for name in UPSTREAM_NAMES
    }
    prompt = sum(v["prompt"] for v in tokens.values())
    completion = sum(v["completion"] for v in tokens.values())
    cerebras_tokens = tokens["cerebras"]["total"]
    saved_usd = cost_saved_usd(t.counterfactual_usd, t.cerebras_cost_usd)
    tokens_saved = t.counterfactual_tokens - cerebras_tokens
    return {
        "uptime": format_uptime(uptime_s),
        "requests": {
            "total": t.requests,
            "by_model": dict(t.by_model),
            "by_outcome": dict(t.by_outcome),
            "by_strategy": dict(t.by_strategy),
            "by_door": dict(t.by_door),
            "fallbacks": t.fallbacks,
        },
        "tokens": {
            "total": prompt + completion,
            "prompt": prompt,
            "completion": completion,
            "by_model": tokens,
            "reasoning": {
                **{name: t.reasoning_tokens.get(name, 0) for name in UPSTREAM_NAMES},
                "total": sum(t.reasoning_tokens.values()),
            },
            "cached": {
                **{name: t.cached_tokens.get(name, 0) for name in UPSTREAM_NAMES},
                "total": sum(t.cached_tokens.values()),
            },
        },
        "thinking": {"told_not_to_think": t.told_not_to_think},
        "costs": {
            "total_cost_usd": round(t.cost_usd, 6),
            "cost_saved_usd": saved_usd,
            "cerebras_cost_per_1k_tokens": round(
                _ratio(t.cerebras_cost_usd, cerebras_tokens, 1000), 6
            ),
            "counterfactual_cost_usd": round(t.counterfactual_usd, 6),
            "cerebras_cost_usd": round(t.cerebras_cost_usd, 6),
            "savings_negative": saved_usd < 0,
            "estimated_tokens": t.estimated_requests > 0,
            "estimated_requests": t.estimated_requests,
        },
        "speculative_decoding": {
            "total_drafts": t.drafts,
            "total_verifications": t.verifications,
            "drafts_accepted": t.accepted,
            "drafts_rejected": t.rejected,
            "acceptance_rate_percent": round(_ratio(t.accepted, t.drafts, 100), 2),
            "total_draft_tokens": t.draft_tokens,
            "total_verification_tokens": t.verification_tokens,
            "tokens_saved": tokens_saved,
            "tokens_saved_percent": round(_ratio(tokens_saved, t.counterfactual_tokens, 100), 2),
        },
        "errors": {"total": sum(t.errors.values()), "by_model": dict(t.errors)},
        "refusals": {"total": t.refusals, "by_status": dict(t.refusals_by_status)},
        "rate_limits": {"total_hits": t.rate_limit_hits},
        "performance": {
            "avg_tokens_per_request": round(_ratio(prompt + completion, t.requests, 1), 2)
        },
    }


def latency_block(ttft_s: list[float], duration_s: list[float]) -> dict[str, Any]:
    """`performance.ttft_ms` and `performance.duration_ms`: p50 and p95 in milliseconds."""
    return {"ttft_ms": _ms_summary(ttft_s), "duration_ms": _ms_summary(duration_s)}


def ledger_block(ledger: Ledger | None) -> dict[str, Any]:
    """The `/stats` `ledger` block."""
    if ledger is None:
        return {"path": None, "rows": 0}
    return {
        "path": ledger.path,
        "rows": ledger.row_count,
        "pending": ledger.pending,
        "write_errors": ledger.write_errors,
    }
