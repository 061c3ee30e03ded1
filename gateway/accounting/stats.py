"""The StatisticsTracker of the original project's API: aggregates fed by RequestRecords,
rebuilt from the ledger. `/stats` keeps the original shape key for key (pinned by SPEC_KEYS in
tests/integration/test_app_endpoints.py) and adds keys beside it.

Every request goes through `record()`, which prices it, applies it to the aggregates and awaits
its ledger row. At start-up `load_from_ledger()` replays the ledger from the latest `reset` (or
`load`) marker, so `/stats` after a restart equals `/stats` before it (uptime aside). `reset()`
and `load_from_file()` only write a marker: ledger rows are never deleted.

Formulas (all sums run over the records and events since the latest marker):

- cost of a request and its counterfactual (all-Cerebras) cost: the request's bill
  (gateway.accounting.bill), priced once and stored in its ledger row.
- costs.total_cost_usd = sum of costs; costs.cost_saved_usd = counterfactual_cost_usd - the
  Cerebras part of the costs (negative when speculation cost more than it saved; then
  costs.savings_negative is true).
- costs.cerebras_cost_per_1k_tokens = Cerebras cost / Cerebras tokens * 1000 (0 when none).
- tokens.by_model.<upstream> = tokens of every call to that upstream (drafts and verify too).
- tokens.reasoning.<upstream> = the part of those completion tokens spent thinking (reported
  `completion_tokens_details.reasoning_tokens`, else estimated from streamed reasoning text);
  thinking.told_not_to_think = requests with a call that carried the no-thinking parameter.
- tokens.cached.<upstream> = the part of those prompt tokens the upstream served from its prompt
  cache (llama.cpp `timings.cache_n`, Cerebras `usage.prompt_tokens_details.cached_tokens`).
- speculative_decoding.tokens_saved = counterfactual Cerebras tokens (prompt + completion, of
  delivered requests) - Cerebras tokens actually billed; tokens_saved_percent = tokens_saved /
  counterfactual tokens * 100. Both can be negative.
- total_drafts = requests with a speculative verdict + `record_speculative_decoding()` calls;
  total_verifications = verify-role calls (+ `record_speculative_decoding()` calls with
  verified_tokens > 0);
  drafts_accepted / drafts_rejected from the verdict; acceptance_rate_percent = accepted /
  total_drafts * 100; total_draft_tokens / total_verification_tokens sum the verdicts'
  draft_tokens / verified_tokens.
- requests.by_model counts requests by the upstream that produced the answer (`model_used`);
  requests.by_door by the client protocol they came through (gateway.doors).
- errors.by_model counts calls that ended `error` or `rate_limited`, plus `record_error()`.
- rate_limits.total_hits counts `rate_limited` calls plus `record_rate_limit()`.
- performance.avg_tokens_per_request = all tokens / requests; ttft_ms and duration_ms are
  nearest-rank percentiles over the last 10,000 values (durations of 0 are not real requests).

Dollars are rounded to 6 decimals, percents to 2.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.accounting.bill import DELIVERED, Bill, bill, cost_saved_usd
from gateway.accounting.ledger import Ledger, LedgerEvent, LedgerRow, flatten, new_request_id
from gateway.accounting.records import REFUSED, UPSTREAM_NAMES, RequestRecord, UpstreamCall
from gateway.config import Prices

RESERVOIR_SIZE = 10_000
MARKER_KINDS = ("reset", "load")
COUNTED_EVENT_KINDS = ("error", "rate_limit", "speculative", "refusals")
SNAPSHOT_FORMAT = "glm-token-saver-stats"
SNAPSHOT_VERSION = 1


class StatsFileError(ValueError):
    """A statistics snapshot cannot be read or is malformed; the message names the file."""


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
# Totals added after snapshot version 1: an older snapshot lacks them and loads them as zero.
_ADDED_TOTALS: dict[str, Any] = {
    "told_not_to_think": 0,
    "reasoning_tokens": {},
    "refusals": 0,
    "refusals_by_status": {},
    "by_door": {},
    "cached_tokens": {},
}


@dataclass(slots=True)
class _Totals:
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
        self.prompt_tokens["local"] += row.local_prompt_tokens
        self.completion_tokens["local"] += row.local_completion_tokens
        self.prompt_tokens["cerebras"] += row.cerebras_prompt_tokens
        self.completion_tokens["cerebras"] += row.cerebras_completion_tokens
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
        self.errors["local"] += row.errors_local
        self.errors["cerebras"] += row.errors_cerebras
        self.rate_limit_hits += row.rate_limit_hits
        self.estimated_requests += row.estimated
        self.reasoning_tokens["local"] += row.local_reasoning_tokens
        self.reasoning_tokens["cerebras"] += row.cerebras_reasoning_tokens
        self.cached_tokens["local"] += row.local_cached_tokens
        self.cached_tokens["cerebras"] += row.cerebras_cached_tokens
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

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: getattr(self, name) for name in _INT_FIELDS + _FLOAT_FIELDS}
        data.update({name: dict(getattr(self, name)) for name in _COUNTER_FIELDS})
        data.update({name: list(getattr(self, name)) for name in _RESERVOIR_FIELDS})
        return data

    @classmethod
    def from_json(cls, data: Any, where: str) -> _Totals:
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


# --- presentation -----------------------------------------------------------------------------


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


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Add `extra` beside `base`: dicts present in both are merged one level deep."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


# --- tracker ----------------------------------------------------------------------------------


class StatisticsTracker:
    """Thread-safe usage statistics in the original `/stats` shape, persisted through a Ledger.

    Call `await load_from_ledger()` once at start-up, before serving requests.
    """

    def __init__(
        self,
        prices: Mapping[str, Prices],
        ledger: Ledger | None = None,
        *,
        started_at: float | None = None,
    ) -> None:
        self._prices = dict(prices)
        self._ledger = ledger
        self._started_at = time.time() if started_at is None else started_at
        self._lock = threading.Lock()
        self._totals = _Totals()

    @property
    def ledger(self) -> Ledger | None:
        return self._ledger

    def bill(self, record: RequestRecord) -> Bill:
        """The record priced at this tracker's prices (gateway.accounting.bill)."""
        return bill(record, self._prices)

    def _priced_row(self, record: RequestRecord, billed: Bill | None = None) -> LedgerRow:
        """Flatten a record with its bill (priced here when not given)."""
        billed = self.bill(record) if billed is None else billed
        return flatten(
            record,
            cost_usd=billed.total_usd,
            cerebras_cost_usd=billed.cerebras_usd,
            counterfactual_usd=billed.counterfactual_usd,
        )

    async def record(self, record: RequestRecord, billed: Bill | None = None) -> None:
        """Count one finished request with its bill (priced here when not given); returns once
        its ledger row is committed.

        Raises LedgerError when the ledger is not running or the commit failed.
        """
        row = self._priced_row(record, billed)
        with self._lock:
            committed = self._ledger.submit(row) if self._ledger is not None else None
            self._totals.apply_row(row)
        if committed is not None:
            await committed

    def _record_row_nowait(self, row: LedgerRow) -> None:
        with self._lock:
            if self._ledger is not None:
                self._ledger.append_row_nowait(row)
            self._totals.apply_row(row)

    def _record_event(
        self, kind: str, model: str | None = None, data: dict[str, Any] | None = None
    ) -> None:
        event = LedgerEvent(0, time.time(), kind, model, data, 0)
        with self._lock:
            if self._ledger is not None:
                self._ledger.append_event(kind, model, data=data)
            self._totals.apply_event(event)

    def record_refusal(self, record: RequestRecord) -> None:
        """A refused request's row (outcome `rejected`): counted as a refusal, not a request."""
        self._record_row_nowait(self._priced_row(record))

    def count_refusal(self, status: int) -> None:
        """A refusal beyond its minute's rows: counted now, written by `log_refusal_counts`."""
        with self._lock:
            self._totals.refused(str(status))

    def log_refusal_counts(self, minute: float, by_status: dict[str, int]) -> None:
        """Write one minute's counted refusals to the ledger (already in the totals)."""
        if self._ledger is not None:
            self._ledger.append_event("refusals", data={"minute": minute, "by_status": by_status})

    # the original project's synchronous methods (record_request, record_error ...)

    def record_request(self, model: str, response_data: Mapping[str, Any]) -> None:
        """Count a request answered by `model` with `response_data["usage"]` tokens.

        The counterfactual is the same tokens on Cerebras (what answering there would cost).
        """
        if model not in UPSTREAM_NAMES:
            raise ValueError(f"unknown model {model!r} (expected one of {UPSTREAM_NAMES})")
        usage = response_data.get("usage") or {}
        prompt = usage.get("prompt_tokens") or 0
        completion = usage.get("completion_tokens") or 0
        record = RequestRecord(
            request_id=new_request_id("record_request"),
            started_at=time.time(),
            strategy="record_request",
            stream=False,
            model_used=model,
            calls=[UpstreamCall(model, prompt_tokens=prompt, completion_tokens=completion)],
            counterfactual_prompt_tokens=prompt,
            counterfactual_completion_tokens=completion,
        )
        self._record_row_nowait(self._priced_row(record))

    def record_speculative_decoding(
        self, draft_tokens: int, verified_tokens: int, accepted: bool
    ) -> None:
        """Count one draft (and one verification when verified_tokens > 0)."""
        data = {
            "draft_tokens": max(0, int(draft_tokens)),
            "verified_tokens": max(0, int(verified_tokens)),
            "accepted": bool(accepted),
        }
        self._record_event("speculative", data=data)

    def record_error(self, model: str) -> None:
        """Count an error not attached to a recorded call (any model name is accepted)."""
        self._record_event("error", str(model))

    def record_rate_limit(self) -> None:
        self._record_event("rate_limit")

    def reset(self) -> None:
        """Zero the aggregates and mark the ledger; ledger rows are kept (budgets need them)."""
        with self._lock:
            if self._ledger is not None:
                self._ledger.append_event("reset")
            self._totals = _Totals()

    def save_to_file(self, path: str | Path) -> None:
        """Write a JSON snapshot of the aggregates (atomically: temp file then rename)."""
        with self._lock:
            totals = self._totals.to_json()
        snapshot = {
            "format": SNAPSHOT_FORMAT,
            "version": SNAPSHOT_VERSION,
            "saved_at": time.time(),
            "totals": totals,
            "statistics": self.get_statistics(),
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(snapshot, indent=2), encoding="utf-8")
        os.replace(temp, target)

    def load_from_file(self, path: str | Path) -> None:
        """Replace the aggregates with a snapshot; a bad file raises StatsFileError, changing
        nothing. The snapshot is also written to the ledger so a restart keeps it."""
        totals = _read_snapshot(Path(path))
        with self._lock:
            if self._ledger is not None:
                self._ledger.append_event("load", data=totals.to_json())
            self._totals = totals

    async def load_from_ledger(self) -> None:
        """Rebuild the aggregates from the ledger (everything after the latest marker)."""
        if self._ledger is None:
            return
        totals = await asyncio.to_thread(_replay, self._ledger)
        with self._lock:
            self._totals = totals

    def get_statistics(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The original `/stats` JSON, key for key, with extra keys beside the original ones.

        `extra`'s top-level dicts are merged one level deep (e.g. `rate_limits.headroom`).
        """
        with self._lock:
            t = self._totals
            stats = self._build(t)
            ttft, duration = list(t.ttft_s), list(t.duration_s)
        stats["performance"]["ttft_ms"] = _ms_summary(ttft)
        stats["performance"]["duration_ms"] = _ms_summary(duration)
        stats["ledger"] = self._ledger_info()
        return _merge(stats, extra) if extra else stats

    def latency_usage(self) -> dict[str, int]:
        """Size and bound of the latency reservoirs (`/stats` memory block)."""
        with self._lock:
            size = len(self._totals.ttft_s) + len(self._totals.duration_s)
        return {"size": size, "bound": RESERVOIR_SIZE * len(_RESERVOIR_FIELDS)}

    def shareable_totals(self) -> dict[str, Any]:
        """This replica's totals for the shared store (latency reservoirs stay local)."""
        with self._lock:
            data = self._totals.to_json()
        for name in _RESERVOIR_FIELDS:
            data[name] = []
        return data

    def fleet_statistics(
        self, accounts: list[dict[str, Any]], extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """`/stats` summed over every replica's published totals; latency percentiles are this
        replica's own. Accounts that do not parse are left out (and not counted as reporting)."""
        fleet, reported = _Totals(), 0
        for account in accounts:
            try:
                totals = _Totals.from_json(account, "shared statistics")
            except StatsFileError:
                continue
            reported += 1
            for name in _INT_FIELDS + _FLOAT_FIELDS:
                setattr(fleet, name, getattr(fleet, name) + getattr(totals, name))
            for name in _COUNTER_FIELDS:
                counter = getattr(fleet, name)
                for key, value in getattr(totals, name).items():
                    _bump(counter, key, value)
        with self._lock:
            stats = self._build(fleet)
            ttft, duration = list(self._totals.ttft_s), list(self._totals.duration_s)
        stats["performance"]["ttft_ms"] = _ms_summary(ttft)
        stats["performance"]["duration_ms"] = _ms_summary(duration)
        stats["ledger"] = self._ledger_info()
        stats["fleet"] = {"scope": "fleet", "replicas_reported": reported}
        return _merge(stats, extra) if extra else stats

    def _build(self, t: _Totals) -> dict[str, Any]:
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
            "uptime": format_uptime(time.time() - self._started_at),
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
                "tokens_saved_percent": round(
                    _ratio(tokens_saved, t.counterfactual_tokens, 100), 2
                ),
            },
            "errors": {"total": sum(t.errors.values()), "by_model": dict(t.errors)},
            "refusals": {"total": t.refusals, "by_status": dict(t.refusals_by_status)},
            "rate_limits": {"total_hits": t.rate_limit_hits},
            "performance": {
                "avg_tokens_per_request": round(_ratio(prompt + completion, t.requests, 1), 2)
            },
        }

    def _ledger_info(self) -> dict[str, Any]:
        ledger = self._ledger
        if ledger is None:
            return {"path": None, "rows": 0}
        return {
            "path": ledger.path,
            "rows": ledger.row_count,
            "pending": ledger.pending,
            "write_errors": ledger.write_errors,
        }


def _replay(ledger: Ledger) -> _Totals:
    marker = ledger.latest_event(MARKER_KINDS)
    totals, since_row, since_event = _Totals(), 0, 0
    if marker is not None:
        since_row, since_event = marker.last_request_id, marker.id
        if marker.kind == "load":
            totals = _Totals.from_json(marker.data, f"ledger {ledger.path}: event {marker.id}")
    for row in ledger.iter_rows(since_row):
        totals.apply_row(row)
    for event in ledger.events(since_event, kinds=COUNTED_EVENT_KINDS):
        totals.apply_event(event)
    return totals


def _read_snapshot(path: Path) -> _Totals:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StatsFileError(f"{path}: cannot read statistics snapshot: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise StatsFileError(f"{path}: not a JSON statistics snapshot: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
        raise StatsFileError(f"{path}: not a {SNAPSHOT_FORMAT} snapshot")
    if data.get("version") != SNAPSHOT_VERSION:
        raise StatsFileError(f"{path}: unsupported snapshot version {data.get('version')!r}")
    return _Totals.from_json(data.get("totals"), str(path))
