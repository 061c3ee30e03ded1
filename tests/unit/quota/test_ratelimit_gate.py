"""RateLimitGate and AdaptiveSwitch without a network: reservations, windows, plan, cool-downs."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

import pytest
from support import use_clock

import gateway.quota
from gateway.accounting.ratio import CharsPerToken
from gateway.accounting.tokens import estimate_prompt_tokens, once
from gateway.config import BudgetConfig, parse_config
from gateway.errors import UpstreamHTTPError, UpstreamRateLimited
from gateway.quota.admission import Refusal
from gateway.quota.budget import Budget, BudgetRefusal
from gateway.quota.gate import RateLimitGate, ReactiveGate
from gateway.quota.plan import PlanWindow
from gateway.quota.reservations import (
    UNCAPPED_COMPLETION_RESERVATION,
    Reservation,
    estimate_reservation,
)
from gateway.strategies.adaptive import AdaptiveSwitch
from gateway.upstreams import build_upstream


def config_of(**sections: Any) -> Any:
    return parse_config(
        {"models": {"cerebras": {"api_key": "k"}}, **sections}, source="<test>", env={}
    )


def make_switch(**sections: Any) -> tuple[AdaptiveSwitch, RateLimitGate, FakeClock]:
    """A gate and an adaptive switch listening to it, as the app wires them."""
    gate, clock = make_gate(**sections)
    return AdaptiveSwitch(gate, config_of(**sections).routing.adaptive_cerebras), gate, clock


BODY = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}


PROMPT = estimate_prompt_tokens(BODY)


PER_REQUEST = PROMPT + 8192


def imported_modules(path: Path) -> set[str]:
    """The modules a source file imports, at any depth of its syntax tree."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_gate(
    clock: FakeClock | None = None, *, budget: Budget | None = None, **sections: Any
) -> tuple[RateLimitGate, FakeClock]:
    config = config_of(**sections)
    upstreams = {
        name: build_upstream(name, config.models[name], None, max_event_bytes=1 << 20)  # type: ignore[arg-type]
        for name in ("local", "cerebras")
    }
    clock = clock or FakeClock()
    gate = RateLimitGate(config, upstreams, budget=budget)
    use_clock(gate, clock)
    return gate, clock


def tokens_window(gate: RateLimitGate, limit: float, remaining: float, reset: float = 60) -> None:
    gate.upstreams["cerebras"].watcher.observe(
        {
            "x-ratelimit-limit-tokens-minute": str(limit),
            "x-ratelimit-remaining-tokens-minute": str(remaining),
            "x-ratelimit-reset-tokens-minute": str(reset),
        }
    )


def rate_limited(retry_after: float | None) -> UpstreamRateLimited:
    return UpstreamRateLimited(
        "cerebras", {"message": "Tokens per minute limit exceeded"}, retry_after=retry_after
    )


@pytest.mark.parametrize(
    ("extra", "completion"),
    [
        ({}, 8192),
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 300}, 300),
        ({"max_completion_tokens": 100_000}, 8192),
        ({"max_tokens": 50_000}, 8192),
    ],
)
def test_reservation_is_prompt_plus_capped_completion(extra: dict, completion: int) -> None:
    gate, _ = make_gate()
    reservation = estimate_reservation(gate.upstreams["cerebras"], {**BODY, **extra})
    assert reservation.requests == 1
    assert reservation.tokens == PROMPT + completion


def test_reservation_follows_the_configured_cap() -> None:
    gate, _ = make_gate(models={"cerebras": {"api_key": "k", "max_completion_tokens_cap": 1000}})
    assert estimate_reservation(gate.upstreams["cerebras"], BODY).tokens == PROMPT + 1000
    local = estimate_reservation(gate.upstreams["local"], BODY)
    assert local.tokens == PROMPT + UNCAPPED_COMPLETION_RESERVATION


