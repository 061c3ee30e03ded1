"""Cerebras spend budgets: a daily and a monthly limit in US dollars over the ledger's spend.

Periods are UTC calendar days and months. At start-up the spend of the current periods is read
from the ledger (`cerebras_spend_since`); afterwards every finished request is charged in memory
with the Cerebras part of its bill (gateway.accounting.bill: all Cerebras calls, verify and
failed calls included, the figure the ledger stores). A request counts in the period in which it
started, as in the ledger.

- Alerts: one log line per period when its spend first reaches 50 %, 80 % and 100 % (again after
  a restart, which starts without memory of earlier alerts). With shared state the spend is the
  fleet's and each threshold alerts once per period for the whole fleet: the replica whose
  publication first sees the fleet's spend reach it claims it in Redis (SET NX, the period's
  start in the key) and logs it; while Redis cannot answer, each replica alerts on its own spend.
- At 100 % of any period `refusal()` refuses Cerebras for every strategy until the period ends;
  the relay then serves locally. When nothing else can serve, `budget.on_exhausted: reject`
  answers 402 (BudgetExhausted), `local` lets the usual error through (429 when every upstream
  was refused, else the local failure).
- Requests already admitted when the limit is reached still finish, so the spend can overshoot
  by what the requests in flight cost.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from gateway.accounting.bill import Bill, bill
from gateway.accounting.records import RequestRecord, UpstreamName
from gateway.config import BudgetConfig, Prices
from gateway.quota.admission import Refusal
from gateway.state import EMBEDDED, SpendAlerts, StateStore

log = logging.getLogger("gateway.quota.budget")

ALERT_PERCENTS = (50, 80, 100)
BUDGETED_UPSTREAM: UpstreamName = "cerebras"


class SpendSource(Protocol):
    def cerebras_spend_since(self, unix_ts: float) -> float: ...


@dataclass(frozen=True, slots=True)
class BudgetRefusal(Refusal):
    """A refusal because a budget is spent; `reject`: answer 402 when nothing else can serve."""

    reject: bool = False


def day_bounds(now: float) -> tuple[float, float]:
    """Start and end (unix seconds) of the UTC day containing `now`."""
    start = (now // 86_400) * 86_400
    return start, start + 86_400


def month_bounds(now: float) -> tuple[float, float]:
    """Start and end (unix seconds) of the UTC calendar month containing `now`."""
    when = datetime.fromtimestamp(now, UTC)
    start = datetime(when.year, when.month, 1, tzinfo=UTC)
    days = calendar.monthrange(when.year, when.month)[1]
    return start.timestamp(), start.timestamp() + days * 86_400


@dataclass(slots=True)
class Period:
    """One budget period (`daily` or `monthly`) and what was spent in it."""

    name: str
    limit_usd: float
    bounds: Callable[[float], tuple[float, float]]
    start: float = 0.0
    end: float = 0.0
    spent_usd: float = 0.0
    alerted: set[int] = field(default_factory=set)

    def roll(self, now: float) -> bool:
        """Move to the period containing `now`; True when a new period began (spend reset)."""
        if self.start <= now < self.end:
            return False
        self.start, self.end = self.bounds(now)
        self.spent_usd = 0.0
        self.alerted.clear()
        return True

    @property
    def percent(self) -> float:
        return self.spent_usd / self.limit_usd * 100

    @property
    def exhausted(self) -> bool:
        return self.spent_usd >= self.limit_usd


class Budget:
    """Daily and monthly Cerebras spend limits; `refusal()` is what the admission gate asks."""

    def __init__(
        self,
        config: BudgetConfig,
        prices: Prices,
        *,
        wall: Callable[[], float] = time.time,
        state: StateStore = EMBEDDED,
    ) -> None:
        self.config = config
        self.state = state
        self.prices = prices
        self.wall = wall
        self.periods: list[Period] = []
        if config.daily_usd is not None:
            self.periods.append(Period("daily", config.daily_usd, day_bounds))
        if config.monthly_usd is not None:
            self.periods.append(Period("monthly", config.monthly_usd, month_bounds))
        self.refused = 0
        self._roll()

    @property
    def enabled(self) -> bool:
        return bool(self.periods)

    async def load(self, ledger: SpendSource) -> None:
        """Read the current periods' spend from the ledger (once, at start-up)."""
        self._roll()
        for period in self.periods:
            period.spent_usd = await asyncio.to_thread(ledger.cerebras_spend_since, period.start)
        self._publish()

    def _publish(self) -> None:
        """This replica's spend per period, as an absolute figure (a restart never doubles it),
        and its alerts: the fleet's when shared, else this replica's at once."""
        for period in self.periods:
            if not self.state.shared:
                self._alert(period)
                continue
            alerts = SpendAlerts(
                period.limit_usd,
                tuple(p for p in ALERT_PERCENTS if p not in period.alerted),
                # the key outlives the period: a late publication never alerts it again
                max(1, int(period.end - self.wall()) + 86_400),
                self._fleet_reporter(period, period.start),
            )
            self.state.publish_spend(period.name, period.start, period.spent_usd, alerts)

    def _fleet_reporter(
        self, period: Period, start: float
    ) -> Callable[[float | None, list[int]], None]:
        def report(fleet_usd: float | None, claimed: list[int]) -> None:
            if period.start != start:  # the period rolled over meanwhile
                return
            if fleet_usd is None:
                self._alert(period)
                return
            for percent in claimed:
                period.alerted.add(percent)
                self._log_alert(period, fleet_usd, percent, "the fleet's ")

        return report

    def shared_limits(self) -> dict[str, tuple[float, float]]:
        """(start, limit) per period, for the fleet-wide check in the shared store."""
        self._roll()
        return {p.name: (p.start, p.limit_usd) for p in self.periods}

    def fleet_refusal(self, upstream: UpstreamName, reason: str) -> BudgetRefusal:
        """A refusal because the fleet's spend (all replicas) reached a limit."""
        now = self._roll()
        end = max((p.end for p in self.periods), default=now)
        return BudgetRefusal(
            upstream, reason, retry_after=end - now, reject=self.config.on_exhausted == "reject"
        )

    def charge(self, record: RequestRecord, billed: Bill | None = None) -> None:
        """Add a finished request's Cerebras cost (every Cerebras call it made, from its bill;
        priced here when not given) to the periods it started in."""
        if not self.periods:
            return
        self._roll()
        if billed is None:
            billed = bill(record, {BUDGETED_UPSTREAM: self.prices})
        cost = billed.cerebras_usd
        if cost <= 0:
            return
        for period in self.periods:
            if record.started_at >= period.start:
                period.spent_usd += cost
        self._publish()

    def refusal(self, upstream: UpstreamName) -> BudgetRefusal | None:
        """A refusal when `upstream` is the budgeted one and a period's budget is spent."""
        if upstream != BUDGETED_UPSTREAM or not self.periods:
            return None
        now = self._roll()
        spent = [p for p in self.periods if p.exhausted]
        if not spent:
            return None
        period = max(spent, key=lambda p: p.end)
        return BudgetRefusal(
            upstream,
            f"{period.name} Cerebras budget exhausted (${period.spent_usd:.4f} of "
            f"${period.limit_usd:.2f}); it renews in {_human(period.end - now)}",
            retry_after=period.end - now,
            reject=self.config.on_exhausted == "reject",
        )

    def note_refused(self) -> None:
        """Count a Cerebras call refused because of the budget (shown in `/stats`)."""
        self.refused += 1

    def snapshot(self, fleet: dict[str, float] | None = None) -> dict[str, Any]:
        """The `/stats` budget block (limits, spend, percent, state); `fleet`: every replica's
        spend per period, read from the shared store (shown instead of this replica's)."""
        now = self._roll()
        out: dict[str, Any] = {
            "enabled": self.enabled,
            "on_exhausted": self.config.on_exhausted,
            "state": "exhausted" if any(p.exhausted for p in self.periods) else "ok",
            "refused_calls": self.refused,
        }
        for period in self.periods:
            spent = period.spent_usd if fleet is None else fleet.get(period.name, 0.0)
            out[period.name] = {
                "limit_usd": period.limit_usd,
                "spent_usd": round(spent, 6),
                "percent": round(spent / period.limit_usd * 100, 2),
                "exhausted": spent >= period.limit_usd,
                "renews_in_s": round(period.end - now),
            }
            if fleet is not None:
                out[period.name]["this_replica_usd"] = round(period.spent_usd, 6)
        if fleet is not None:
            exhausted = any(out[p.name]["exhausted"] for p in self.periods)
            out["state"] = "exhausted" if exhausted else "ok"
            out["scope"] = "fleet"
        return out

    def _roll(self) -> float:
        now = self.wall()
        for period in self.periods:
            period.roll(now)
        return now

    def _alert(self, period: Period) -> None:
        """Alert the thresholds this replica's own spend reached first."""
        for percent in ALERT_PERCENTS:
            if period.percent >= percent and percent not in period.alerted:
                period.alerted.add(percent)
                self._log_alert(period, period.spent_usd, percent)

    @staticmethod
    def _log_alert(period: Period, spent_usd: float, percent: int, whose: str = "") -> None:
        level = logging.WARNING if percent >= 80 else logging.INFO
        consequence = (
            "; Cerebras is refused until the period ends, requests go local"
            if percent >= 100
            else ""
        )
        log.log(
            level,
            "budget alert: %s %sCerebras spend $%.4f reached %d%% of $%.2f%s",
            period.name,
            whose,
            spent_usd,
            percent,
            period.limit_usd,
            consequence,
        )


def _human(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
