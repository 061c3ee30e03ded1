"""`speculative_decoding`: a local draft races a Cerebras verification; the verdict commits one.

See gateway.speculation.engine for the verdict and gateway.verdict for the scorers.
"""

from __future__ import annotations

from typing import ClassVar

from ..exchange import Exchange
from ..speculation import Speculator
from .base import StrategyContext
from .registry import register


@register
class SpeculativeDecoding:
    name: ClassVar[str] = "speculative_decoding"
    description: ClassVar[str] = (
        "local draft verified by Cerebras; one stream committed by the verdict"
    )

    def __init__(self, ctx: StrategyContext) -> None:
        self.speculator = Speculator(ctx.config, ctx.router)

    async def run(self, ex: Exchange) -> None:
        await self.speculator.serve(ex, drafts=1, label=self.name)
