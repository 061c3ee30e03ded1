"""Refused requests (400/401/413/429/503 before any upstream call) leave bounded ledger rows.

They are counted as refusals in /stats, never as served requests, and the dashboard shows them
only when asked for (`outcome=rejected`).
"""

from __future__ import annotations

from typing import Any

from gateway.accounting.ledger import Ledger
from gateway.accounting.records import UPSTREAM_NAMES
from gateway.accounting.refusals import RefusalRecorder
from gateway.accounting.stats import StatisticsTracker
from gateway.config import Prices


async def test_a_flood_of_refusals_is_rows_up_to_a_rate_then_counts_per_minute(
    tmp_path: Any,
) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    await ledger.start()
    prices = {name: Prices() for name in UPSTREAM_NAMES}
    stats = StatisticsTracker(prices, ledger)
    now = [600.0]
    recorder = RefusalRecorder(stats, rows_per_minute=3, clock=lambda: now[0])
    for _ in range(10):
        recorder.refuse("r", 429, "concurrency_limit")
    now[0] += 60
    recorder.refuse("r", 400, "invalid_json")  # a new minute: the last one's counts are written
    recorder.refuse("r", 400, "invalid_json")
    recorder.close()
    await ledger.flush()
    assert len(ledger.rows()) == 5
    [event] = ledger.events(kinds=("refusals",))
    assert event.data == {"minute": 600.0, "by_status": {"429": 7}}
    expected = {"total": 12, "by_status": {"429": 10, "400": 2}}
    assert stats.get_statistics()["refusals"] == expected
    assert stats.get_statistics()["requests"]["total"] == 0
    replayed = StatisticsTracker(prices, ledger)
    await replayed.load_from_ledger()
    assert replayed.get_statistics()["refusals"] == expected
    await ledger.close()
