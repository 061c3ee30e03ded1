"""`smart_speculative`: simple asks to the local model only, complex ones speculatively.

The smart_routing decision (gateway.router.choice) decides; an escalated turn goes to Cerebras
as in smart_routing, unspeculated. A simple ask falls back to Cerebras only on a local failure
before any content (as in smart_routing).
"""

from __future__ import annotations

import logging
from typing import ClassVar

from gateway.router.choice import choose_route
from gateway.serving.exchange import Exchange
from gateway.serving.relay import serve
from gateway.speculation.engine import Speculator
from gateway.strategies.base import StrategyContext
from gateway.strategies.registry import register
from gateway.strategies.smart_routing import serve_routed

log = logging.getLogger("gateway.strategy.smart_speculative")


@register
class SmartSpeculative:
    name: ClassVar[str] = "smart_speculative"
    description: ClassVar[str] = "simple asks to local, complex asks through speculative decoding"

    def __init__(self, ctx: StrategyContext) -> None:
        self.speculator = Speculator(ctx.config, ctx.router)
        self.learning = ctx.learning

    async def run(self, ex: Exchange) -> None:
        speculator = self.speculator
        choice = choose_route(
            ex.request_id, ex.body, speculator.router, self.learning, pair=speculator.pair
        )
        if choice.escalated:
            await serve_routed(ex, choice, self.name)
            return
        log.info("%s %s", ex.request_id, choice.reason)
        if choice.cloud:
            label = f"{self.name} ({choice.reason})"
            await speculator.serve(ex, drafts=1, label=label, choice=choice)
        else:
            reason = f"{self.name}: {choice.reason}"
            await serve(ex, choice.route, reason=reason, thinking=choice.thinking)
