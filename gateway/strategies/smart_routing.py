"""`smart_routing`: simple asks to the local model, complex ones to Cerebras.

The decision reads what the user asks now (see gateway.router.classifier), never the size of a
coding assistant's system prompt; `routing.router` picks the heuristic classifier or the learned
scorer, and an escalated conversation turn goes to Cerebras unclassified (gateway.router.choice).
It goes into the response metadata (`routing_reason`) and the log. Either route falls back to the
other upstream on a failure before the client saw content; a complex ask goes to Cerebras only if
the admission gate lets it (budget, 429 cool-down, predicted rate-limit headroom), else it is
served locally with the gate's reason appended.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from gateway.router import Router
from gateway.router.choice import RouteChoice, choose_route
from gateway.serving.exchange import Exchange
from gateway.serving.relay import serve
from gateway.strategies.base import StrategyContext
from gateway.strategies.registry import register

log = logging.getLogger("gateway.strategy.smart_routing")


async def serve_routed(ex: Exchange, choice: RouteChoice, strategy: str) -> None:
    """Serve `ex` along `choice.route`; routing_reason "<strategy>: <reason> -> <upstream>".

    Through `serve`, so the budget and the rate-limit gate still decide: the fallback serves the
    request when the chosen upstream may not.
    """
    reason = f"{strategy}: {choice.reason} -> {choice.route[0]}"
    log.info("%s %s", ex.request_id, reason)
    await serve(ex, choice.route, reason=reason)


@register
class SmartRouting:
    name: ClassVar[str] = "smart_routing"
    description: ClassVar[str] = "simple asks to local, complex asks to Cerebras"

    def __init__(self, ctx: StrategyContext) -> None:
        # `routing.router` decides: the heuristic classifier or the learned scorer.
        self.router = ctx.router if ctx.router is not None else Router(ctx.config)
        self.learning = ctx.learning

    async def run(self, ex: Exchange) -> None:
        choice = choose_route(ex, self.router, self.learning)
        await serve_routed(ex, choice, self.name)
