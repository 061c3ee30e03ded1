"""`smart_routing`: simple asks to the local model, complex ones to Cerebras.

The decision reads what the user asks now (see gateway.router.classifier), never the size of a
coding assistant's system prompt; `routing.router` picks the heuristic classifier or the learned
scorer, and an escalated conversation turn goes to Cerebras unclassified (gateway.router.choice).
It goes into the response metadata (`routing_reason`) and the request's log line (at DEBUG
also a line of its own when the decision is made). Either route falls back to the
other upstream on a failure before the client saw content; a complex ask goes to Cerebras only if
the admission gate lets it (budget, 429 cool-down, predicted rate-limit headroom), else it is
served locally with the gate's reason appended.

With `routing.judge_draft: true`, an ask routed local is not streamed at once: the speculation
engine drafts it locally for `speculative_decoding.max_draft_tokens` with `verify_start:
after_draft` and `scorer: learned`, speculation enabled and no cost skip (whatever those keys
say for the speculative strategies).
The router's draft model accepts the draft, which then streams on, or escalates it: the draft
is withheld and Cerebras answers. `routing.target_cloud_share` then sets the share of drafts
escalated; the asks themselves route by the router's own rule. An ask routed to Cerebras, and
an escalated conversation turn, go there directly.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar

from gateway.config import GatewayConfig
from gateway.router import Router
from gateway.router.choice import RouteChoice, choose_route
from gateway.serving.exchange import Exchange
from gateway.serving.relay import serve
from gateway.speculation.engine import Speculator
from gateway.strategies.base import StrategyContext
from gateway.strategies.registry import register

log = logging.getLogger("gateway.strategy.smart_routing")


async def serve_routed(ex: Exchange, choice: RouteChoice, strategy: str) -> None:
    """Serve `ex` along `choice.route`; routing_reason "<strategy>: <reason> -> <upstream>".

    Through `serve`, so the budget and the rate-limit gate still decide: the fallback serves the
    request when the chosen upstream may not. The calls think as `choice.thinking` says, unless
    the client stated its own wish.
    """
    reason = f"{strategy}: {choice.reason} -> {choice.route[0]}"
    # DEBUG: the request's own INFO line carries the same reason (`reason=`), and a second
    # line per request at the default strategy and level costs about 5 % of its CPU.
    log.debug("%s %s", ex.request_id, reason)
    await serve(ex, choice.route, reason=reason, thinking=choice.thinking)


@register
class SmartRouting:
    name: ClassVar[str] = "smart_routing"
    description: ClassVar[str] = "simple asks to local, complex asks to Cerebras"

    def __init__(self, ctx: StrategyContext) -> None:
        # `routing.router` decides: the heuristic classifier or the learned scorer.
        self.router = ctx.router if ctx.router is not None else Router(ctx.config)
        self.learning = ctx.learning
        judging = ctx.config.routing.judge_draft
        self.judge = Speculator(judge_config(ctx.config), self.router) if judging else None

    async def run(self, ex: Exchange) -> None:
        choice = choose_route(ex.request_id, ex.body, self.router, self.learning)
        if self.judge is None or choice.cloud or choice.escalated:
            await serve_routed(ex, choice, self.name)
            return
        label = f"{self.name} (judged draft; {choice.reason})"
        log.info("%s %s", ex.request_id, label)
        await self.judge.serve(ex, drafts=1, label=label, choice=choice)


def judge_config(config: GatewayConfig) -> GatewayConfig:
    """`config` with the speculation settings of `judge_draft`: a local draft judged by the
    learned draft scorer, Cerebras started only when it escalates.

    Speculation is on and its cost skip off whatever those keys say: with `after_draft` Cerebras
    is paid only on escalation, so a long prompt (every agent turn) has no cost to skip."""
    speculative = dataclasses.replace(
        config.speculative_decoding,
        enabled=True,
        verify_start="after_draft",
        scorer="learned",
        cost_skip_ratio=1.0,
    )
    return dataclasses.replace(config, speculative_decoding=speculative)
