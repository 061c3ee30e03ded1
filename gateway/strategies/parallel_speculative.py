"""`parallel_speculative`: several local drafts (different seeds); the one agreeing most with the
others is chosen, their agreement is a local confidence signal, and Cerebras verifies only when
it falls short of `min_confidence`. All drafts failing falls back to one sequential draft.

With `parallel_enabled: false`, or a client asking for temperature 0 (identical drafts, so their
agreement means nothing), it serves like `speculative_decoding`.
"""

from __future__ import annotations

from gateway.serving.exchange import Exchange
from gateway.strategies.base import StrategyContext
from gateway.strategies.registry import register
from gateway.strategies.speculative import SpeculativeDecoding


@register
class ParallelSpeculative(SpeculativeDecoding):
    name = "parallel_speculative"
    description = (
        "several local drafts; their consensus accepts, else Cerebras verifies the best one"
    )

    def __init__(self, ctx: StrategyContext) -> None:
        super().__init__(ctx)
        cfg = ctx.config.speculative_decoding
        self.drafts = cfg.max_concurrent_drafts if cfg.parallel_enabled else 1

    def drafts_for(self, ex: Exchange) -> tuple[int, str]:
        if self.drafts > 1 and ex.body.get("temperature") == 0:
            return 1, f"{self.name} (temperature 0: one draft)"
        return self.drafts, self.name
