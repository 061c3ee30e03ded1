"""One bill per request: cached tokens at their own price, and every reader agreeing on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import chat, post_stream

from gateway.accounting.bill import Bill, bill, price
from gateway.accounting.ledger import Ledger
from gateway.accounting.metrics import Metrics
from gateway.accounting.records import RequestRecord, UpstreamCall
from gateway.accounting.stats import StatisticsTracker
from gateway.config import BudgetConfig, ConfigError, Prices, parse_config
from gateway.config_check import render
from gateway.quota.budget import Budget

CEREBRAS = Prices(input_per_million=2.0, output_per_million=3.0, cached_input_per_million=0.5)


TARIFF = {"local": Prices(), "cerebras": CEREBRAS}


def call(upstream: str = "cerebras", **tokens: int) -> UpstreamCall:
    return UpstreamCall(upstream=upstream, **tokens)  # type: ignore[arg-type]


def make(request_id: str, *calls: UpstreamCall, outcome: str = "ok") -> RequestRecord:
    record = RequestRecord(
        request_id=request_id,
        started_at=0.0,
        strategy="test",
        stream=True,
        outcome=outcome,  # type: ignore[arg-type]
        calls=list(calls),
    )
    if calls and outcome == "ok":
        record.delivered_by(calls[-1])
    return record


def test_cached_prompt_tokens_are_billed_at_the_cached_price() -> None:
    record = make("r", call(prompt_tokens=1_000_000, cached_tokens=400_000, completion_tokens=10))
    billed = bill(record, TARIFF)
    expected = 600_000 * 2.0 / 1e6 + 400_000 * 0.5 / 1e6 + 10 * 3.0 / 1e6
    assert billed.cerebras_usd == pytest.approx(expected)
    assert billed.calls == pytest.approx((expected,))
    assert billed.total_usd == pytest.approx(expected)


def test_cerebras_own_cache_is_no_saving_but_a_local_answer_is() -> None:
    served = make("c", call(prompt_tokens=1000, cached_tokens=800, completion_tokens=100))
    assert bill(served, TARIFF).saved_usd == 0.0
    local = make("l", call("local", prompt_tokens=1000, cached_tokens=800, completion_tokens=100))
    billed = bill(local, TARIFF)
    assert billed.local_usd == 0.0
    assert billed.counterfactual_usd == pytest.approx(price(CEREBRAS, 1000, 100, 0))
    assert billed.saved_usd == pytest.approx(billed.counterfactual_usd, abs=1e-6)


def test_the_cached_price_defaults_to_the_input_price() -> None:
    default = Prices(2.25, 2.75)
    assert default.cached_rate == 2.25
    assert price(default, 1000, 50, 900) == pytest.approx(price(default, 1000, 50, 0))
    cfg = parse_config({"models": {"cerebras": {"prices": {"input_per_million": 1.5}}}}, env={})
    assert cfg.cerebras.prices.cached_input_per_million == 1.5
    cfg = parse_config(None, env={})
    assert cfg.cerebras.prices.cached_input_per_million == cfg.cerebras.prices.input_per_million
    assert "cached_input_per_million: 2.25" in render(cfg)


def test_a_configured_cached_price_is_read_and_shown() -> None:
    prices = {"input_per_million": 2.25, "output_per_million": 2.75, "cached_input_per_million": 0}
    cfg = parse_config({"models": {"cerebras": {"prices": prices}}}, env={})
    assert cfg.cerebras.prices == Prices(2.25, 2.75, 0.0)
    assert "cached_input_per_million: 0.0" in render(cfg)


@pytest.mark.parametrize(
    ("prices", "message"),
    [
        (
            {"cached_input_per_million": -1},
            "models.cerebras.prices.cached_input_per_million: must be between 0",
        ),
        (
            {"cached_input_per_million": "cheap"},
            "models.cerebras.prices.cached_input_per_million: expected float",
        ),
        (
            {"cached_input_per_milion": 1},
            "models.cerebras.prices.cached_input_per_milion: unknown key; did you mean "
            "models.cerebras.prices.cached_input_per_million?",
        ),
    ],
)
def test_the_cached_price_is_validated(prices: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"models": {"cerebras": {"prices": prices}}}, env={})


def test_odd_token_counts_are_priced_as_the_ledger_stores_them() -> None:
    odd = make("o", call(prompt_tokens=-5, completion_tokens="x", cached_tokens=10**9))  # type: ignore[arg-type]
    assert bill(odd, TARIFF).cerebras_usd == 0.0
    unknown = make("u", call("elsewhere", prompt_tokens=10**6), outcome="error")
    assert bill(unknown, TARIFF) == Bill((0.0,), 0.0, 0.0, 0.0)


def metric_sum(text: str, family: str, **labels: str) -> float:
    for metric in text_string_to_metric_families(text):
        if metric.name == family:
            return sum(
                s.value
                for s in metric.samples
                if s.name.endswith("_total")
                and all(s.labels.get(k) == v for k, v in labels.items())
            )
    raise AssertionError(f"no {family}")


async def test_ledger_stats_metrics_and_budget_agree_on_the_same_records(tmp_path: Path) -> None:
    records = [
        make("a", call(prompt_tokens=12_000, cached_tokens=9_000, completion_tokens=300)),
        make(
            "b",
            call("local", role="draft", prompt_tokens=12_000, completion_tokens=250),
            call(role="verify", status="cancelled", prompt_tokens=12_000, completion_tokens=40),
            call("local", prompt_tokens=12_000, cached_tokens=11_000, completion_tokens=250),
        ),
        make("c", call(status="error", prompt_tokens=7_000, cached_tokens=7_000), outcome="error"),
        make("d", call(prompt_tokens=5_000, cached_tokens=1_000, completion_tokens=80)),
    ]
    ledger = Ledger(tmp_path / "ledger.db")
    await ledger.start()
    try:
        stats = StatisticsTracker(TARIFF, ledger)
        metrics = Metrics(TARIFF, {}, lambda: 0)
        budget = Budget(BudgetConfig(daily_usd=100.0), CEREBRAS, wall=lambda: 1.0)
        bills = []
        for record in records:
            billed = stats.bill(record)
            bills.append(billed)
            metrics.observe(record, billed)
            budget.charge(record, billed)
            await stats.record(record, billed)
        rows = ledger.rows()
        restarted = Budget(BudgetConfig(daily_usd=100.0), CEREBRAS, wall=lambda: 1.0)
        await restarted.load(ledger)
    finally:
        await ledger.close()

    cerebras = sum(b.cerebras_usd for b in bills)
    total = sum(b.total_usd for b in bills)
    counterfactual = sum(b.counterfactual_usd for b in bills)
    assert cerebras > 0 and counterfactual > 0
    paid = [c for r in records for c in r.calls if c.upstream == "cerebras"]
    uncached = sum(price(CEREBRAS, c.prompt_tokens, c.completion_tokens, 0) for c in paid)
    assert cerebras < uncached  # the cached part was billed at its lower price
    assert [row.cost_usd for row in rows] == pytest.approx([b.total_usd for b in bills])
    assert [row.cerebras_cost_usd for row in rows] == pytest.approx([b.cerebras_usd for b in bills])
    costs = stats.get_statistics()["costs"]
    assert costs["cerebras_cost_usd"] == pytest.approx(cerebras, abs=1e-6)
    assert costs["total_cost_usd"] == pytest.approx(total, abs=1e-6)
    assert costs["counterfactual_cost_usd"] == pytest.approx(counterfactual, abs=1e-6)
    assert costs["cost_saved_usd"] == pytest.approx(counterfactual - cerebras, abs=1e-6)
    text = metrics.render().decode()
    assert metric_sum(text, "glm_gateway_cost_dollars", upstream="cerebras") == pytest.approx(
        cerebras
    )
    assert budget.snapshot()["daily"]["spent_usd"] == pytest.approx(cerebras, abs=1e-6)
    assert restarted.snapshot()["daily"]["spent_usd"] == pytest.approx(cerebras, abs=1e-6)


def test_each_reader_prices_alone_as_the_bill_does() -> None:
    """Without a bill handed in, metrics and the budget price the record the same way."""
    record = make("a", call(prompt_tokens=12_000, cached_tokens=9_000, completion_tokens=300))
    expected = bill(record, TARIFF).cerebras_usd
    metrics = Metrics(TARIFF, {}, lambda: 0)
    metrics.observe(record)
    assert metric_sum(
        metrics.render().decode(), "glm_gateway_cost_dollars", upstream="cerebras"
    ) == pytest.approx(expected)
    budget = Budget(BudgetConfig(daily_usd=100.0), CEREBRAS, wall=lambda: 1.0)
    budget.charge(record)
    assert budget.snapshot()["daily"]["spent_usd"] == pytest.approx(expected, abs=1e-6)


async def test_cached_tokens_reported_by_cerebras_are_billed_alike_everywhere(
    make_gateway, client, cerebras_sim
) -> None:
    """Through real HTTP: the simulated Cerebras reports half of each prompt as cached."""
    cerebras_sim.options.cached_prompt_share = 0.5
    prices = {"input_per_million": 2.0, "output_per_million": 3.0, "cached_input_per_million": 0.5}
    gw = await make_gateway(
        "always_cerebras",
        models={"cerebras": {"prices": prices}},
        budget={"daily_usd": 100.0},
    )
    for i in range(3):
        reply = await post_stream(client, gw.url, chat(f"{i} " + "word " * 200, stream=True))
        assert reply.status == 200
    sent = cerebras_sim.requests
    cached = [int(r.prompt_tokens * 0.5) for r in sent]
    expected = sum(
        price(CEREBRAS, r.prompt_tokens, r.completion_tokens_sent, c)
        for r, c in zip(sent, cached, strict=True)
    )
    assert all(c > 0 for c in cached)
    async with client.get(f"{gw.root}/stats") as resp:
        stats = await resp.json()
    async with client.get(f"{gw.root}/metrics") as resp:
        metrics = await resp.text()
    await gw.services.ledger.flush()
    rows = gw.services.ledger.rows()
    assert [c.cached_tokens for row in rows for c in row.upstream_calls()] == cached
    assert sum(row.cerebras_cost_usd for row in rows) == pytest.approx(expected)
    assert stats["costs"]["cerebras_cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert stats["costs"]["cost_saved_usd"] == 0.0, "Cerebras' own cache is no saving"
    assert stats["budget"]["daily"]["spent_usd"] == pytest.approx(expected, abs=1e-6)
    assert metric_sum(metrics, "glm_gateway_cost_dollars", upstream="cerebras") == pytest.approx(
        expected
    )