async def test_admission_reads_the_running_total_instead_of_summing_the_calls_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate, _ = make_gate()
    tokens_window(gate, 1e9, 1e9)
    tickets = [await gate.admit("cerebras", BODY) for _ in range(100)]
    assert not any(isinstance(t, Refusal) for t in tickets)
    additions = 0
    add = Reservation.__add__

    def counting(self: Reservation, other: Reservation) -> Reservation:
        nonlocal additions
        additions += 1
        return add(self, other)

    monkeypatch.setattr(Reservation, "__add__", counting)
    assert not isinstance(await gate.admit("cerebras", BODY), Refusal)
    assert additions <= 1  # the new call joins the total; the 100 in flight are not re-added
    assert gate.pending("cerebras") == Reservation(101, 101 * PER_REQUEST)


async def test_the_running_total_follows_admissions_and_releases_in_any_order() -> None:
    gate, _ = make_gate()
    tokens_window(gate, 1e9, 1e9)
    limits = (10, 200, 3000, 45)
    tickets = [await gate.admit("cerebras", {**BODY, "max_tokens": n}) for n in limits]
    assert not any(isinstance(t, Refusal) for t in tickets)
    assert gate.pending("cerebras") == Reservation(4, 4 * PROMPT + sum(limits))
    tickets[1].release()  # type: ignore[union-attr]
    tickets[1].release({})  # type: ignore[union-attr]  (a second release gives back nothing)
    assert gate.pending("cerebras") == Reservation(3, 3 * PROMPT + 10 + 3000 + 45)
    assert gate.snapshot()["in_flight"] == {
        "cerebras": {"calls": 3, "tokens": 3 * PROMPT + 10 + 3000 + 45}
    }
    for ticket in (tickets[3], tickets[0], tickets[2]):
        ticket.release()  # type: ignore[union-attr]
    assert gate.pending("cerebras") == Reservation()
    assert gate.snapshot()["in_flight"] == {}


async def test_same_millisecond_requests_see_each_others_reservations() -> None:
    gate, _ = make_gate()
    tokens_window(gate, 100_000, 100_000)
    outcomes = [await gate.admit("cerebras", BODY) for _ in range(20)]
    admitted = [o for o in outcomes if not isinstance(o, Refusal)]
    refused = [o for o in outcomes if isinstance(o, Refusal)]
    # 20 % of 100k stays free: (100000 - 20000) // PER_REQUEST calls fit.
    assert len(admitted) == 80_000 // PER_REQUEST == 9
    assert outcomes[:9] == admitted
    assert "reserved by calls in flight" in refused[0].reason
    assert refused[0].retry_after == pytest.approx(60)
    assert gate.pending("cerebras").tokens == 9 * PER_REQUEST
    for ticket in admitted:
        ticket.release({})
    assert gate.pending("cerebras").tokens == 0
    assert not isinstance(await gate.admit("cerebras", BODY), Refusal)


async def test_concurrent_tasks_see_each_others_reservations() -> None:
    gate, _ = make_gate()
    tokens_window(gate, 100_000, 100_000)

    async def one() -> Any:
        await asyncio.sleep(0)
        return await gate.admit("cerebras", BODY)

    outcomes = await asyncio.gather(*(one() for _ in range(20)))
    assert sum(not isinstance(o, Refusal) for o in outcomes) == 9


async def test_release_is_idempotent() -> None:
    gate, _ = make_gate()
    first = await gate.admit("cerebras", BODY)
    second = await gate.admit("cerebras", BODY)
    assert not isinstance(first, Refusal) and not isinstance(second, Refusal)
    first.release()
    first.release({"x-ratelimit-remaining-tokens-minute": "1"})
    assert gate.pending("cerebras").requests == 1
    second.release()
    assert gate.pending("cerebras").requests == 0


async def test_headers_after_release_replace_the_reservation() -> None:
    gate, _ = make_gate()
    tokens_window(gate, 30_000, 30_000)
    ticket = await gate.admit("cerebras", BODY)
    assert not isinstance(ticket, Refusal)
    tokens_window(gate, 30_000, 30_000 - PER_REQUEST)  # the response's own account
    ticket.release()
    assert gate.pending("cerebras").tokens == 0
    assert not isinstance(await gate.admit("cerebras", BODY), Refusal)  # 30k - 2 * 8.2k >= 6k
    assert isinstance(await gate.admit("cerebras", BODY), Refusal)  # 30k - 3 * 8.2k < 6k


