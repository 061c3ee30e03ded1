"""`smart_routing`: simple asks to the local model, complex ones to Cerebras.

The decision reads what the user asks now (see gateway.classifier), never the size of a coding
assistant's system prompt. Either route falls back to the other upstream on a failure before the
client saw content (a Cerebras 429 included).
"""

from __future__ import annotations

import logging
from typing import ClassVar

from ..classifier import TaskClassifier
from ..exchange import Exchange
from ..records import UpstreamName
from ..relay import serve
from .base import StrategyContext
from .registry import register

log = logging.getLogger("gateway.strategy.smart_routing")


@register
class SmartRouting:
    name: ClassVar[str] = "smart_routing"
    description: ClassVar[str] = "simple asks to local, complex asks to Cerebras"

    def __init__(self, ctx: StrategyContext) -> None:
        routing = ctx.config.routing
        self.classifier = TaskClassifier(routing.complexity_keywords, routing.simple_task_threshold)

    async def run(self, ex: Exchange) -> None:
        verdict = self.classifier.classify(ex.body)
        log.info("%s %s", ex.request_id, verdict.reason)
        route: tuple[UpstreamName, ...] = (
            ("cerebras", "local") if verdict.complex else ("local", "cerebras")
        )
        await serve(ex, route, reason=verdict.reason)
