"""The StatisticsTracker of the original project's API: aggregates fed by RequestRecords,
rebuilt from the ledger. `/stats` keeps the original shape key for key (pinned by SPEC_KEYS in
tests/integration/test_app_endpoints.py) and adds keys beside it.

Every request goes through `record()`, which prices it, applies it to the aggregates and awaits
its ledger row. At start-up `load_from_ledger()` replays the ledger from the latest `reset` (or
`load`, written by earlier versions) marker, so `/stats` after a restart equals `/stats` before it
(uptime aside). `reset()` only writes a marker: ledger rows are never deleted.

The parts: the counters (gateway.accounting.aggregates), the JSON blocks
(gateway.accounting.stats_render) and the fleet's sum over the shared store
(gateway.accounting.fleet); this module holds the lock and the ledger.

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
import threading
import time
from collections.abc import Mapping
from typing import Any

from gateway.accounting.aggregates import LATENCY_BOUND, Totals, replay
from gateway.accounting.bill import Bill, bill
from gateway.accounting.fleet import fleet_block, fleet_totals
from gateway.accounting.ledger import Ledger, LedgerEvent, LedgerRow, flatten, new_request_id
from gateway.accounting.records import UPSTREAM_NAMES, RequestRecord, UpstreamCall
from gateway.accounting.stats_render import latency_block, ledger_block, merge_extra, render
from gateway.config import Prices


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
        self._totals = Totals()

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
            self._totals = Totals()

    async def load_from_ledger(self) -> None:
        """Rebuild the aggregates from the ledger (everything after the latest marker)."""
        if self._ledger is None:
            return
        totals = await asyncio.to_thread(replay, self._ledger)
        with self._lock:
            self._totals = totals

    def get_statistics(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The original `/stats` JSON, key for key, with extra keys beside the original ones.

        `extra`'s top-level dicts are merged one level deep (e.g. `rate_limits.headroom`).
        """
        return self._render(None, extra)

    def latency_usage(self) -> dict[str, int]:
        """Size and bound of the latency reservoirs (`/stats` memory block)."""
        with self._lock:
            size = self._totals.latency_samples()
        return {"size": size, "bound": LATENCY_BOUND}

    def shareable_totals(self) -> dict[str, Any]:
        """This replica's totals for the shared store (latency reservoirs stay local)."""
        with self._lock:
            return self._totals.to_json(latencies=False)

    def fleet_statistics(
        self, accounts: list[dict[str, Any]], extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """`/stats` summed over every replica's published totals; latency percentiles are this
        replica's own. Accounts that do not parse are left out (and not counted as reporting)."""
        fleet, reported = fleet_totals(accounts)
        return self._render(fleet, extra, {"fleet": fleet_block(reported)})

    def _render(
        self,
        totals: Totals | None,
        extra: Mapping[str, Any] | None,
        scope: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """`/stats` of `totals` (this replica's when None) with this replica's latencies."""
        with self._lock:
            own = self._totals
            stats = render(own if totals is None else totals, time.time() - self._started_at)
            ttft, duration = list(own.ttft_s), list(own.duration_s)
        stats["performance"].update(latency_block(ttft, duration))
        stats["ledger"] = ledger_block(self._ledger)
        if scope:
            stats.update(scope)
        return merge_extra(stats, extra) if extra else stats
