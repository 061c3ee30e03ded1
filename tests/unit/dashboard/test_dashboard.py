"""The dashboard's endpoints: /stats/history buckets, /requests filters and paging,
/requests/{id}, /dashboard/summary, auth, bad parameters, secrets, and the demo traffic."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.accounting.bill import price
from gateway.accounting.ledger import Ledger
from gateway.accounting.records import RequestRecord, UpstreamCall
from gateway.accounting.stats import StatisticsTracker
from gateway.config import Prices
from gateway.dashboard.demo_traffic import dashboard_url
from gateway.dashboard.history import WINDOWS, bounds, history
from gateway.dashboard.requests import reason_kind

PRICES = {"local": Prices(), "cerebras": Prices(2.25, 2.75)}


def _record(
    started_at: float, upstream: str | None, *, prompt: int = 100, completion: int = 50
) -> RequestRecord:
    calls = (
        []
        if upstream is None
        else [UpstreamCall(upstream, prompt_tokens=prompt, completion_tokens=completion)]
    )
    return RequestRecord(
        request_id=f"r-{started_at}",
        started_at=started_at,
        strategy="always_local" if upstream == "local" else "always_cerebras",
        stream=True,
        outcome="ok" if upstream else "error",
        model_used=upstream,  # type: ignore[arg-type]
        calls=calls,
        counterfactual_prompt_tokens=prompt if upstream else 0,
        counterfactual_completion_tokens=completion if upstream else 0,
    )


@pytest.fixture
async def ledger(tmp_path: Path) -> Any:
    led = Ledger(tmp_path / "ledger.db")
    await led.start()
    yield led
    await led.close()


async def test_history_buckets_align_fill_and_sum(ledger: Ledger) -> None:
    now = 1_800_000_000.0 + 30.5  # 30.5 s into a minute
    tracker = StatisticsTracker(PRICES, ledger)
    await tracker.record(_record(now - 10, "local"))  # this minute
    await tracker.record(_record(now - 10, "cerebras"))
    await tracker.record(_record(now - 125, "cerebras"))  # two minutes before
    await tracker.record(_record(now - 125, None))  # an unanswered request
    await tracker.record(_record(now - 3700, "cerebras"))  # outside the hour
    await tracker.record(_record(now + 3700, "local"))  # in the future: outside

    body = await asyncio.to_thread(history, ledger, WINDOWS["1h"], now)
    buckets = body["buckets"]
    assert len(buckets) == 60 and body["bucket_seconds"] == 60
    assert body["end"] == 1_800_000_060.0 and body["start"] == body["end"] - 3600
    assert [b["t"] for b in buckets] == [body["start"] + 60 * i for i in range(60)]
    last, two_before = buckets[-1], buckets[-3]
    assert last["requests"] == {"local": 1, "cerebras": 1, "none": 0, "total": 2}
    assert two_before["requests"] == {"local": 0, "cerebras": 1, "none": 1, "total": 2}
    assert sum(b["requests"]["total"] for b in buckets) == 4
    one_call = price(PRICES["cerebras"], 100, 50, 0)
    assert last["cerebras_cost_usd"] == pytest.approx(one_call, abs=1e-6)
    # local answered for free what Cerebras would have billed: that is the saving
    assert last["cost_saved_usd"] == pytest.approx(one_call, abs=1e-6)
    assert two_before["cost_saved_usd"] == pytest.approx(0.0, abs=1e-6)
    assert last["tokens"] == {"local": 150, "cerebras": 150}
    totals = body["totals"]
    assert totals["requests"]["total"] == 4
    assert totals["cerebras_cost_usd"] == pytest.approx(2 * one_call, abs=1e-6)
    assert totals["cost_saved_usd"] == pytest.approx(one_call, abs=1e-6)

    day = await asyncio.to_thread(history, ledger, WINDOWS["1d"], now)
    assert len(day["buckets"]) == 24 and day["totals"]["requests"]["total"] == 5
    month = await asyncio.to_thread(history, ledger, WINDOWS["30d"], now)
    assert len(month["buckets"]) == 30
    assert month["start"] % 86_400 == 0, "days are UTC days, as for the budget"


def test_bounds_put_now_in_the_last_bucket() -> None:
    for window in WINDOWS.values():
        for now in (1_800_000_000.0, 1_800_000_000.0 + window.bucket_s - 0.001):
            start, end = bounds(window, now)
            assert end - window.bucket_s <= now < end
            assert end - start == window.bucket_s * window.buckets


def test_reason_kinds_drop_details() -> None:
    assert reason_kind(None) == "none"
    assert reason_kind("always_local") == "always_local"
    assert (
        reason_kind("smart_routing: complex: keyword 'refactor' -> cerebras")
        == "smart_routing: complex"
    )
    assert (
        reason_kind(
            "smart_routing: simple: ~12-token ask, no complexity signal -> local; "
            "fallback to cerebras (local: connection refused)"
        )
        == "smart_routing: simple + fallback"
    )
    assert (
        reason_kind("speculative_decoding: draft accepted (length 0.91 >= 0.80)")
        == "speculative_decoding: draft accepted"
    )
    assert (
        reason_kind("adaptive_cerebras: local, cool-down 3.1s left (429)")
        == "adaptive_cerebras: local"
    )
    assert (
        reason_kind("smart_speculative (complex: keyword 'x'): cerebras committed (verify)")
        == "smart_speculative: cerebras committed"
    )


def test_dashboard_url() -> None:
    assert dashboard_url("127.0.0.1", 8000) == "http://127.0.0.1:8000/dashboard"
    assert dashboard_url("0.0.0.0", 9) == "http://127.0.0.1:9/dashboard"
    assert dashboard_url("::1", 9) == "http://[::1]:9/dashboard"