async def test_window_is_full_again_after_its_reset() -> None:
    gate, clock = make_gate()
    tokens_window(gate, 30_000, 0, reset=12.5)
    refusal = await gate.admit("cerebras", BODY)
    assert isinstance(refusal, Refusal)
    assert refusal.retry_after == pytest.approx(12.5)
    assert "tokens-minute would drop to 0 of 30000" in refusal.reason
    clock.now += 12.5
    assert not isinstance(await gate.admit("cerebras", BODY), Refusal)


async def test_requests_day_window_counts_requests() -> None:
    gate, _ = make_gate()
    gate.upstreams["cerebras"].watcher.observe(
        {
            "x-ratelimit-limit-requests-day": "100",
            "x-ratelimit-remaining-requests-day": "21",
            "x-ratelimit-reset-requests-day": "3600",
        }
    )
    assert not isinstance(await gate.admit("cerebras", BODY), Refusal)  # 21 - 1 = 20 = 20 %
    refusal = await gate.admit("cerebras", BODY)
    assert isinstance(refusal, Refusal) and "requests-day" in refusal.reason


async def test_threshold_zero_admits_an_exact_fit() -> None:
    gate, _ = make_gate(routing={"adaptive_cerebras": {"rate_limit_threshold": 0}})
    tokens_window(gate, 100_000, PER_REQUEST)
    assert not isinstance(await gate.admit("cerebras", BODY), Refusal)
    assert isinstance(await gate.admit("cerebras", BODY), Refusal)


async def test_openai_style_windows_are_checked_too() -> None:
    gate, _ = make_gate()
    gate.upstreams["cerebras"].watcher.observe(
        {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "2"}
    )
    refusal = await gate.admit("cerebras", BODY)
    assert isinstance(refusal, Refusal) and "requests would drop to 1 of 10" in refusal.reason
    assert refusal.retry_after is None


async def test_no_headers_and_no_plan_admits() -> None:
    gate, _ = make_gate()
    assert all([not isinstance(await gate.admit("cerebras", BODY), Refusal) for _ in range(100)])
    assert all([not isinstance(await gate.admit("local", BODY), Refusal) for _ in range(100)])


async def test_plan_requests_per_minute_is_enforced_without_headers() -> None:
    gate, clock = make_gate(rate_limits={"cerebras": {"requests_per_minute": 5}})
    admitted = []
    for _ in range(4):
        ticket = await gate.admit("cerebras", BODY)
        assert not isinstance(ticket, Refusal)
        admitted.append(ticket)
        clock.now += 1
    for ticket in admitted:
        ticket.release()  # released calls still count in the plan's sliding minute
    refusal = await gate.admit("cerebras", BODY)
    assert isinstance(refusal, Refusal)
    assert "requests-minute (plan)" in refusal.reason
    assert refusal.retry_after == pytest.approx(56.0)  # the oldest of the four leaves at +60
    clock.now += 56.0
    assert not isinstance(await gate.admit("cerebras", BODY), Refusal)


async def test_header_window_wins_over_the_plan_window_of_the_same_name() -> None:
    gate, _ = make_gate(rate_limits={"cerebras": {"tokens_per_minute": 10_000}})
    assert isinstance(await gate.admit("cerebras", BODY), Refusal)  # 8.2k of a 10k plan: under 20 %
    tokens_window(gate, 1_000_000, 1_000_000)
    assert not isinstance(await gate.admit("cerebras", BODY), Refusal)
    assert gate.snapshot()["plan_headroom"] == {}


def test_plan_window_sliding_log() -> None:
    window = PlanWindow("tokens-minute", "tokens", 100, 60)
    window.add(0, 30)
    window.add(10, 50)
    assert window.remaining(10) == 20
    assert window.wait(10, 40, 0) == 50  # the 30 at t=0 leaves at t=60
    assert window.wait(10, 90, 0) == 60  # both must leave
    assert window.wait(10, 101, 0) is None
    assert window.remaining(60) == 50
    assert window.remaining(70) == 100


