"""Rate limits through the gateway: 429 handling in every strategy, the client's 429, the
always_cerebras contrast, the completion cap as Cerebras sees it, and the `/stats` block."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import chat, post_stream, use_clock

from gateway.dev.sim import SimServer
from gateway.dev.sim.server import update_options

COMPLEX_ASK = "Refactor the parser in src/parser.py"


class FakeClock:
    def __init__(self, now: float = 50_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def gateway_with_clock(make_gateway: Any, strategy: str, sim: SimServer, **sections: Any):
    clock = FakeClock()
    sim.quota.clock = clock
    gw = await make_gateway(strategy, **sections)
    use_clock(gw.services.gate, clock)
    return gw, clock


@pytest.mark.parametrize("strategy", ["always_cerebras", "smart_routing", "adaptive_cerebras"])
async def test_429_falls_back_and_cools_down_in_every_strategy(
    make_gateway, client, local_sim, cerebras_sim, strategy
) -> None:
    gw, clock = await gateway_with_clock(
        make_gateway,
        strategy,
        cerebras_sim,
        routing={"adaptive_cerebras": {"cool_down_duration": 5}},
    )
    cerebras_sim.inject("http_429", reset_seconds=20)
    reply = await post_stream(client, gw.url, chat(COMPLEX_ASK, stream=True))
    assert reply.status == 200, reply.raw
    assert reply.chunks[-1]["model_used"] == "local"
    assert len(cerebras_sim.requests) == 1

    clock.now += 19  # still before the reset: Cerebras gets no call at all
    reply = await post_stream(client, gw.url, chat(COMPLEX_ASK, stream=True))
    assert reply.chunks[-1]["model_used"] == "local"
    assert len(cerebras_sim.requests) == 1

    clock.now += 1
    reply = await post_stream(client, gw.url, chat(COMPLEX_ASK, stream=True))
    assert reply.chunks[-1]["model_used"] == "cerebras"
    assert len(cerebras_sim.requests) == 2
    stats = gw.services.stats.get_statistics()
    assert stats["rate_limits"]["total_hits"] == 1


async def test_client_429_only_when_no_upstream_can_serve(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    gw, clock = await gateway_with_clock(
        make_gateway, "adaptive_cerebras", cerebras_sim, models={"local": {"enabled": False}}
    )
    cerebras_sim.inject("http_429", reset_seconds=20)
    for expected_wait in (20, 15):
        async with client.post(gw.url + "/chat/completions", json=chat(stream=True)) as resp:
            assert resp.status == 429
            body = await resp.json()
            assert body["error"]["type"] == "rate_limit_error"
            assert resp.headers["retry-after"] == str(expected_wait)
            assert int(resp.headers["retry-after-ms"]) == expected_wait * 1000
            assert resp.headers["x-should-retry"] == "true"
        clock.now += 5
    assert len(cerebras_sim.requests) == 1, "the second 429 came from the cool-down"


async def test_client_429_for_an_exhausted_day_says_do_not_retry(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    gw, _ = await gateway_with_clock(
        make_gateway, "always_cerebras", cerebras_sim, models={"local": {"enabled": False}}
    )
    cerebras_sim.inject("http_429", reset_seconds=7200, kind="requests")
    async with client.post(gw.url + "/chat/completions", json=chat(stream=True)) as resp:
        assert resp.status == 429
        assert resp.headers["retry-after"] == "7200"
        assert resp.headers["x-should-retry"] == "false"


async def burst(client, url: str, n: int) -> list[Any]:
    return list(
        await asyncio.gather(
            *(post_stream(client, url, chat(f"q{i}", stream=True)) for i in range(n))
        )
    )


def small_quota(sim: SimServer) -> None:
    update_options(sim.state, {"quota_requests_per_minute": 5, "quota_tokens_per_minute": 30_000})


async def test_always_cerebras_burst_shows_the_429s_the_watcher_avoids(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    """always_cerebras skips predictive admission (its promise is Cerebras for every request):
    without fallback it fails on the limit; the same burst under adaptive_cerebras gives none."""
    small_quota(cerebras_sim)
    gw, _ = await gateway_with_clock(
        make_gateway, "always_cerebras", cerebras_sim, routing={"fallback": {"to_local": False}}
    )
    replies = await burst(client, gw.url, 20)
    ok = [r for r in replies if r.status == 200]
    limited = [r for r in replies if r.status == 429]
    assert len(ok) + len(limited) == 20
    # 30k tokens per minute at 8192 + prompt each, refunded as answers finish; 5 requests/min.
    assert 1 <= len(ok) <= 5
    assert len(limited) >= 15
    # The headers do not report the requests-per-minute window: the gate waits a cool-down
    # (60 s) and every client 429 says so, whether Cerebras or the cool-down refused it.
    assert {r.headers["retry-after"] for r in limited} == {"60"}
    assert {r.headers["x-should-retry"] for r in limited} == {"false"}
    assert 429 in [r.status for r in cerebras_sim.requests]
    assert local_sim.requests == []


async def test_always_cerebras_with_fallback_is_the_reactive_baseline(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    small_quota(cerebras_sim)
    gw, _ = await gateway_with_clock(make_gateway, "always_cerebras", cerebras_sim)
    replies = await burst(client, gw.url, 20)
    assert [r.status for r in replies] == [200] * 20
    upstream_429s = [r for r in cerebras_sim.requests if r.status == 429]
    assert upstream_429s, "a reactive fallback only learns of the limit from a 429"
    served = [r.chunks[-1]["model_used"] for r in replies]
    assert served.count("local") == 20 - served.count("cerebras")


async def test_cline_request_without_max_tokens_reserves_the_cap_not_40k(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    gw = await make_gateway("always_cerebras")
    tools = [
        {"type": "function", "function": {"name": f"t{i}", "parameters": {"type": "object"}}}
        for i in range(25)
    ]
    body = chat("hi", stream=True, tools=tools, stream_options={"include_usage": True})
    for extra, expected in (({}, 8192), ({"max_tokens": 100_000}, 8192), ({"max_tokens": 64}, 64)):
        reply = await post_stream(client, gw.url, {**body, **extra})
        assert reply.status == 200
        sent = cerebras_sim.requests[-1]
        assert sent.body["max_completion_tokens"] == expected
        assert "max_tokens" not in sent.body
        assert sent.reserved_tokens == sent.prompt_tokens + expected


async def test_stats_rate_limits_block(make_gateway, client, local_sim, cerebras_sim) -> None:
    update_options(cerebras_sim.state, {"quota_tokens_per_minute": 100_000})
    gw, _ = await gateway_with_clock(
        make_gateway,
        "smart_routing",
        cerebras_sim,
        rate_limits={"cerebras": {"requests_per_minute": 50}},
    )
    await post_stream(client, gw.url, chat(COMPLEX_ASK, stream=True))
    async with client.get(gw.root + "/stats") as resp:
        stats = await resp.json()
    block = stats["rate_limits"]
    assert block["total_hits"] == 0
    for key in (
        "hits",
        "fallbacks",
        "fallbacks_by_reason",
        "headroom",
        "state",
        "cool_down_remaining_s",
        "cooling_down_s",
        "in_flight",
        "plan_headroom",
        "switches",
    ):
        assert key in block, key
    assert block["headroom"]["cerebras"]["tokens-minute"] == pytest.approx(
        (100_000 - cerebras_sim.requests[-1].reserved_tokens) / 100_000, abs=1e-3
    )
    assert block["plan_headroom"] == {"cerebras": {"requests-minute": 0.98}}
    assert block["in_flight"] == {}
    assert block["state"] == "cerebras"
    assert stats["budget"]["enabled"] is False
