"""adaptive_cerebras through the gateway, against a simulated Cerebras with a small quota.

The simulator's quota clock and the gateway's gate share one fake clock, so windows reset and
cool-downs end when a test moves the clock, never by sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from support import chat, post_stream, use_clock

from gateway.dev.sim import SimServer
from gateway.dev.sim.server import update_options

BURST = 50


# Cerebras' free tier: 5 requests and 30k tokens per minute.
PLAN = {"requests_per_minute": 5, "tokens_per_minute": 30_000}


class FakeClock:
    def __init__(self, now: float = 10_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def small_quota(sim: SimServer, clock: FakeClock) -> None:
    update_options(
        sim.state,
        {
            "quota_requests_per_minute": PLAN["requests_per_minute"],
            "quota_tokens_per_minute": 30_000,
        },
    )
    sim.quota.clock = clock


async def adaptive_gateway(make_gateway: Any, clock: FakeClock, **sections: Any) -> Any:
    sections.setdefault("rate_limits", {"cerebras": PLAN})
    gw = await make_gateway("adaptive_cerebras", **sections)
    use_clock(gw.services.gate, clock)
    return gw


async def burst(client: aiohttp.ClientSession, url: str, n: int = BURST) -> list[Any]:
    return list(
        await asyncio.gather(
            *(post_stream(client, url, chat(f"q{i}", stream=True)) for i in range(n))
        )
    )


def served_by(replies: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reply in replies:
        model = reply.chunks[-1]["model_used"]
        counts[model] = counts.get(model, 0) + 1
    return counts


def statuses(sim: SimServer) -> list[int]:
    return [r.status for r in sim.requests]


async def test_burst_gives_no_429_and_returns_to_cerebras_after_reset(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    clock = FakeClock()
    small_quota(cerebras_sim, clock)
    gw = await adaptive_gateway(make_gateway, clock)

    replies = await burst(client, gw.url)

    assert [r.status for r in replies] == [200] * BURST
    assert all(r.data[-1] == "[DONE]" and r.text for r in replies)
    counts = served_by(replies)
    # Cerebras served every request it accepted and refused none.
    assert 429 not in statuses(cerebras_sim)
    assert counts["cerebras"] == len(cerebras_sim.requests)
    # 30k tokens/min at 8192 + prompt per request, keeping 20 %: two fit the first minute (more
    # only if refunds of finished answers showed up in later headers), and never a 5th request.
    assert 2 <= counts["cerebras"] <= 4
    assert counts["local"] == BURST - counts["cerebras"]
    rate_limits = (await (await client.get(gw.root + "/stats")).json())["rate_limits"]
    assert rate_limits["state"] == "local"
    assert rate_limits["total_hits"] == 0
    assert rate_limits["hits"] == {}
    assert rate_limits["fallbacks"] == counts["local"]
    assert rate_limits["fallbacks_by_reason"]["adaptive_local"] == counts["local"]
    assert rate_limits["cool_down_remaining_s"] == 60.0
    assert "tokens-minute" in rate_limits["headroom"]["cerebras"]
    assert rate_limits["switches"] == 1
    assert rate_limits["recent_switches"][-1]["to"] == "local"
    assert "rate limit" in rate_limits["recent_switches"][-1]["reason"]
    local_reasons = {
        r.chunks[-1]["routing_reason"] for r in replies if r.chunks[-1]["model_used"] == "local"
    }
    assert all(reason.startswith("adaptive_cerebras: ") for reason in local_reasons)

    clock.now += 61.0  # past the cool-down and past every window's reset
    after = await post_stream(client, gw.url, chat("after the reset", stream=True))
    assert after.status == 200
    assert after.chunks[-1]["model_used"] == "cerebras"
    assert "back to Cerebras" in after.chunks[-1]["routing_reason"]
    rate_limits = (await (await client.get(gw.root + "/stats")).json())["rate_limits"]
    assert rate_limits["state"] == "cerebras"
    assert rate_limits["switches"] == 2


async def test_stays_local_during_cool_down_even_after_the_reset(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    clock = FakeClock()
    small_quota(cerebras_sim, clock)
    gw = await adaptive_gateway(
        make_gateway, clock, routing={"adaptive_cerebras": {"cool_down_duration": 120}}
    )
    await burst(client, gw.url, 10)
    assert gw.services.adaptive.state == "local"
    sent = len(cerebras_sim.requests)

    clock.now += 61.0  # the windows reset, the cool-down (120 s) is not over
    reply = await post_stream(client, gw.url, chat(stream=True))
    assert reply.chunks[-1]["model_used"] == "local"
    assert "cool-down" in reply.chunks[-1]["routing_reason"]
    assert len(cerebras_sim.requests) == sent

    clock.now += 60.0
    reply = await post_stream(client, gw.url, chat(stream=True))
    assert reply.chunks[-1]["model_used"] == "cerebras"


async def test_warm_burst_without_plan_uses_the_headers(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    """No plan configured: one request teaches the limits, then a burst does not overshoot."""
    clock = FakeClock()
    update_options(cerebras_sim.state, {"quota_tokens_per_minute": 100_000})
    cerebras_sim.quota.clock = clock
    gw = await adaptive_gateway(make_gateway, clock, rate_limits={})
    first = await post_stream(client, gw.url, chat("warm up", stream=True))
    assert first.chunks[-1]["model_used"] == "cerebras"
    assert gw.services.upstreams["cerebras"].watcher.windows["tokens-minute"].limit == 100_000

    replies = await burst(client, gw.url, 20)
    assert all(r.status == 200 for r in replies)
    assert 429 not in statuses(cerebras_sim)
    # 100k tokens, 20 % kept, 8192 + prompt per request: at most 9 requests in the window.
    assert 2 <= len(cerebras_sim.requests) <= 9
    assert gw.services.gate.pending("cerebras").requests == 0


async def test_429_switches_to_local_until_its_reset(
    make_gateway, client, local_sim, cerebras_sim, caplog
) -> None:
    clock = FakeClock()
    cerebras_sim.quota.clock = clock
    gw = await adaptive_gateway(
        make_gateway,
        clock,
        rate_limits={},
        routing={"adaptive_cerebras": {"cool_down_duration": 10}},
    )
    cerebras_sim.inject("http_429", reset_seconds=45)
    with caplog.at_level(logging.INFO, logger="gateway"):
        reply = await post_stream(client, gw.url, chat(stream=True))
    assert reply.status == 200
    assert reply.chunks[-1]["model_used"] == "local"
    assert "fallback to local" in reply.chunks[-1]["routing_reason"]
    assert any("answered 429" in r.getMessage() for r in caplog.records)
    assert any("switch to local" in r.getMessage() for r in caplog.records)
    stats = (await (await client.get(gw.root + "/stats")).json())["rate_limits"]
    assert stats["total_hits"] == 1 and stats["hits"] == {"cerebras": 1}
    assert stats["state"] == "local"
    assert stats["cooling_down_s"]["cerebras"] == 45.0

    clock.now += 11  # cool-down over, the 429's reset (45 s) not yet: no new data either
    reply = await post_stream(client, gw.url, chat(stream=True))
    assert reply.chunks[-1]["model_used"] == "local"
    assert "waiting for fresh rate-limit headers" in reply.chunks[-1]["routing_reason"]
    assert len(cerebras_sim.requests) == 1

    clock.now += 35
    reply = await post_stream(client, gw.url, chat(stream=True))
    assert reply.chunks[-1]["model_used"] == "cerebras"
    assert len(cerebras_sim.requests) == 2


async def test_local_failure_in_local_state_may_still_use_cerebras(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    clock = FakeClock()
    cerebras_sim.quota.clock = clock
    gw = await adaptive_gateway(make_gateway, clock, rate_limits={})
    cerebras_sim.inject("http_429", reset_seconds=5)
    await post_stream(client, gw.url, chat(stream=True))
    clock.now += 6  # Cerebras' reset passed, the adaptive cool-down (60 s) has not
    local_sim.inject("http_500")
    reply = await post_stream(client, gw.url, chat(stream=True))
    assert reply.status == 200
    assert reply.chunks[-1]["model_used"] == "cerebras"