def exhausted(gate: RateLimitGate, reset: float) -> UpstreamRateLimited:
    """A 429 whose headers show the minute token window empty until `reset`."""
    tokens_window(gate, 30_000, 0, reset=reset)
    return rate_limited(gate.upstreams["cerebras"].watcher.retry_after())


async def test_429_cools_down_until_its_reset_for_every_strategy() -> None:
    gate, clock = make_gate()
    gate.observe_failure("cerebras", exhausted(gate, 30.0))
    tokens_window(gate, 30_000, 30_000, reset=0)  # even if later headers looked fine
    for view in (gate, gate.for_strategy("always_cerebras")):
        refusal = await view.admit("cerebras", BODY)
        assert isinstance(refusal, Refusal)
        assert refusal.retry_after == pytest.approx(30.0)
        assert "cooling down after a 429" in refusal.reason
    assert not isinstance(await gate.admit("local", BODY), Refusal)
    clock.now += 30
    assert not isinstance(await gate.admit("cerebras", BODY), Refusal)
    assert gate.snapshot()["hits"] == {"cerebras": 1}
    assert gate.snapshot()["fallbacks_by_reason"]["cool_down"] == 2


@pytest.mark.parametrize("retry_after", [None, 0.2, 15.0])
async def test_429_the_headers_do_not_explain_waits_cool_down_duration(retry_after) -> None:
    """E.g. Cerebras' requests-per-minute limit: the token window still has room, so its reset
    (the upstream's retry_after guess) says nothing about when the request limit frees up."""
    gate, clock = make_gate(routing={"adaptive_cerebras": {"cool_down_duration": 15}})
    tokens_window(gate, 30_000, 29_000, reset=retry_after or 0)
    gate.observe_failure("cerebras", rate_limited(retry_after))
    refusal = await gate.admit("cerebras", BODY)
    assert isinstance(refusal, Refusal) and refusal.retry_after == pytest.approx(15)
    clock.now += 15
    assert not isinstance(await gate.admit("cerebras", BODY), Refusal)


async def test_retry_after_header_sets_the_cool_down() -> None:
    gate, clock = make_gate()
    gate.upstreams["cerebras"].watcher.observe({"retry-after": "7"})
    gate.observe_failure("cerebras", rate_limited(7.0))
    refusal = await gate.admit("cerebras", BODY)
    assert isinstance(refusal, Refusal) and refusal.retry_after == pytest.approx(7)


def test_a_later_429_extends_but_never_shortens_the_cool_down() -> None:
    gate, clock = make_gate()
    gate.observe_failure("cerebras", exhausted(gate, 30.0))
    gate.observe_failure("cerebras", exhausted(gate, 5.0))
    assert gate.cooling_until["cerebras"] == clock.now + 30


async def test_other_failures_do_not_cool_down() -> None:
    gate, _ = make_gate()
    gate.observe_failure("cerebras", UpstreamHTTPError("cerebras", 500, {}, fallback_ok=True))
    assert not isinstance(await gate.admit("cerebras", BODY), Refusal)
    assert gate.snapshot()["hits"] == {}


def test_429_listeners_hear_of_each_rate_limit_with_the_wait_the_gate_enforces() -> None:
    gate, clock = make_gate(routing={"adaptive_cerebras": {"cool_down_duration": 15}})
    heard: list[tuple[str, str, float]] = []
    gate.rate_limit_listeners.append(lambda *args: heard.append(args))
    gate.observe_failure("cerebras", UpstreamHTTPError("cerebras", 500, {}, fallback_ok=True))
    assert heard == []
    gate.for_strategy("always_cerebras").observe_failure("cerebras", rate_limited(None))
    gate.observe_failure("cerebras", exhausted(gate, 40.0))
    assert heard == [
        ("cerebras", "cerebras answered 429: Tokens per minute limit exceeded", 15.0),
        ("cerebras", "cerebras answered 429: Tokens per minute limit exceeded", 40.0),
    ]


