"""`speculative_decoding`: a local draft races a Cerebras verification; the verdict commits one.

See gateway.speculation.engine for the verdict and gateway.speculation.verdict for the scorers.
"""

from __future__ import annotations

from typing import ClassVar

from gateway.serving.exchange import Exchange
from gateway.speculation.engine import Speculator
from gateway.strategies.base import StrategyContext
from gateway.strategies.registry import register


@register
class SpeculativeDecoding:
    name: ClassVar[str] = "speculative_decoding"
    description: ClassVar[str] = (
        "local draft verified by Cerebras; one stream committed by the verdict"
    )

    def __init__(self, ctx: StrategyContext) -> None:
        self.speculator = Speculator(ctx.config, ctx.router)

    def drafts_for(self, ex: Exchange) -> tuple[int, str]:
        """How many drafts `ex` gets, and the label its routing_reason starts with."""
        return 1, self.name

    async def run(self, ex: Exchange) -> None:
        drafts, label = self.drafts_for(ex)
        await self.speculator.serve(ex, drafts=drafts, label=label)
