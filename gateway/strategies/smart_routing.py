"""`smart_routing`: simple asks to the local model, complex ones to Cerebras.

The decision reads what the user asks now (see gateway.classifier), never the size of a coding
assistant's system prompt. It goes into the response metadata (`routing_reason`) and the log.
Either route falls back to the other upstream on a failure before the client saw content; a
complex ask goes to Cerebras only if the admission gate lets it (budget, 429 cool-down, predicted
rate-limit headroom), else it is served locally with the gate's reason appended.
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
        route: tuple[UpstreamName, ...] = (
            ("cerebras", "local") if verdict.complex else ("local", "cerebras")
        )
        reason = f"smart_routing: {verdict.reason} -> {route[0]}"
        log.info("%s %s", ex.request_id, reason)
        await serve(ex, route, reason=reason)
