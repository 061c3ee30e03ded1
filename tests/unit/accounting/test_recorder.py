"""Recorder: one bill per finished request, handed to every place that counts it; the ledger row
committed before `record` returns, and a broken ledger logged, never raised."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.accounting.bill import Bill, price
from gateway.accounting.ledger import Ledger
from gateway.accounting.ledger.schema import row_params
from gateway.accounting.metrics import Metrics
from gateway.accounting.recorder import Recorder
from gateway.accounting.records import RequestRecord, SpeculativeRecord, UpstreamCall
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


def _golden_record() -> RequestRecord:
    """A record with every kind of field set, odd values included (a negative token count)."""
    record = RequestRecord("golden-1", 1700000000.25, "speculative", True, door="messages")
    record.calls += [
        UpstreamCall(
            "local",
            role="draft",
            prompt_tokens=12000,
            completion_tokens=300,
            cached_tokens=11000,
            reasoning_tokens=40,
        ),
        UpstreamCall(
            "cerebras",
            role="verify",
            status="cancelled",
            prompt_tokens=12000,
            completion_tokens=-5,
            estimated=True,
            thinking_off=True,
        ),
        UpstreamCall(
            "cerebras", role="answer", status="rate_limited", error="429", http_status=429
        ),
    ]
    record.model_used, record.outcome, record.ttft_s, record.duration_s = "local", "ok", 0.2, 1.5
    record.routing_reason = "simple"
    record.counterfactual_prompt_tokens, record.counterfactual_completion_tokens = 12000, 300
    record.speculative = SpeculativeRecord(
        draft_tokens=300,
        verified_tokens=250,
        accepted=True,
        similarity=0.93,
        decided_by="similarity",
    )
    return record


GOLDEN_ROW = [
    "golden-1",
    1700000000.25,
    "speculative",
    True,
    "ok",
    200,
    "local",
    None,
    0.2,
    1.5,
    "simple",
    False,
    12000,
    300,
    12000,
    0,
    1,
    0,
    1,
    1,
    True,
    0.024,
    0.024,
    0.0249,
    12000,
    300,
    300,
    250,
    True,
    False,
    0.93,
    "similarity",
    '[{"upstream":"local","role":"draft","status":"ok","prompt_tokens":12000,"completion_tokens":300,"cached_tokens":11000,"estimated":false,"error":null,"http_status":null,"reasoning_tokens":40,"thinking_off":false},{"upstream":"cerebras","role":"verify","status":"cancelled","prompt_tokens":12000,"completion_tokens":-5,"cached_tokens":0,"estimated":true,"error":null,"http_status":null,"reasoning_tokens":0,"thinking_off":true},{"upstream":"cerebras","role":"answer","status":"rate_limited","prompt_tokens":0,"completion_tokens":0,"cached_tokens":0,"estimated":false,"error":"429","http_status":429,"reasoning_tokens":0,"thinking_off":false}]',
    40,
    0,
    True,
    "messages",
    11000,
    0,
]
BOUNDS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0",
          "30.0", "60.0", "120.0", "300.0", "+Inf")  # fmt: skip


def _buckets(name: str, first_holding: str) -> str:
    """The histogram's bucket lines: both samples in every bucket from `first_holding` up."""
    first = BOUNDS.index(first_holding)
    return "\n".join(
        f'glm_gateway_{name}_seconds_bucket{{le="{le}",strategy="speculative"}}'
        f" {2.0 if i >= first else 0.0}"
        for i, le in enumerate(BOUNDS)
    )


GOLDEN_METRICS = """\
glm_gateway_requests_total{outcome="ok",strategy="speculative",upstream="local"} 2.0
glm_gateway_tokens_total{kind="prompt",role="draft",upstream="local"} 24000.0
glm_gateway_tokens_total{kind="completion",role="draft",upstream="local"} 600.0
glm_gateway_tokens_total{kind="prompt",role="verify",upstream="cerebras"} 24000.0
glm_gateway_tokens_total{kind="completion",role="verify",upstream="cerebras"} 0.0
glm_gateway_tokens_total{kind="prompt",role="answer",upstream="cerebras"} 0.0
glm_gateway_tokens_total{kind="completion",role="answer",upstream="cerebras"} 0.0
glm_gateway_cost_dollars_total{upstream="local"} 0.0
glm_gateway_cost_dollars_total{upstream="cerebras"} 0.048
glm_gateway_upstream_calls_total{role="draft",status="ok",upstream="local"} 2.0
glm_gateway_upstream_calls_total{role="verify",status="cancelled",upstream="cerebras"} 2.0
glm_gateway_upstream_calls_total{role="answer",status="rate_limited",upstream="cerebras"} 2.0
glm_gateway_speculative_verdicts_total{accepted="true",decided_by="similarity"} 2.0
TTFT_BUCKETS
glm_gateway_time_to_first_token_seconds_count{strategy="speculative"} 2.0
glm_gateway_time_to_first_token_seconds_sum{strategy="speculative"} 0.4
DURATION_BUCKETS
glm_gateway_request_duration_seconds_count{strategy="speculative"} 2.0
glm_gateway_request_duration_seconds_sum{strategy="speculative"} 3.0
glm_gateway_in_flight_requests 0.0
""".replace("TTFT_BUCKETS", _buckets("time_to_first_token", "0.25")).replace(
    "DURATION_BUCKETS", _buckets("request_duration", "2.5")
)


async def test_the_ledger_row_and_metrics_of_a_record_stay_as_they_were(tmp_path: Path) -> None:
    """Pinned from the code before the recording path was made cheaper: same row, same
    samples (the second record adds to the children the first one made)."""
    ledger = Ledger(tmp_path / "ledger.db")
    await ledger.start()
    metrics = Metrics(PRICES, {}, lambda: 0)
    recorder = Recorder(StatisticsTracker(PRICES, ledger), metrics, Budget(), State(False))
    try:
        for _ in range(2):
            await recorder.record(_golden_record())
        row = ledger.rows()[0]
    finally:
        await ledger.close()
    assert list(row_params(row))[1:] == GOLDEN_ROW
    exposition = metrics.render().decode().splitlines()
    samples = [s for s in exposition if s.startswith("glm_") and "_created" not in s]
    assert "\n".join(samples) + "\n" == GOLDEN_METRICS


@pytest.mark.parametrize(
    ("tokens", "counted"),
    [(7, 7), (-3, 0), (0, 0), (True, 1), (2.9, 2), ("12", 12), (float("nan"), 0), (None, 0)],
)
def test_token_counts_are_priced_with_the_ledgers_coercions(tokens: Any, counted: int) -> None:
    assert price(Prices(1.0, 0.0), tokens, 0, 0) * 1_000_000 == counted
