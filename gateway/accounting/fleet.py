"""Fleet statistics: the totals every replica publishes to the shared store, summed.

A replica publishes `Totals.to_json(latencies=False)` (latency reservoirs stay local); `/stats`
with the shared store sums every published account that parses.
"""

from __future__ import annotations

from typing import Any

from gateway.accounting.aggregates import StatsFileError, Totals


def fleet_totals(accounts: list[dict[str, Any]]) -> tuple[Totals, int]:
    """The sum of `accounts` and how many of them parsed (those that do not are left out)."""
    fleet, reported = Totals(), 0
    for account in accounts:
        try:
            totals = Totals.from_json(account, "shared statistics")
        except StatsFileError:
            continue
        reported += 1
        fleet.add(totals)
    return fleet, reported


def fleet_block(reported: int) -> dict[str, Any]:
    """The `/stats` `fleet` block."""
    return {"scope": "fleet", "replicas_reported": reported}
