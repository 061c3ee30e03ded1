"""Classify, then route: the one place a request's ask picks its upstream.

Used by every strategy that chooses between local and Cerebras by the ask (smart_routing,
smart_speculative) and by the speculation engine when it does not speculate. An escalated turn of
a conversation whose local answer just failed (gateway.router.escalation) goes to Cerebras
without being classified; any other ask is routed by `Router.route` (`routing.router`: the
heuristic classifier or the learned scorer, with `routing.target_cloud_share`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.accounting.records import UpstreamName
from gateway.config import ThinkingMode
from gateway.router.learning import Learning
from gateway.router.router import Router

Route = tuple[UpstreamName, UpstreamName]
ESCALATED_ROUTE: Route = ("cerebras", "local")


@dataclass(frozen=True, slots=True)
class RouteChoice:
    """Where one request goes. `route`: the chosen upstream first, the fallback second.

    `reason` is the router's (e.g. "complex: keyword 'debug'") or the escalation's
    ("escalated: the local answer at turn 1 ..."); callers put it into `routing_reason`.
    `thinking` is `routing.thinking`'s mode for the ask's kind (`complex` when it goes to the
    cloud, else `simple`); the strategy hands it to the relay, where a client's own wish wins.
    """

    cloud: bool
    reason: str
    route: Route
    thinking: ThinkingMode
    escalated: bool = False


def choose_route(
    request_id: str,
    body: Mapping[str, Any],
    router: Router,
    learning: Learning | None = None,
    *,
    pair: Route = ("local", "cerebras"),
) -> RouteChoice:
    """Decide the upstream of request `request_id` asking `body`, once.

    `pair` is (the upstream for a simple ask, the one for a complex ask); an escalated turn
    always goes to Cerebras first. Consumes the turn's escalation and records the decision in
    the router's window (`/stats` router block), so call it once per request.
    """
    modes = router.thinking
    escalated = learning.tracker.escalation(request_id) if learning is not None else None
    if escalated is not None:
        return RouteChoice(True, escalated, ESCALATED_ROUTE, modes.complex, escalated=True)
    decision = router.route(request_id, body)
    simple, complex_ = pair
    route = (complex_, simple) if decision.cloud else pair
    thinking = modes.complex if decision.cloud else modes.simple
    return RouteChoice(decision.cloud, decision.reason, route, thinking)
