"""`adaptive_cerebras`: Cerebras while its rate limits leave headroom, local while they do not.

The state machine lives in gateway.ratelimit.AdaptiveSwitch (one per app, shown in `/stats`
`rate_limits`); this strategy asks it where each request goes first and keeps the other upstream
as the fallback, so a refusal or a 429 that arrives anyway is still served transparently.
"""

from __future__ import annotations

from typing import ClassVar

from gateway.accounting.records import UpstreamName
from gateway.ratelimit import AdaptiveSwitch, RateLimitGate
from gateway.serving.exchange import Exchange
from gateway.serving.relay import serve
from gateway.strategies.base import StrategyContext
from gateway.strategies.registry import register


@register
class AdaptiveCerebras:
    name: ClassVar[str] = "adaptive_cerebras"
    description: ClassVar[str] = (
        "Cerebras while its rate-limit headers show headroom, local during a cool-down"
    )

    def __init__(self, ctx: StrategyContext) -> None:
        gate = ctx.gate
        if not isinstance(gate, RateLimitGate):
            # The app always passes its RateLimitGate; a context built with another gate (unit
            # tests of other parts) still gets a working switch over the same upstreams.
            gate = RateLimitGate(ctx.config, ctx.upstreams)
        self.switch: AdaptiveSwitch = gate.adaptive

    async def run(self, ex: Exchange) -> None:
        if self.switch.shared:  # another replica may have switched meanwhile
            await self.switch.pull()
        first, reason = self.switch.decide(ex.body)
        route: tuple[UpstreamName, ...] = (
            ("cerebras", "local") if first == "cerebras" else ("local", "cerebras")
        )
        await serve(ex, route, reason=reason)
