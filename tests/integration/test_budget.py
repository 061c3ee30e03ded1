"""Spend budgets: periods, alerts once each, routing local at 100 %, 402, ledger at start-up."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import pytest
from support import chat, gateway_config, post_stream

from gateway.accounting.records import RequestRecord, UpstreamCall
from gateway.config import BudgetConfig, Prices
from gateway.http.app import create_app
from gateway.quota.budget import Budget, BudgetRefusal, day_bounds, month_bounds

PRICES = Prices(input_per_million=2.25, output_per_million=2.75)


JUNE_15 = datetime(2026, 6, 15, 13, 30, tzinfo=UTC).timestamp()


class Wall:
    def __init__(self, now: float = JUNE_15) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(started_at: float, prompt: int, completion: int, upstream: str = "cerebras"):
    return RequestRecord(
        request_id="r",
        started_at=started_at,
        strategy="always_cerebras",
        stream=True,
        calls=[UpstreamCall(upstream=upstream, prompt_tokens=prompt, completion_tokens=completion)],
    )


def alerts(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "budget alert" in r.getMessage()]


def test_period_bounds() -> None:
    start, end = day_bounds(JUNE_15)
    assert start == datetime(2026, 6, 15, tzinfo=UTC).timestamp()
    assert end - start == 86_400
    start, end = month_bounds(JUNE_15)
    assert start == datetime(2026, 6, 1, tzinfo=UTC).timestamp()
    assert end == datetime(2026, 7, 1, tzinfo=UTC).timestamp()
    dec = datetime(2026, 12, 31, 23, 59, tzinfo=UTC).timestamp()
    assert month_bounds(dec)[1] == datetime(2027, 1, 1, tzinfo=UTC).timestamp()


def test_charges_alerts_once_each_and_refuses_at_100(caplog) -> None:
    wall = Wall()
    budget = Budget(BudgetConfig(daily_usd=1.0, on_exhausted="reject"), PRICES, wall=wall)
    caplog.set_level(logging.INFO, logger="gateway.quota.budget")
    million = record(wall.now, 100_000, 100_000)  # $0.225 + $0.275 = $0.50
    budget.charge(million)
    assert alerts(caplog) == [
        "budget alert: daily Cerebras spend $0.5000 reached 50% of $1.00",
    ]
    budget.charge(record(wall.now, 0, 10_000))  # $0.0275: no new threshold
    assert len(alerts(caplog)) == 1
    assert budget.refusal("cerebras") is None
    budget.charge(record(wall.now, 0, 100_000))  # 80 % crossed
    budget.charge(record(wall.now, 0, 100_000))  # 100 % crossed
    budget.charge(record(wall.now, 0, 100_000))  # nothing new
    messages = alerts(caplog)
    assert [m.split("reached ")[1].split("%")[0] for m in messages] == ["50", "80", "100"]
    assert "requests go local" in messages[-1]
    refusal = budget.refusal("cerebras")
    assert isinstance(refusal, BudgetRefusal)
    assert refusal.reject is True
    assert refusal.retry_after == pytest.approx(10.5 * 3600)
    assert "daily Cerebras budget exhausted" in refusal.reason
    assert budget.refusal("local") is None
    snapshot = budget.snapshot()
    assert snapshot["state"] == "exhausted"
    assert snapshot["daily"]["percent"] == pytest.approx(135.25)  # 0.5 + 0.0275 + 3 * 0.275


def test_local_calls_cost_nothing() -> None:
    budget = Budget(BudgetConfig(daily_usd=0.01), PRICES, wall=Wall())
    budget.charge(record(JUNE_15, 10**9, 10**9, upstream="local"))
    assert budget.snapshot()["daily"]["spent_usd"] == 0


def test_new_day_starts_from_zero_and_alerts_again(caplog) -> None:
    wall = Wall()
    budget = Budget(BudgetConfig(daily_usd=0.5, monthly_usd=100.0), PRICES, wall=wall)
    caplog.set_level(logging.INFO, logger="gateway.quota.budget")
    budget.charge(record(wall.now, 0, 200_000))  # $0.55
    assert budget.refusal("cerebras") is not None
    wall.now += 11 * 3600  # the next UTC day
    assert budget.refusal("cerebras") is None
    budget.charge(record(wall.now - 12 * 3600, 0, 200_000))  # started yesterday: not today's
    assert budget.snapshot()["daily"]["spent_usd"] == 0
    assert budget.snapshot()["monthly"]["spent_usd"] == pytest.approx(1.1)
    budget.charge(record(wall.now, 0, 200_000))
    daily_full = [m for m in alerts(caplog) if m.startswith("budget alert: daily") and "100%" in m]
    assert len(daily_full) == 2
    assert budget.refusal("cerebras") is not None


def test_monthly_budget_refuses_with_its_own_reset() -> None:
    wall = Wall()
    budget = Budget(BudgetConfig(monthly_usd=0.1), PRICES, wall=wall)
    budget.charge(record(wall.now, 0, 40_000))
    refusal = budget.refusal("cerebras")
    assert refusal is not None and "monthly" in refusal.reason
    assert refusal.retry_after == pytest.approx(
        datetime(2026, 7, 1, tzinfo=UTC).timestamp() - wall.now
    )
    assert refusal.reject is False


async def test_crossing_100_percent_routes_local(
    make_gateway, client, local_sim, cerebras_sim, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.quota.budget")
    gw = await make_gateway("always_cerebras", budget={"daily_usd": 0.0002})
    served = []
    for _ in range(8):
        reply = await post_stream(client, gw.url, chat(stream=True))
        assert reply.status == 200
        served.append(reply.chunks[-1]["model_used"])
    cerebras_count = served.count("cerebras")
    assert served == ["cerebras"] * cerebras_count + ["local"] * (8 - cerebras_count)
    assert 2 <= cerebras_count < 8
    assert len(cerebras_sim.requests) == cerebras_count
    last = (await post_stream(client, gw.url, chat(stream=True))).chunks[-1]
    assert "budget exhausted" in last["routing_reason"]
    percents = [m.split("reached ")[1].split("%")[0] for m in alerts(caplog)]
    assert percents == ["50", "80", "100"]
    async with client.get(gw.root + "/stats") as resp:
        budget = (await resp.json())["budget"]
    assert budget["enabled"] is True
    assert budget["state"] == "exhausted"
    assert budget["daily"]["exhausted"] is True
    assert budget["daily"]["limit_usd"] == 0.0002
    assert budget["daily"]["spent_usd"] >= 0.0002
    assert budget["refused_calls"] == 8 - cerebras_count + 1


async def test_exhausted_and_local_unavailable_gives_402_when_configured(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    gw = await make_gateway(
        "smart_routing", budget={"daily_usd": 0.00001, "on_exhausted": "reject"}
    )
    await post_stream(client, gw.url, chat("Refactor the parser", stream=True))  # spends it
    local_sim.inject("http_503_loading")
    async with client.post(
        gw.url + "/chat/completions", json=chat("Refactor the parser", stream=True)
    ) as resp:
        assert resp.status == 402
        error = (await resp.json())["error"]
        assert resp.headers["x-should-retry"] == "false"
    assert error["type"] == "insufficient_quota"
    assert error["code"] == "budget_exhausted"
    assert "daily Cerebras budget exhausted" in error["message"]
    assert "Loading model" in error["message"]
    assert len(cerebras_sim.requests) == 1


async def test_exhausted_with_local_disabled_and_on_exhausted_local_gives_429(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    gw = await make_gateway(
        "always_cerebras", budget={"daily_usd": 0.00001}, models={"local": {"enabled": False}}
    )
    assert (await post_stream(client, gw.url, chat(stream=True))).status == 200
    async with client.post(gw.url + "/chat/completions", json=chat(stream=True)) as resp:
        assert resp.status == 429
        assert "budget exhausted" in (await resp.json())["error"]["message"]
        midnight = day_bounds(time.time())[1]
        assert int(resp.headers["retry-after"]) == pytest.approx(midnight - time.time(), abs=5)
        assert resp.headers["x-should-retry"] == "false"
    assert len(cerebras_sim.requests) == 1


async def test_spend_is_read_from_the_ledger_at_start_up(
    aiohttp_server, client, tmp_path, local_sim, cerebras_sim, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.quota.budget")
    config = gateway_config(tmp_path, local_sim.url, cerebras_sim.url, strategy="always_cerebras")
    server = await aiohttp_server(create_app(config))
    for _ in range(3):
        await post_stream(client, str(server.make_url("/v1")), chat(stream=True))
    await server.close()
    assert alerts(caplog) == []

    limited = gateway_config(
        tmp_path,
        local_sim.url,
        cerebras_sim.url,
        strategy="always_cerebras",
        budget={"daily_usd": 0.00001, "on_exhausted": "reject"},
        models={"local": {"enabled": False}},
    )
    server = await aiohttp_server(create_app(limited))
    assert [m.split("reached ")[1][:3] for m in alerts(caplog)] == ["50%", "80%", "100"]
    async with client.post(server.make_url("/v1/chat/completions"), json=chat(stream=True)) as resp:
        assert resp.status == 402
        assert "no other upstream may serve" in (await resp.json())["error"]["message"]
    assert len(cerebras_sim.requests) == 3


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"daily_usd": 0}, "budget.daily_usd: must be > 0"),
        ({"monthly_usd": -5}, "budget.monthly_usd: must be between"),
        ({"daily_usd": "ten"}, "budget.daily_usd: expected float"),
        ({"on_exhausted": "panic"}, "budget.on_exhausted: must be one of local, reject"),
    ],
)
def test_budget_config_errors_name_the_key(section: dict, message: str) -> None:
    from gateway.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="^<test>: " + message):
        parse_config({"budget": section}, source="<test>", env={})


def test_budget_config_defaults_and_values() -> None:
    from gateway.config import parse_config

    assert parse_config(None, env={}).budget == BudgetConfig(None, None, "local")
    parsed = parse_config(
        {"budget": {"daily_usd": 2, "monthly_usd": 30.5, "on_exhausted": "reject"}}, env={}
    ).budget
    assert parsed == BudgetConfig(daily_usd=2.0, monthly_usd=30.5, on_exhausted="reject")