def test_the_gate_holds_no_strategy_state() -> None:
    """The quota package knows no strategy: adaptive_cerebras listens to the gate, not in it."""
    for path in sorted(Path(gateway.quota.__file__).parent.glob("*.py")):
        strategies = {m for m in imported_modules(path) if m.startswith("gateway.strategies")}
        assert strategies == set(), path
    gate, _ = make_gate()
    assert gate.rate_limit_listeners == []
    switch, gate, _ = make_switch()
    assert gate.rate_limit_listeners == [switch.on_rate_limited]
    assert "state" not in gate.snapshot() and "adaptive_local" not in str(gate.snapshot())


async def test_reactive_strategies_skip_prediction_but_their_calls_count() -> None:
    gate, _ = make_gate()
    tokens_window(gate, 20_000, 20_000)
    reactive = gate.for_strategy("always_cerebras")
    assert isinstance(reactive, ReactiveGate)
    assert gate.for_strategy("smart_routing") is gate
    tickets = [await reactive.admit("cerebras", BODY) for _ in range(3)]
    assert not any(isinstance(t, Refusal) for t in tickets)
    assert isinstance(await gate.admit("cerebras", BODY), Refusal)  # sees the three reservations


def test_reactive_strategies_are_configurable() -> None:
    gate, _ = make_gate(rate_limits={"reactive_strategies": []})
    assert gate.for_strategy("always_cerebras") is gate


async def test_spent_budget_refuses_cerebras_only() -> None:
    budget = Budget(BudgetConfig(daily_usd=1.0), parse_config(None, env={}).cerebras.prices)
    budget.periods[0].spent_usd = 1.0
    gate, _ = make_gate(budget=budget)
    for view in (gate, gate.for_strategy("always_cerebras")):
        refusal = await view.admit("cerebras", BODY)
        assert isinstance(refusal, BudgetRefusal)
        assert "daily Cerebras budget exhausted" in refusal.reason
    assert not isinstance(await gate.admit("local", BODY), Refusal)


def test_switch_goes_local_on_a_refusal_and_back_on_fresh_headers() -> None:
    switch, gate, clock = make_switch(routing={"adaptive_cerebras": {"cool_down_duration": 30}})
    tokens_window(gate, 30_000, 30_000, reset=50)
    assert switch.decide(BODY)[0] == "cerebras"
    tokens_window(gate, 30_000, 10_000, reset=50)
    upstream, reason = switch.decide(BODY)
    assert (upstream, switch.state) == ("local", "local")
    assert "switched to local for 30s" in reason and "tokens-minute" in reason

    clock.now += 10
    upstream, reason = switch.decide(BODY)
    assert upstream == "local" and "cool-down 20.0s left" in reason

    clock.now += 20  # cool-down over; reset (50 s) not passed; no fresh headers
    upstream, reason = switch.decide(BODY)
    assert upstream == "local" and "waiting for fresh rate-limit headers" in reason

    tokens_window(gate, 30_000, 12_000, reset=20)  # fresh, still not enough
    upstream, reason = switch.decide(BODY)
    assert upstream == "local" and "stays local" in reason
    assert switch.switches == 1

    clock.now += 31
    tokens_window(gate, 30_000, 29_000, reset=2)  # fresh and enough
    upstream, reason = switch.decide(BODY)
    assert upstream == "cerebras"
    assert "back to Cerebras: fresh headers show capacity" in reason
    assert switch.switches == 2
    assert [s["to"] for s in switch.recent] == ["local", "local", "cerebras"]


def test_switch_comes_back_after_an_elapsed_reset() -> None:
    switch, gate, clock = make_switch(routing={"adaptive_cerebras": {"cool_down_duration": 5}})
    tokens_window(gate, 30_000, 1_000, reset=40)
    assert switch.decide(BODY)[0] == "local"
    clock.now += 39
    assert switch.decide(BODY)[0] == "local"
    clock.now += 1
    upstream, reason = switch.decide(BODY)
    assert upstream == "cerebras" and "the reset has passed" in reason


