"""Recorder: one bill per finished request, handed to every place that counts it; the ledger row
committed before `record` returns, and a broken ledger logged, never raised."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.accounting.bill import Bill
from gateway.accounting.ledger import Ledger
from gateway.accounting.metrics import Metrics
from gateway.accounting.recorder import Recorder
from gateway.accounting.records import RequestRecord, UpstreamCall
from gateway.accounting.stats import StatisticsTracker
from gateway.config import Prices

PRICES = {"local": Prices(0.0, 0.0), "cerebras": Prices(2.0, 3.0)}


class Budget:
    def __init__(self) -> None:
        self.charged: list[tuple[str, Bill | None]] = []

    def charge(self, record: RequestRecord, billed: Bill | None = None) -> None:
        self.charged.append((record.request_id, billed))


class State:
    def __init__(self, shared: bool) -> None:
        self.shared = shared
        self.published: list[dict[str, Any]] = []

    def publish_stats(self, totals: Callable[[], dict[str, Any]]) -> None:
        self.published.append(totals())


def _record(request_id: str, *, thinking_off: bool = False) -> RequestRecord:
    record = RequestRecord(request_id=request_id, started_at=0.0, strategy="test", stream=True)
    call = UpstreamCall("cerebras", prompt_tokens=1000, completion_tokens=2000)
    call.thinking_off = thinking_off
    record.calls.append(call)
    record.model_used = "cerebras"
    record.outcome = "ok"
    return record


def _recorder(ledger: Ledger, state: State, budget: Budget, counted: list[int]) -> Recorder:
    stats = StatisticsTracker(PRICES, ledger)
    metrics = Metrics(PRICES, {}, lambda: 0)
    return Recorder(stats, metrics, budget, state, lambda: counted.append(1))


async def test_one_bill_reaches_every_counter_and_the_row_is_committed(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    await ledger.start()
    budget, state, counted = Budget(), State(shared=True), []
    recorder = _recorder(ledger, state, budget, counted)
    try:
        billed = await recorder.record(_record("a", thinking_off=True))
        # Committed by the time record() returned: a fresh read sees it.
        assert [row.request_id for row in ledger.rows()] == ["a"]
        assert ledger.rows()[0].cost_usd == pytest.approx(billed.total_usd)
        assert billed.total_usd == pytest.approx(1000 * 2.0 / 1e6 + 2000 * 3.0 / 1e6)
        assert budget.charged == [("a", billed)]
        assert len(state.published) == 1
        assert counted == [1]
        await recorder.record(_record("b"))
        assert counted == [1]  # no call of "b" was told not to think
    finally:
        await ledger.close()


async def test_a_replica_alone_publishes_nothing(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    await ledger.start()
    state = State(shared=False)
    try:
        await _recorder(ledger, state, Budget(), []).record(_record("a"))
    finally:
        await ledger.close()
    assert state.published == []


async def test_a_broken_ledger_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = Ledger(tmp_path / "ledger.db")  # never started: every write is refused
    budget = Budget()
    billed = await _recorder(ledger, State(shared=False), budget, []).record(_record("lost"))
    assert budget.charged == [("lost", billed)]  # the rest still counted it
    assert "req=lost could not be written to the ledger" in caplog.text
