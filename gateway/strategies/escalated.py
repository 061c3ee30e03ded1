"""Serving a turn of a conversation whose local answer just failed (gateway.router.escalation).

Shared by the strategies that choose between local and Cerebras by the ask (smart_routing,
smart_speculative): an escalated turn is neither classified nor speculated.
"""

from __future__ import annotations

import logging

from gateway.router.learning import Learning
from gateway.serving.exchange import Exchange
from gateway.serving.relay import serve

log = logging.getLogger("gateway.strategy.escalated")


async def serve_if_escalated(ex: Exchange, learning: Learning | None, strategy: str) -> bool:
    """Serve `ex` from Cerebras when its conversation is escalated; False when it is not.

    Through `serve`, so the budget and the rate-limit gate still decide: local serves the turn
    when Cerebras may not.
    """
    escalated = learning.tracker.escalation(ex.request_id) if learning is not None else None
    if escalated is None:
        return False
    ex.route_kind = "complex"
    reason = f"{strategy}: {escalated} -> cerebras"
    log.info("%s %s", ex.request_id, reason)
    await serve(ex, ("cerebras", "local"), reason=reason)
    return True
