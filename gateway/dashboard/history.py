"""`GET /stats/history?window=1h|1d|30d`: spend, savings, requests and tokens over time, from the
ledger.

Buckets are aligned to whole UTC minutes (1h: 60 per minute), hours (1d: 24 per hour) and days
(30d: 30 per day, the UTC days the budget uses); the last bucket holds `now`, and every bucket is
present, empty ones as zeros. A request counts in the bucket in which it started, as the budget
counts it. Money comes from the ledger's priced rows (priced once, by gateway.accounting.bill, when
the request was recorded) and savings use gateway.accounting.bill's own formula, so the sums agree
with `/stats`. History ignores `/stats/reset`: the ledger keeps every request.

Refused requests (outcome `rejected`) were never served and are left out.

Reads are synchronous SQLite: call `history()` from a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.accounting.bill import cost_saved_usd
from gateway.accounting.ledger import Ledger
from gateway.accounting.records import UPSTREAM_NAMES

NO_UPSTREAM = "none"  # requests that got no answer (model_used is NULL)
UPSTREAM_KEYS = (*UPSTREAM_NAMES, NO_UPSTREAM)


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    bucket_s: int
    buckets: int


WINDOWS = {
    w.name: w for w in (Window("1h", 60, 60), Window("1d", 3600, 24), Window("30d", 86_400, 30))
}

_SQL = """
SELECT CAST((started_at - ?) / ? AS INTEGER) AS bucket,
       COALESCE(model_used, 'none'),
       COUNT(*),
       COALESCE(SUM(cerebras_cost_usd), 0.0),
       COALESCE(SUM(counterfactual_usd), 0.0),
       COALESCE(SUM(cost_usd), 0.0),
       COALESCE(SUM(local_prompt_tokens + local_completion_tokens), 0),
       COALESCE(SUM(cerebras_prompt_tokens + cerebras_completion_tokens), 0)
FROM requests
WHERE started_at >= ? AND started_at < ? AND outcome != 'rejected'
GROUP BY bucket, COALESCE(model_used, 'none')
"""


def bounds(window: Window, now: float) -> tuple[float, float]:
    """[start, end) of the window: whole buckets, the last one containing `now`."""
    end = (now // window.bucket_s + 1) * window.bucket_s
    return end - window.bucket_s * window.buckets, end


def _empty_bucket(t: float) -> dict[str, Any]:
    return {
        "t": t,
        "requests": dict.fromkeys(UPSTREAM_KEYS, 0),
        "tokens": dict.fromkeys(UPSTREAM_NAMES, 0),
        "cerebras_cost_usd": 0.0,
        "counterfactual_usd": 0.0,
        "total_cost_usd": 0.0,
    }


def history(ledger: Ledger, window: Window, now: float) -> dict[str, Any]:
    """The `/stats/history` body for `window` ending at the bucket holding `now`."""
    start, end = bounds(window, now)
    buckets = [_empty_bucket(start + i * window.bucket_s) for i in range(window.buckets)]
    rows = ledger.query(_SQL, (start, window.bucket_s, start, end))
    for index, upstream, count, cerebras, counterfactual, total, local_tok, cerebras_tok in rows:
        if not 0 <= index < len(buckets):
            continue
        bucket = buckets[index]
        key = upstream if upstream in UPSTREAM_KEYS else NO_UPSTREAM
        bucket["requests"][key] += count
        bucket["tokens"]["local"] += local_tok
        bucket["tokens"]["cerebras"] += cerebras_tok
        bucket["cerebras_cost_usd"] += cerebras
        bucket["counterfactual_usd"] += counterfactual
        bucket["total_cost_usd"] += total
    totals = _empty_bucket(start)
    del totals["t"]
    for bucket in buckets:
        for key in UPSTREAM_KEYS:
            totals["requests"][key] += bucket["requests"][key]
        for key in UPSTREAM_NAMES:
            totals["tokens"][key] += bucket["tokens"][key]
        for key in ("cerebras_cost_usd", "counterfactual_usd", "total_cost_usd"):
            totals[key] += bucket[key]
    for item in (*buckets, totals):
        item["requests"]["total"] = sum(item["requests"][k] for k in UPSTREAM_KEYS)
        item["cost_saved_usd"] = cost_saved_usd(
            item["counterfactual_usd"], item["cerebras_cost_usd"]
        )
        for key in ("cerebras_cost_usd", "counterfactual_usd", "total_cost_usd"):
            item[key] = round(item[key], 6)
    return {
        "object": "stats.history",
        "window": window.name,
        "bucket_seconds": window.bucket_s,
        "start": start,
        "end": end,
        "now": now,
        "buckets": buckets,
        "totals": totals,
    }
