"""Recording a finished request: priced once, then counted everywhere it counts.

The app builds one `Recorder`; the exchange (every client request) and the verification sampler
(its own Cerebras calls) hand it their finished records. What belongs to other packages (the
budget, the shared state, the router's counter) is passed in as the narrow interfaces below, so
that this module calls nothing above `accounting`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.accounting.bill import Bill
from gateway.accounting.metrics import Metrics
from gateway.accounting.ratio import RatioStore
from gateway.accounting.records import RequestRecord
from gateway.accounting.stats import StatisticsTracker

log = logging.getLogger("gateway.accounting.recorder")


class Charges(Protocol):
    """The spend budget (gateway.quota.budget.Budget)."""

    def charge(self, record: RequestRecord, billed: Bill | None = None) -> None: ...


class Publisher(Protocol):
    """The fleet's shared state (gateway.state): this replica's totals, published when shared."""

    @property
    def shared(self) -> bool: ...

    def publish_stats(self, totals: Callable[[], dict[str, Any]]) -> None: ...


@dataclass(slots=True)
class Recorder:
    """Prices a finished request once and stores it (see `record`)."""

    stats: StatisticsTracker
    metrics: Metrics
    budget: Charges
    state: Publisher
    # Counts a request with a call told not to think (the router's /stats counter).
    count_no_think: Callable[[], None] | None = None
    ratios: RatioStore | None = None  # the learned characters per token, saved now and then

    async def record(self, record: RequestRecord) -> Bill:
        """Price `record` once and count it: metrics, budget, shared totals at once, then its
        ledger row and `/stats`; returns once the row is committed (or failed: a broken ledger
        is logged, never raised, since the answer was delivered). Returns its bill."""
        billed = self.stats.bill(record)
        self.metrics.observe(record, billed)
        self.budget.charge(record, billed)
        if self.state.shared:
            self.state.publish_stats(self.stats.shareable_totals)
        if self.count_no_think is not None and any(call.thinking_off for call in record.calls):
            self.count_no_think()
        if self.ratios is not None:
            self.ratios.save_if_due()
        try:
            await self.stats.record(record, billed)
        except Exception:
            log.exception("req=%s could not be written to the ledger", record.request_id)
        return billed