def test_a_429_from_any_strategy_switches_adaptive_to_local() -> None:
    switch, gate, clock = make_switch(routing={"adaptive_cerebras": {"cool_down_duration": 5}})
    gate.for_strategy("always_cerebras").observe_failure("cerebras", exhausted(gate, 20.0))
    assert switch.state == "local"
    assert "answered 429" in switch.reason
    assert switch.snapshot(clock.now)["cool_down_remaining_s"] == 5.0
    assert gate.snapshot()["cooling_down_s"] == {"cerebras": 20.0}
    clock.now += 6
    assert switch.decide(BODY)[0] == "local"  # the 429's reset is the evidence awaited
    clock.now += 14
    assert switch.decide(BODY)[0] == "cerebras"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"reactive_strategies": "always_cerebras"}, "rate_limits.reactive_strategies: expected"),
        ({"reactive_strategies": [""]}, "rate_limits.reactive_strategies: must be a list"),
        ({"cerebras": {"requests_per_minute": 0}}, "rate_limits.cerebras.requests_per_minute"),
        ({"cerebras": {"tokens_per_minute": "many"}}, "rate_limits.cerebras.tokens_per_minute"),
    ],
)
def test_rate_limits_config_errors_name_the_key(section: dict, message: str) -> None:
    from gateway.config import ConfigError

    with pytest.raises(ConfigError, match="^<test>: " + message):
        parse_config({"rate_limits": section}, source="<test>", env={})


def test_unknown_reactive_strategy_is_refused_at_start(tmp_path) -> None:
    from gateway.config import ConfigError
    from gateway.strategies import known_names

    with pytest.raises(ConfigError, match="rate_limits.reactive_strategies: unknown strategy"):
        parse_config(
            {
                "rate_limits": {"reactive_strategies": ["always_cerebras", "alwys_local"]},
                "storage": {"ledger_path": str(tmp_path / "l.db")},
            },
            source="<test>",
            env={},
            names=known_names(),
        )


async def test_an_upstream_with_no_known_limit_skips_the_prompt_estimate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate, _ = make_gate()

    def no_estimate(body: Any) -> int:
        raise AssertionError("the prompt was estimated for an upstream with no known limit")

    monkeypatch.setattr("gateway.quota.reservations.estimate_prompt_tokens", no_estimate)
    ticket = await gate.admit("local", BODY)
    assert not isinstance(ticket, Refusal)
    assert gate.pending("local").requests == 1.0
    ticket.release()  # type: ignore[union-attr]
    tokens_window(gate, limit=100_000, remaining=90_000)
    with pytest.raises(AssertionError, match="no known limit"):
        await gate.admit("cerebras", BODY)  # a reported limit: the estimate is needed again


async def test_switch_checks_with_the_estimate_admission_will_use() -> None:
    """A learned characters-per-token ratio below the rule of thumb's 4 makes a long prompt
    dearer: the switch must see what admission will see, or it says "cerebras" and the call is
    then refused (or goes local for a cool-down that admission would not have imposed)."""
    body = {"model": "m", "messages": [{"role": "user", "content": "word " * 8_000}]}
    ratio = CharsPerToken()
    for _ in range(40):
        ratio.learn(once(body), estimate_prompt_tokens(body) * 2)  # 2 characters per token
    learned = ratio.estimate(once(body))
    assert learned() > 1.8 * estimate_prompt_tokens(body)

    def fresh(remaining: float) -> tuple[AdaptiveSwitch, RateLimitGate]:
        switch, gate, _ = make_switch()
        tokens_window(gate, 60_000, remaining, reset=50)
        return switch, gate

    remaining = 35_000  # the 20 % threshold keeps 12,000: ~18,200 fits, ~28,200 does not
    _, gate = fresh(remaining)
    refused = await gate.admit("cerebras", body, learned)
    assert isinstance(refused, Refusal), "the learned one won't fit"
    _, gate = fresh(remaining)
    assert not isinstance(await gate.admit("cerebras", body), Refusal), "the rule of thumb's would"
    switch, _ = fresh(remaining)
    assert switch.decide(body, learned)[0] == "local"
    switch, _ = fresh(remaining)
    assert switch.decide(body)[0] == "cerebras"
