"""`smart_speculative`: simple asks to the local model only, complex ones speculatively.

The smart_routing classifier decides; a simple ask falls back to Cerebras only on a local failure
before any content (as in smart_routing).
"""

from __future__ import annotations

import logging
from typing import ClassVar

from gateway.serving.exchange import Exchange
from gateway.serving.relay import serve
from gateway.speculation.engine import Speculator
from gateway.strategies.base import StrategyContext
from gateway.strategies.escalated import serve_if_escalated
from gateway.strategies.registry import register

log = logging.getLogger("gateway.strategy.smart_speculative")


@register
class SmartSpeculative:
    name: ClassVar[str] = "smart_speculative"
    description: ClassVar[str] = "simple asks to local, complex asks through speculative decoding"

    def __init__(self, ctx: StrategyContext) -> None:
        self.speculator = Speculator(ctx.config, ctx.router)
        self.learning = ctx.learning

    async def run(self, ex: Exchange) -> None:
        if await serve_if_escalated(ex, self.learning, self.name):
            return
        speculator = self.speculator
        verdict = speculator.router.route(ex.request_id, ex.body)
        ex.route_kind = "complex" if verdict.cloud else "simple"
        log.info("%s %s", ex.request_id, verdict.reason)
        if verdict.cloud:
            await speculator.serve(ex, drafts=1, label=f"{self.name} ({verdict.reason})")
            return
        cfg = speculator.cfg
        await serve(
            ex, (cfg.draft_model, cfg.verify_model), reason=f"{self.name}: {verdict.reason}"
        )
