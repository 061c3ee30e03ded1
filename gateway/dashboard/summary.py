"""`GET /dashboard/summary`: what the dashboard shows beside `/stats` and the history.

- `today`: requests, Cerebras spend, savings against all-Cerebras and the local shares over the
  current UTC day (the budget's day), from the ledger, with gateway.accounting.bill's savings
  formula;
- `routing`: today's requests by strategy and by routing-reason kind, and draft verdicts;
- `rate_limits`: one entry per Cerebras window (the headers' windows, then the plan's windows the
  headers do not report) with its headroom and seconds to reset, the admission threshold, the
  cool-down left and the adaptive state;
- `budget`: `/stats`' budget block plus the alert thresholds (percent).

Requests counted are served ones: refusals (outcome `rejected`) are left out.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from gateway.accounting.bill import cost_saved_usd
from gateway.accounting.ledger import Ledger
from gateway.accounting.records import UpstreamName
from gateway.dashboard.requests import reason_kind
from gateway.quota.budget import ALERT_PERCENTS, Budget, day_bounds
from gateway.quota.gate import RateLimitGate
from gateway.ratelimit import window_unit
from gateway.strategies.adaptive import AdaptiveSwitch

_TODAY_SQL = """
SELECT COUNT(*),
       COALESCE(SUM(model_used = 'local'), 0),
       COALESCE(SUM(model_used = 'cerebras'), 0),
       COALESCE(SUM(cerebras_cost_usd), 0.0),
       COALESCE(SUM(counterfactual_usd), 0.0),
       COALESCE(SUM(cost_usd), 0.0),
       COALESCE(SUM(local_prompt_tokens + local_completion_tokens), 0),
       COALESCE(SUM(cerebras_prompt_tokens + cerebras_completion_tokens), 0),
       COALESCE(SUM(accepted IS NOT NULL), 0),
       COALESCE(SUM(accepted = 1), 0),
       COALESCE(SUM(fallback), 0)
FROM requests WHERE started_at >= ? AND started_at < ? AND outcome != 'rejected'
"""
_BY_STRATEGY_SQL = (
    "SELECT strategy, COUNT(*) FROM requests WHERE started_at >= ? AND started_at < ?"
    " AND outcome != 'rejected' GROUP BY strategy"
)
_BY_REASON_SQL = (
    "SELECT routing_reason, COUNT(*) FROM requests WHERE started_at >= ? AND started_at < ?"
    " AND outcome != 'rejected' GROUP BY routing_reason"
)


def _share(part: float, whole: float) -> float:
    return round(part / whole * 100, 2) if whole else 0.0


def today(ledger: Ledger, now: float) -> dict[str, Any]:
    """Today's (UTC) headline numbers and routing counts; synchronous, call from a thread."""
    start, end = day_bounds(now)
    (
        requests,
        local,
        cerebras,
        cerebras_cost,
        counterfactual,
        total_cost,
        local_tokens,
        cerebras_tokens,
        drafts,
        accepted,
        fallbacks,
    ) = ledger.query(_TODAY_SQL, (start, end))[0]
    strategies = dict(ledger.query(_BY_STRATEGY_SQL, (start, end)))
    kinds: Counter[str] = Counter()
    for reason, count in ledger.query(_BY_REASON_SQL, (start, end)):
        kinds[reason_kind(reason)] += count
    tokens = local_tokens + cerebras_tokens
    saved = cost_saved_usd(counterfactual, cerebras_cost)
    return {
        "today": {
            "start": start,
            "end": end,
            "requests": requests,
            "by_model": {"local": local, "cerebras": cerebras, "none": requests - local - cerebras},
            "cerebras_cost_usd": round(cerebras_cost, 6),
            "total_cost_usd": round(total_cost, 6),
            "counterfactual_usd": round(counterfactual, 6),
            "cost_saved_usd": saved,
            "savings_negative": saved < 0,
            "tokens": {"local": local_tokens, "cerebras": cerebras_tokens, "total": tokens},
            "local_share_requests_percent": _share(local, requests),
            "local_share_tokens_percent": _share(local_tokens, tokens),
            "fallbacks": fallbacks,
        },
        "routing": {
            "by_strategy": dict(sorted(strategies.items(), key=lambda kv: -kv[1])),
            "by_reason_kind": dict(kinds.most_common()),
            "drafts": drafts,
            "drafts_accepted": accepted,
            "acceptance_rate_percent": _share(accepted, drafts),
        },
    }


def rate_limits(
    gate: RateLimitGate, switch: AdaptiveSwitch, upstream: UpstreamName = "cerebras"
) -> dict[str, Any]:
    """Gauges for `upstream`'s windows, its cool-down and the adaptive state."""
    windows: list[dict[str, Any]] = []
    up = gate.upstreams.get(upstream)
    if up is not None:
        watcher = up.watcher
        now = watcher.clock()
        for name, window in sorted(watcher.windows.items()):
            reset_in = None if window.reset_at is None else max(0.0, window.reset_at - now)
            remaining = window.remaining
            if reset_in == 0.0 and window.limit is not None:
                remaining = window.limit  # the reset passed: the window is full again
            windows.append(
                {
                    "name": name,
                    "unit": window_unit(name),
                    "source": "headers",
                    "limit": window.limit,
                    "remaining": remaining,
                    "headroom": window.headroom(now),
                    "reset_in_s": None if reset_in is None else round(reset_in, 1),
                }
            )
    reported = {w["name"] for w in windows}
    now = gate.clock()
    for plan in gate.plans.get(upstream, ()):
        if plan.name in reported:
            continue
        left = plan.remaining(now)
        windows.append(
            {
                "name": plan.name,
                "unit": plan.unit,
                "source": "plan",
                "limit": plan.limit,
                "remaining": round(left, 1),
                "headroom": round(left / plan.limit, 4) if plan.limit else None,
                "reset_in_s": None,  # a sliding window never resets all at once
            }
        )
    until = gate.cooling_until.get(upstream, 0.0)
    adaptive = switch.snapshot(now)
    return {
        "upstream": upstream,
        "threshold": gate.threshold,
        "windows": windows,
        "cool_down_remaining_s": round(max(0.0, until - now), 1),
        "adaptive": {
            "state": adaptive["state"],
            "reason": adaptive["reason"],
            "cool_down_remaining_s": adaptive["cool_down_remaining_s"],
            "switches": adaptive["switches"],
        },
    }


def budget(budget: Budget) -> dict[str, Any]:
    """`/stats`' budget block plus the alert thresholds the budget logs at."""
    return {**budget.snapshot(), "alert_percents": list(ALERT_PERCENTS)}
