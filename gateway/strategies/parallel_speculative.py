"""`parallel_speculative`: several local drafts (different seeds); the one agreeing most with the
others is chosen, their agreement is a local confidence signal, and Cerebras verifies only when
it falls short of `min_confidence`. All drafts failing falls back to one sequential draft.

With `parallel_enabled: false`, or a client asking for temperature 0 (identical drafts, so their
agreement means nothing), it serves like `speculative_decoding`.
"""

from __future__ import annotations

from typing import ClassVar

from gateway.serving.exchange import Exchange
from gateway.speculation.engine import Speculator
from gateway.strategies.base import StrategyContext
from gateway.strategies.registry import register


@register
class ParallelSpeculative:
    name: ClassVar[str] = "parallel_speculative"
    description: ClassVar[str] = (
        "several local drafts; their consensus accepts, else Cerebras verifies the best one"
    )

    def __init__(self, ctx: StrategyContext) -> None:
        self.speculator = Speculator(ctx.config, ctx.router)
        cfg = ctx.config.speculative_decoding
        self.drafts = cfg.max_concurrent_drafts if cfg.parallel_enabled else 1

    async def run(self, ex: Exchange) -> None:
        drafts, label = self.drafts, self.name
        if drafts > 1 and ex.body.get("temperature") == 0:
            drafts, label = 1, f"{self.name} (temperature 0: one draft)"
        await self.speculator.serve(ex, drafts=drafts, label=label)
