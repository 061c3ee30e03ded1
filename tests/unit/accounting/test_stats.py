"""StatisticsTracker: spec shape, hand-computed costs, restart, load markers, fleet sums."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.accounting.aggregates import StatsFileError, Totals, replay
from gateway.accounting.ledger import Ledger, LedgerError
from gateway.accounting.records import (
    CallRole,
    CallStatus,
    RequestRecord,
    SpeculativeRecord,
    UpstreamCall,
)
from gateway.accounting.stats import StatisticsTracker
from gateway.accounting.stats_render import format_uptime
from gateway.config import Prices

PRICES = {"local": Prices(0.0, 0.0), "cerebras": Prices(2.25, 2.75)}


SPEC_STATS: dict[str, Any] = json.loads("""
{
  "uptime": "2h 15m",
  "requests": {"total": 150, "by_model": {"local": 120, "cerebras": 30}},
  "tokens": {
    "total": 45000, "prompt": 15000, "completion": 30000,
    "by_model": {
      "local": {"prompt": 10000, "completion": 20000, "total": 30000},
      "cerebras": {"prompt": 5000, "completion": 10000, "total": 15000}
    }
  },
  "costs": {"total_cost_usd": 0.03, "cost_saved_usd": 0.02, "cerebras_cost_per_1k_tokens": 0.002},
  "speculative_decoding": {
    "total_drafts": 50, "total_verifications": 20, "drafts_accepted": 35, "drafts_rejected": 15,
    "acceptance_rate_percent": 70.0, "total_draft_tokens": 5000,
    "total_verification_tokens": 3000, "tokens_saved": 3000, "tokens_saved_percent": 6.67
  },
  "errors": {"total": 5, "by_model": {"local": 2, "cerebras": 3}},
  "rate_limits": {"total_hits": 10},
  "performance": {"avg_tokens_per_request": 300}
}
""")


def call(
    upstream: str,
    prompt: int,
    completion: int,
    role: CallRole = "answer",
    status: CallStatus = "ok",
) -> UpstreamCall:
    return UpstreamCall(upstream, role, status, prompt, completion)  # type: ignore[arg-type]


def rec(
    rid: str,
    calls: list[UpstreamCall],
    *,
    model_used: str | None,
    cf: tuple[int, int] = (0, 0),
    outcome: str = "ok",
    strategy: str = "smart_routing",
    speculative: SpeculativeRecord | None = None,
    fallback: bool = False,
    ttft: float | None = 0.2,
    duration: float = 1.0,
) -> RequestRecord:
    return RequestRecord(
        request_id=rid,
        started_at=time.time(),
        strategy=strategy,
        stream=True,
        outcome=outcome,  # type: ignore[arg-type]
        model_used=model_used,  # type: ignore[arg-type]
        calls=calls,
        ttft_s=ttft,
        duration_s=duration,
        fallback=fallback,
        speculative=speculative,
        counterfactual_prompt_tokens=cf[0],
        counterfactual_completion_tokens=cf[1],
    )


def scenario() -> list[RequestRecord]:
    """Six hand-priced requests (Cerebras $2.25 in / $2.75 out per million; local free)."""
    return [
        # answer on local: cost 0, counterfactual 100*2.25e-6 + 200*2.75e-6 = 0.000775
        rec("local", [call("local", 100, 200)], model_used="local", cf=(100, 200)),
        # answer on cerebras: cost = counterfactual = 0.00225 + 0.001375 = 0.003625
        rec("cerebras", [call("cerebras", 1000, 500)], model_used="cerebras", cf=(1000, 500)),
        # speculative accept, verify cancelled after 10 tokens:
        # cost 300*2.25e-6 + 10*2.75e-6 = 0.0007025; counterfactual (300, 80) = 0.000895
        rec(
            "accept",
            [call("local", 300, 80, "draft"), call("cerebras", 300, 10, "verify", "cancelled")],
            model_used="local",
            cf=(300, 80),
            strategy="speculative_decoding",
            speculative=SpeculativeRecord(80, 10, True, False, 0.9, "similarity"),
        ),
        # speculative reject, Cerebras answer delivered: cost = counterfactual = 0.0013125
        rec(
            "reject",
            [call("local", 400, 100, "draft"), call("cerebras", 400, 150, "verify")],
            model_used="cerebras",
            cf=(400, 150),
            strategy="speculative_decoding",
            speculative=SpeculativeRecord(100, 150, False, False, 0.3, "similarity"),
        ),
        # Cerebras 429 then local fallback: cost 0, counterfactual (50, 70) = 0.000305
        rec(
            "fallback",
            [call("cerebras", 0, 0, status="rate_limited"), call("local", 50, 70)],
            model_used="local",
            cf=(50, 70),
            fallback=True,
        ),
        # client went away after 30 Cerebras tokens: cost = counterfactual = 0.0005325
        rec(
            "gone",
            [call("cerebras", 200, 30, status="cancelled")],
            model_used="cerebras",
            cf=(200, 30),
            outcome="client_disconnected",
        ),
    ]


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    led = Ledger(tmp_path / "ledger.db")
    await led.start()
    yield led
    await led.close()


def without_uptime(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if k != "uptime"}


async def restarted(path: str) -> tuple[Ledger, StatisticsTracker]:
    led = Ledger(path)
    await led.start()
    tracker = StatisticsTracker(PRICES, led)
    await tracker.load_from_ledger()
    return led, tracker


def assert_same_shape(spec: dict[str, Any], ours: dict[str, Any], where: str = "") -> None:
    for key, value in spec.items():
        assert key in ours, f"missing {where}{key}"
        if isinstance(value, dict):
            assert isinstance(ours[key], dict), f"{where}{key} is not an object"
            assert_same_shape(value, ours[key], f"{where}{key}.")
        elif isinstance(value, str):
            assert isinstance(ours[key], str), f"{where}{key} is not a string"
        else:
            assert isinstance(ours[key], int | float), f"{where}{key} is not a number"
            assert not isinstance(ours[key], bool), f"{where}{key} is a bool"


def test_statistics_have_the_spec_shape_key_for_key() -> None:
    tracker = StatisticsTracker(PRICES, started_at=time.time() - 8100)
    stats = tracker.get_statistics()
    assert_same_shape(SPEC_STATS, stats)
    assert stats["uptime"] == "2h 15m"
    assert set(stats["requests"]["by_model"]) == {"local", "cerebras"}
    assert set(stats["errors"]["by_model"]) == {"local", "cerebras"}
    assert json.loads(json.dumps(stats)) == stats


def test_format_uptime() -> None:
    assert format_uptime(0) == "0h 0m"
    assert format_uptime(8100) == "2h 15m"
    assert format_uptime(26 * 3600 + 59) == "26h 0m"


async def test_hand_computed_costs_and_counts(ledger: Ledger) -> None:
    tracker = StatisticsTracker(PRICES, ledger)
    for record in scenario():
        await tracker.record(record)
    await tracker.record(
        rec(
            "failed",
            [call("cerebras", 100, 10, status="error")],
            model_used=None,
            cf=(100, 50),
            outcome="error",
            ttft=None,
        )
    )  # billed 0.0002525, no answer so no counterfactual
    stats = tracker.get_statistics()
    assert_same_shape(SPEC_STATS, stats)

    costs = stats["costs"]
    # billed: 0.003625 + 0.0007025 + 0.0013125 + 0.0005325 + 0.0002525 (all on Cerebras)
    assert costs["total_cost_usd"] == pytest.approx(0.006425, abs=1e-12)
    assert costs["cerebras_cost_usd"] == pytest.approx(0.006425, abs=1e-12)
    # 0.000775 + 0.003625 + 0.000895 + 0.0013125 + 0.000305 + 0.0005325
    assert costs["counterfactual_cost_usd"] == pytest.approx(0.007445, abs=1e-12)
    assert costs["cost_saved_usd"] == pytest.approx(0.00102, abs=1e-12)
    assert costs["savings_negative"] is False
    # 0.006425 / 2700 tokens * 1000 = 0.0023796... -> 0.00238
    assert costs["cerebras_cost_per_1k_tokens"] == pytest.approx(0.00238, abs=1e-12)

    assert stats["tokens"]["by_model"] == {
        "local": {"prompt": 850, "completion": 450, "total": 1300},
        "cerebras": {"prompt": 2000, "completion": 700, "total": 2700},
    }
    assert (stats["tokens"]["total"], stats["tokens"]["prompt"]) == (4000, 2850)
    assert stats["requests"]["total"] == 7
    assert stats["requests"]["by_model"] == {"local": 3, "cerebras": 3}
    assert stats["requests"]["by_outcome"] == {"ok": 5, "client_disconnected": 1, "error": 1}
    assert stats["requests"]["by_strategy"] == {"smart_routing": 5, "speculative_decoding": 2}
    assert stats["requests"]["fallbacks"] == 1

    spec = stats["speculative_decoding"]
    assert spec == {
        "total_drafts": 2,
        "total_verifications": 2,
        "drafts_accepted": 1,
        "drafts_rejected": 1,
        "acceptance_rate_percent": 50.0,
        "total_draft_tokens": 180,
        "total_verification_tokens": 160,
        # counterfactual 300+1500+380+550+120+230 = 3080 minus 2700 billed on Cerebras
        "tokens_saved": 380,
        "tokens_saved_percent": 12.34,
    }
    assert stats["errors"] == {"total": 2, "by_model": {"local": 0, "cerebras": 2}}
    assert stats["rate_limits"] == {"total_hits": 1}
    assert stats["performance"]["avg_tokens_per_request"] == 571.43
    assert stats["ledger"]["rows"] == 7 and stats["ledger"]["path"] == ledger.path

    rows = {r.request_id: r for r in ledger.rows()}
    assert rows["accept"].cost_usd == pytest.approx(0.0007025, abs=1e-15)
    assert rows["accept"].counterfactual_usd == pytest.approx(0.000895, abs=1e-15)
    assert rows["failed"].counterfactual_usd == 0.0
    assert ledger.cerebras_spend_since(0) == pytest.approx(0.006425, abs=1e-12)


async def test_negative_savings_are_reported_honestly() -> None:
    tracker = StatisticsTracker(PRICES)
    # draft accepted but the verify call ran to 200 tokens: billed 0.001225 vs 0.000895
    await tracker.record(
        rec(
            "costly",
            [call("local", 300, 80, "draft"), call("cerebras", 300, 200, "verify")],
            model_used="local",
            cf=(300, 80),
            speculative=SpeculativeRecord(80, 200, True),
        )
    )
    stats = tracker.get_statistics()
    assert stats["costs"]["cost_saved_usd"] == pytest.approx(-0.00033, abs=1e-12)
    assert stats["costs"]["savings_negative"] is True
    assert stats["speculative_decoding"]["tokens_saved"] == 380 - 500
    assert stats["speculative_decoding"]["tokens_saved_percent"] == round(-120 / 380 * 100, 2)


async def test_local_price_counts_in_total_but_not_in_cerebras_spend(ledger: Ledger) -> None:
    tracker = StatisticsTracker({**PRICES, "local": Prices(1.0, 1.0)}, ledger)
    await tracker.record(
        rec("mix", [call("local", 1000, 1000), call("cerebras", 1000, 0)], model_used="local")
    )
    costs = tracker.get_statistics()["costs"]
    assert costs["total_cost_usd"] == pytest.approx(0.00425, abs=1e-12)
    assert costs["cerebras_cost_usd"] == pytest.approx(0.00225, abs=1e-12)
    assert ledger.cerebras_spend_since(0) == pytest.approx(0.00225, abs=1e-12)


async def test_estimated_tokens_are_flagged() -> None:
    tracker = StatisticsTracker(PRICES)
    await tracker.record(rec("exact", [call("local", 1, 1)], model_used="local"))
    assert tracker.get_statistics()["costs"]["estimated_tokens"] is False
    guessed = call("cerebras", 10, 10)
    guessed.estimated = True
    await tracker.record(rec("guess", [guessed], model_used="cerebras"))
    costs = tracker.get_statistics()["costs"]
    assert costs["estimated_tokens"] is True and costs["estimated_requests"] == 1


def test_spec_sync_methods() -> None:
    tracker = StatisticsTracker(PRICES)
    tracker.record_request(
        "local", {"usage": {"prompt_tokens": 40, "completion_tokens": 100, "total_tokens": 140}}
    )
    tracker.record_request("cerebras", {"usage": {"prompt_tokens": 1000, "completion_tokens": 0}})
    tracker.record_request("local", {"choices": []})
    tracker.record_speculative_decoding(draft_tokens=100, verified_tokens=150, accepted=True)
    tracker.record_speculative_decoding(draft_tokens=40, verified_tokens=0, accepted=False)
    tracker.record_error("local")
    tracker.record_error("cerebras")
    tracker.record_error("cerebras")
    tracker.record_rate_limit()
    stats = tracker.get_statistics()
    assert stats["requests"]["total"] == 3
    assert stats["requests"]["by_model"] == {"local": 2, "cerebras": 1}
    assert stats["tokens"]["by_model"]["local"] == {"prompt": 40, "completion": 100, "total": 140}
    assert stats["tokens"]["total"] == 1140
    assert stats["costs"]["total_cost_usd"] == pytest.approx(0.00225, abs=1e-12)
    # the local request would have cost 40*2.25e-6 + 100*2.75e-6 on Cerebras
    assert stats["costs"]["cost_saved_usd"] == pytest.approx(0.000365, abs=1e-12)
    spec = stats["speculative_decoding"]
    assert (spec["total_drafts"], spec["total_verifications"]) == (2, 1)
    assert (spec["drafts_accepted"], spec["drafts_rejected"]) == (1, 1)
    assert (spec["total_draft_tokens"], spec["total_verification_tokens"]) == (140, 150)
    assert spec["acceptance_rate_percent"] == 50.0
    assert stats["errors"] == {"total": 3, "by_model": {"local": 1, "cerebras": 2}}
    assert stats["rate_limits"]["total_hits"] == 1
    with pytest.raises(ValueError, match="unknown model"):
        tracker.record_request("gpt", {"usage": {}})


def test_spec_methods_are_thread_safe() -> None:
    tracker = StatisticsTracker(PRICES)
    usage = {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}
    calls: list[Callable[[], object]] = [
        lambda: tracker.record_request("local", usage),
        lambda: tracker.record_error("cerebras"),
        tracker.record_rate_limit,
        lambda: tracker.record_speculative_decoding(1, 1, True),
        tracker.get_statistics,
        tracker.reset,
    ]
    for method in calls:
        with tracker._lock:  # every method must wait for the tracker's lock
            worker = threading.Thread(target=method)
            worker.start()
            worker.join(0.05)
            assert worker.is_alive(), f"{method} ran without taking the lock"
        worker.join()

    def hammer() -> None:
        for _ in range(400):
            tracker.record_request("local", usage)
            tracker.record_error("cerebras")
            tracker.get_statistics()

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = tracker.get_statistics()
    assert stats["requests"]["total"] == 1600
    assert stats["tokens"]["total"] == 4800
    assert stats["errors"]["by_model"]["cerebras"] == 1600


async def test_restart_reproduces_statistics(ledger: Ledger) -> None:
    tracker = StatisticsTracker(PRICES, ledger)
    for record in scenario():
        await tracker.record(record)
    tracker.record_request("local", {"usage": {"prompt_tokens": 7, "completion_tokens": 9}})
    tracker.record_speculative_decoding(5, 6, False)
    tracker.record_error("local")
    tracker.record_rate_limit()
    await ledger.flush()
    before = tracker.get_statistics()
    await ledger.close()

    led2, tracker2 = await restarted(ledger.path)
    try:
        assert without_uptime(tracker2.get_statistics()) == without_uptime(before)
        assert before["requests"]["total"] == 7
    finally:
        await led2.close()


async def test_reset_zeroes_stats_keeps_rows_and_survives_restart(ledger: Ledger) -> None:
    tracker = StatisticsTracker(PRICES, ledger)
    empty = tracker.get_statistics()
    for record in scenario():
        await tracker.record(record)
    tracker.record_error("cerebras")
    tracker.reset()
    strip = ("uptime", "ledger")
    assert {k: v for k, v in tracker.get_statistics().items() if k not in strip} == {
        k: v for k, v in empty.items() if k not in strip
    }
    await tracker.record(rec("after", [call("local", 10, 10)], model_used="local", cf=(10, 10)))
    tracker.record_rate_limit()
    await ledger.flush()
    before = tracker.get_statistics()
    assert before["requests"]["total"] == 1 and before["rate_limits"]["total_hits"] == 1
    assert before["errors"]["total"] == 0
    await ledger.close()

    led2, tracker2 = await restarted(ledger.path)
    try:
        assert len(led2.rows()) == 7, "reset must not delete ledger rows"
        assert without_uptime(tracker2.get_statistics()) == without_uptime(before)
    finally:
        await led2.close()


async def test_a_load_marker_written_by_an_earlier_version_is_replayed(
    tmp_path: Path, ledger: Ledger
) -> None:
    """Earlier versions wrote a `load` marker carrying whole totals: a restart starts from it."""
    source_ledger = Ledger(tmp_path / "source.db")
    await source_ledger.start()
    source = StatisticsTracker(PRICES, source_ledger)
    for record in scenario():
        await source.record(record)
    source.record_error("local")
    await source_ledger.flush()
    loaded = replay(source_ledger).to_json()
    await source_ledger.close()

    target = StatisticsTracker(PRICES, ledger)
    await target.record(rec("other", [call("cerebras", 5, 5)], model_used="cerebras"))
    ledger.append_event("load", data=loaded)
    await ledger.flush()
    led2, tracker2 = await restarted(ledger.path)
    strip = ("uptime", "ledger")
    expected = {k: v for k, v in source.get_statistics().items() if k not in strip}
    try:
        assert {k: v for k, v in tracker2.get_statistics().items() if k not in strip} == expected
        await tracker2.record(rec("more", [call("local", 1, 1)], model_used="local"))
        assert tracker2.get_statistics()["requests"]["total"] == 7
    finally:
        await led2.close()


def bad_totals(kind: str) -> Any:
    totals: Any = Totals().to_json()
    if kind == "not_an_object":
        totals = [1, 2]
    elif kind == "bad_field":
        totals["requests"] = "many"
    elif kind == "nan_cost":
        totals["cost_usd"] = float("nan")
    elif kind == "bad_counter":
        totals["by_model"] = {"local": 1.5}
    elif kind == "bad_latency":
        totals["ttft_s"] = "fast"
    return totals


BAD_TOTALS = ("not_an_object", "bad_field", "nan_cost", "bad_counter", "bad_latency")


@pytest.mark.parametrize("kind", BAD_TOTALS[1:])  # a marker's data is always an object
async def test_a_bad_load_marker_raises_naming_it_and_changes_nothing(
    ledger: Ledger, kind: str
) -> None:
    tracker = StatisticsTracker(PRICES, ledger)
    for record in scenario():
        await tracker.record(record)
    before = tracker.get_statistics()
    ledger.append_event("load", data=bad_totals(kind))
    await ledger.flush()
    with pytest.raises(StatsFileError, match=r"ledger .*ledger\.db: event \d+"):
        await tracker.load_from_ledger()
    assert without_uptime(tracker.get_statistics()) == without_uptime(before)


@pytest.mark.parametrize("kind", BAD_TOTALS)
async def test_fleet_statistics_leave_out_an_account_that_does_not_parse(kind: str) -> None:
    replica = StatisticsTracker(PRICES)
    for record in scenario():
        await replica.record(record)
    good = replica.shareable_totals()
    fleet = replica.fleet_statistics([good, bad_totals(kind), good])
    assert fleet["fleet"] == {"scope": "fleet", "replicas_reported": 2}
    assert fleet["requests"]["total"] == 2 * replica.get_statistics()["requests"]["total"]


def test_extra_keys_are_merged_beside_spec_keys() -> None:
    tracker = StatisticsTracker(PRICES)
    tracker.record_rate_limit()
    stats = tracker.get_statistics(
        extra={"rate_limits": {"headroom": 0.42}, "routing": {"strategy": "smart_routing"}}
    )
    assert stats["rate_limits"] == {"total_hits": 1, "headroom": 0.42}
    assert stats["routing"] == {"strategy": "smart_routing"}
    assert_same_shape(SPEC_STATS, stats)


async def test_latency_percentiles_use_a_bounded_reservoir() -> None:
    tracker = StatisticsTracker(PRICES)
    for i in range(1, 101):
        await tracker.record(rec(f"p{i}", [], model_used="local", ttft=i / 1000, duration=i / 100))
    perf = tracker.get_statistics()["performance"]
    assert perf["ttft_ms"] == {"p50": 50.0, "p95": 95.0}
    assert perf["duration_ms"] == {"p50": 500.0, "p95": 950.0}

    tracker.reset()
    for i in range(15_000):
        slow = i < 5_000  # pushed out of the 10,000-value reservoir by the fast ones
        await tracker.record(rec(f"q{i}", [], model_used="local", ttft=10.0 if slow else 0.001))
    assert tracker.get_statistics()["performance"]["ttft_ms"]["p95"] == 1.0


async def test_record_fails_loudly_when_ledger_is_not_running(tmp_path: Path) -> None:
    tracker = StatisticsTracker(PRICES, Ledger(tmp_path / "never-started.db"))
    with pytest.raises(LedgerError, match="not running"):
        await tracker.record(rec("x", [call("local", 1, 1)], model_used="local"))
    assert tracker.get_statistics()["requests"]["total"] == 0
