"""The route choice's thinking mode reaches the upstream calls of the strategies that classify,
against in-process fake upstreams (the wire parameters themselves: tests/integration/
test_thinking.py)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.accounting.records import RequestRecord
from gateway.config import parse_config
from gateway.quota.gate import RateLimitGate
from gateway.serving.exchange import Exchange
from gateway.strategies.adaptive import AdaptiveSwitch
from gateway.strategies.base import StrategyContext
from gateway.strategies.smart_routing import SmartRouting
from gateway.strategies.smart_speculative import SmartSpeculative
from gateway.upstreams.fake import FakeUpstream, Reply, delta, finish
from gateway.wire.sinks import CollectSink

SIMPLE, COMPLEX = "hello", "please debug this"


def answered(text: str) -> Reply:
    return Reply(batches=[[delta(text)], [finish()]])


def context(**sections: Any) -> tuple[StrategyContext, FakeUpstream, FakeUpstream]:
    config = parse_config({"models": {"cerebras": {"api_key": "k"}}, **sections}, env={})
    local, cerebras = FakeUpstream("local", answered("a")), FakeUpstream("cerebras", answered("a"))
    upstreams = {"local": local, "cerebras": cerebras}
    gate = RateLimitGate(config, upstreams)  # type: ignore[arg-type]
    adaptive = AdaptiveSwitch(gate, config.routing.adaptive_cerebras)
    return StrategyContext(config, upstreams, gate, adaptive), local, cerebras  # type: ignore[arg-type]


def exchange(ctx: StrategyContext, ask: str, client: str | None = None) -> Exchange:
    async def recorder(_: RequestRecord) -> None:
        return None

    return Exchange(
        request_id="r1",
        body={"model": "m", "messages": [{"role": "user", "content": ask}]},
        stream=False,
        include_usage=False,
        sink=CollectSink(response_id="c", headers={}),
        record=RequestRecord(request_id="r1", started_at=0.0, strategy="t", stream=False),
        upstreams=ctx.upstreams,
        config=ctx.config,
        recorder=recorder,
        gate=ctx.gate,
        client_thinking=client,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("strategy", [SmartRouting, SmartSpeculative])
@pytest.mark.parametrize(
    ("ask", "client", "called", "thinking"),
    [
        (SIMPLE, None, "local", "off"),
        (COMPLEX, None, "cerebras", "default"),
        (SIMPLE, "default", "local", "default"),  # the client's own wish wins
    ],
)
async def test_the_choice_thinking_mode_reaches_the_call(
    strategy: Any, ask: str, client: str | None, called: str, thinking: str
) -> None:
    # Speculation off: a complex ask of smart_speculative is then routed like smart_routing's.
    ctx, local, cerebras = context(speculative_decoding={"enabled": False})
    ex = exchange(ctx, ask, client)
    await strategy(ctx).run(ex)
    assert ex.record.model_used == called
    upstream = local if called == "local" else cerebras
    assert upstream.thinking == [thinking]


async def test_the_speculative_lanes_think_as_the_complex_route() -> None:
    ctx, local, cerebras = context(
        routing={"thinking": {"simple": "default", "complex": "off"}},
        speculative_decoding={"verify_start": "concurrent", "cost_skip_ratio": 1.0},
    )
    ex = exchange(ctx, COMPLEX)
    await SmartSpeculative(ctx).run(ex)
    assert (local.roles, cerebras.roles) == (["draft"], ["verify"])
    assert (local.thinking, cerebras.thinking) == (["off"], ["off"])
