"""Shared state through a real redis-server: two replicas in front of one simulated Cerebras."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from redis_support import RedisServer
from support import Gateway, chat, gateway_config, post_stream, start_gateway

from gateway.dev.sim import SimServer
from gateway.dev.sim.server import update_options
from gateway.quota.reservations import Reservation

COMPLEX_ASK = "Refactor the parser in src/parser.py"


ReplicaFactory = Callable[..., Awaitable[list[Gateway]]]


@pytest.fixture
def make_replicas(
    aiohttp_server: Any,
    tmp_path: Path,
    local_sim: SimServer,
    cerebras_sim: SimServer,
    redis_server: RedisServer,
) -> ReplicaFactory:
    """`make_replicas(n, **sections)`: `n` gateways sharing one Redis, each with its own
    ledger."""

    async def factory(n: int = 2, **sections: Any) -> list[Gateway]:
        state = {"redis_url": redis_server.url, **sections.pop("state", {})}
        out = []
        for i in range(n):
            cfg = gateway_config(
                tmp_path / f"r{i}",
                local_sim.url,
                cerebras_sim.url,
                strategy="smart_routing",
                state={**state, "replica_id": f"replica-{i}"},
                **sections,
            )
            out.append(await start_gateway(aiohttp_server, cfg))
        return out

    return factory


async def split_burst(client: Any, gateways: list[Gateway], n: int, **extra: Any) -> list[Any]:
    return list(
        await asyncio.gather(
            *(
                post_stream(
                    client, gateways[i % len(gateways)].url, chat(f"{COMPLEX_ASK} {i}", **extra)
                )
                for i in range(n)
            )
        )
    )


async def fleet_stats(client: Any, gw: Gateway, total: int) -> dict[str, Any]:
    """`/stats` once it counts `total` requests (publications land just after the answers)."""
    for _ in range(200):
        async with client.get(gw.root + "/stats") as resp:
            stats: dict[str, Any] = await resp.json()
        if stats["requests"]["total"] >= total:
            return stats
        await asyncio.sleep(0.02)
    return stats


# Two replicas sharing a $0.20 daily budget at prices that reach it in a few requests.
BUDGETED: dict[str, Any] = {
    "models": {"cerebras": {"prices": {"input_per_million": 1000.0, "output_per_million": 1000.0}}},
    "budget": {"daily_usd": 0.2},
}


async def test_burst_split_across_two_replicas_gets_no_429(
    make_replicas, client, cerebras_sim, redis_server
) -> None:
    update_options(cerebras_sim.state, {"quota_tokens_per_minute": 3000})
    # A generous timeout: on a loaded machine a late answer would fall back to local state,
    # which this test is not about.
    gws = await make_replicas(
        state={"timeout_ms": 2000},
    )
    warm = await post_stream(client, gws[0].url, chat(COMPLEX_ASK, stream=True, max_tokens=200))
    assert warm.status == 200 and warm.chunks[-1]["model_used"] == "cerebras"
    replies = await split_burst(client, gws, 24, stream=True, max_tokens=200)
    assert [r.status for r in replies] == [200] * 24
    assert all(r.chunks[-1].get("choices") is not None for r in replies)
    assert [r.status for r in cerebras_sim.requests if r.status == 429] == []
    served = [r.chunks[-1]["model_used"] for r in replies]
    assert 0 < served.count("cerebras") < 24, served  # the quota was used, not exceeded
    refused = sum(gw.services.gate.refused["predicted"] for gw in gws)
    assert refused == served.count("local")
    for gw in gws:  # every reservation was given back
        assert not gw.services.gate.in_flight.get("cerebras")
        assert gw.services.gate.pending("cerebras") == Reservation()
    store = aioredis.Redis.from_url(redis_server.url)
    for _ in range(200):  # releases are sent in the background, just after each answer
        if await store.zcard("glm:cerebras:reserved") == 0:
            break
        await asyncio.sleep(0.02)
    assert await store.zcard("glm:cerebras:reserved") == 0
    await store.aclose()


async def test_shared_budget_is_not_overshot_beyond_requests_in_flight(
    make_replicas, client, cerebras_sim
) -> None:
    gws = await make_replicas(**BUDGETED)
    for _ in range(10):  # one request in flight per replica at a time
        replies = await split_burst(client, gws, 2, max_tokens=32)
        assert [r.status for r in replies] == [200, 200]
    costs = [
        1000.0 * (r.prompt_tokens + r.completion_tokens_sent) / 1e6
        for r in cerebras_sim.requests
        if r.status == 200
    ]
    spent = sum(costs)
    # Each replica alone would spend up to the limit; shared, the fleet stops at it, plus at
    # most what the requests already in flight (one per replica) cost.
    assert 0.2 <= spent <= 0.2 + 2 * max(costs), (spent, costs)
    stats = await fleet_stats(client, gws[1], 20)
    assert stats["budget"]["scope"] == "fleet"
    assert stats["budget"]["daily"]["exhausted"] is True
    assert stats["budget"]["daily"]["spent_usd"] == pytest.approx(spent, rel=1e-6)


async def test_stats_on_either_replica_counts_the_fleet(make_replicas, client) -> None:
    # What is counted, not how fast Redis answers: a garbage-collection pause of ~200 ms on a
    # loaded machine would exceed the 50 ms default, and the startup publication skipped in that
    # outage is not repeated before the next request or heartbeat.
    gws = await make_replicas(state={"timeout_ms": 2000})
    replies = await split_burst(client, gws, 25, stream=True)
    assert [r.status for r in replies] == [200] * 25
    for gw in gws:
        stats = await fleet_stats(client, gw, 25)
        assert stats["requests"]["total"] == 25
        assert stats["fleet"]["replicas_reported"] == 2
        assert stats["fleet"]["scope"] == "fleet"
    local_counts = [gw.services.stats.get_statistics()["requests"]["total"] for gw in gws]
    assert sorted(local_counts) == [12, 13]


async def test_redis_killed_mid_burst_then_restarted(
    make_replicas, client, cerebras_sim, redis_server
) -> None:
    update_options(cerebras_sim.state, {"ttft": 0.05})
    gws = await make_replicas()

    async def later_kill() -> None:
        await asyncio.sleep(0.05)
        redis_server.stop()

    killer = asyncio.create_task(later_kill())
    replies = await split_burst(client, gws, 20, stream=True)
    await killer
    more = await split_burst(client, gws, 6, stream=True)  # Redis is down throughout
    assert [r.status for r in replies + more] == [200] * 26
    assert all(r.chunks[-1]["model_used"] in ("local", "cerebras") for r in replies + more)
    async with client.get(gws[0].root + "/health") as resp:
        assert (await resp.json())["state_store"] == "degraded"
    assert all(gw.services.state.status == "degraded" for gw in gws)

    redis_server.start()
    for _ in range(100):  # the next probe after the outage reconnects
        await split_burst(client, gws, 2, stream=True)
        if all(gw.services.state.status == "ok" for gw in gws):
            break
        await asyncio.sleep(0.05)
    assert [gw.services.state.status for gw in gws] == ["ok", "ok"]
    async with client.get(gws[1].root + "/health") as resp:
        assert (await resp.json())["state_store"] == "ok"
    stats = await fleet_stats(client, gws[1], 28)
    assert stats["fleet"]["replicas_reported"] == 2  # sharing resumed


async def test_fail_closed_keeps_cerebras_out_while_redis_is_down(
    make_replicas, client, cerebras_sim, redis_server
) -> None:
    gws = await make_replicas(
        n=1,
        state={"on_unavailable": "fail_closed"},
    )
    redis_server.stop()
    replies = await split_burst(client, gws, 3, stream=True)
    assert [r.status for r in replies] == [200] * 3
    assert [r.chunks[-1]["model_used"] for r in replies] == ["local"] * 3
    assert cerebras_sim.requests == []
    assert gws[0].services.gate.refused["unavailable"] >= 1


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, from a Prometheus text exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_on_either_replica_count_the_fleet(make_replicas, client) -> None:
    gws = await make_replicas(budget={"daily_usd": 100})
    replies = await split_burst(client, gws, 9, stream=True)
    assert [r.status for r in replies] == [200] * 9
    spend = sum(gw.services.budget.periods[0].spent_usd for gw in gws)  # each replica's own
    assert spend > 0
    period = ("glm_gateway_fleet_budget_spent_dollars", (("period", "daily"),))
    for gw in gws:
        for _ in range(200):  # publications land just after the answers
            async with client.get(gw.root + "/metrics") as resp:
                assert resp.status == 200
                values = metric_values(await resp.text())
            fleet = sum(
                v for (name, _), v in values.items() if name == "glm_gateway_fleet_requests_total"
            )
            if fleet == 9 and values.get(period) == pytest.approx(spend):
                break
            await asyncio.sleep(0.02)
        assert fleet == 9
        assert values[period] == pytest.approx(spend)
        mine = sum(v for (name, _), v in values.items() if name == "glm_gateway_requests_total")
        assert mine in (4, 5)  # this replica's own counters are unchanged
        assert values[("glm_gateway_fleet_replicas_reported", ())] == 2
        by_up = values[("glm_gateway_fleet_requests_total", (("upstream", "cerebras"),))]
        assert by_up == sum(r.chunks[-1]["model_used"] == "cerebras" for r in replies)


async def test_metrics_leave_the_fleet_out_while_redis_is_down(
    make_replicas, client, redis_server
) -> None:
    gws = await make_replicas(n=1)
    redis_server.stop()
    reply = await post_stream(client, gws[0].url, chat("hi", stream=True))
    assert reply.status == 200
    async with client.get(gws[0].root + "/metrics") as resp:
        assert resp.status == 200
        values = metric_values(await resp.text())
    assert not any(name.startswith("glm_gateway_fleet_") for name, _ in values)
    assert sum(v for (name, _), v in values.items() if name == "glm_gateway_requests_total") == 1


async def test_budget_alerts_fire_once_for_the_fleet(
    make_replicas, client, redis_server, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.quota.budget")
    gws = await make_replicas(**BUDGETED)
    for _ in range(8):  # past 100 % of the fleet's budget, each replica alone below it
        replies = await split_burst(client, gws, 2, max_tokens=32)
        assert [r.status for r in replies] == [200, 200]
    own = [gw.services.budget.periods[0].spent_usd for gw in gws]
    assert max(own) < 0.2 <= sum(own), own

    def alerts() -> list[str]:
        return [r.getMessage() for r in caplog.records if "budget alert" in r.getMessage()]

    for _ in range(200):  # claims land just after the answers
        if len(alerts()) >= 3:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # a duplicate, if any, would land meanwhile
    found = alerts()
    # Once each for the fleet; two replicas' claims may be logged in either order.
    percents = sorted(int(re.search(r"reached (\d+)%", m)[1]) for m in found)
    assert percents == [50, 80, 100], found
    assert all("daily the fleet's Cerebras spend" in m for m in found)
    store = aioredis.Redis.from_url(redis_server.url)
    claims = await store.keys("glm:budget:alert:daily:*")
    await store.aclose()
    assert len(claims) == 3


async def test_a_429_seen_by_one_replica_switches_the_other_to_local(
    make_replicas, client, cerebras_sim, redis_server
) -> None:
    gws = await make_replicas(
        routing={"strategy": "adaptive_cerebras", "adaptive_cerebras": {"cool_down_duration": 60}},
    )
    first = await post_stream(client, gws[1].url, chat("warm", stream=True))
    assert first.chunks[-1]["model_used"] == "cerebras"  # B starts on Cerebras
    cerebras_sim.inject("http_429", reset_seconds=45)
    reply = await post_stream(client, gws[0].url, chat("hi", stream=True))
    assert reply.status == 200 and reply.chunks[-1]["model_used"] == "local"
    assert gws[0].services.adaptive.state == "local"
    store = aioredis.Redis.from_url(redis_server.url)
    for _ in range(200):  # A publishes its switch just after the answer
        if await store.get("glm:adaptive"):
            break
        await asyncio.sleep(0.02)
    await store.aclose()
    calls = len(cerebras_sim.requests)
    reply = await post_stream(client, gws[1].url, chat("hi again", stream=True))
    assert reply.status == 200 and reply.chunks[-1]["model_used"] == "local"
    assert "switched by another replica" in reply.chunks[-1]["routing_reason"]
    assert "answered 429" in reply.chunks[-1]["routing_reason"]
    assert gws[1].services.adaptive.state == "local"
    assert len(cerebras_sim.requests) == calls  # B did not try Cerebras
