"""Classify, then route: the one place a request's ask picks its upstream.

Used by every strategy that chooses between local and Cerebras by the ask (smart_routing,
smart_speculative) and by the speculation engine when it does not speculate. An escalated turn of
a conversation whose local answer just failed (gateway.router.escalation) goes to Cerebras
without being classified; any other ask is routed by `Router.route` (`routing.router`: the
heuristic classifier or the learned scorer, with `routing.target_cloud_share`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.accounting.records import UpstreamName
from gateway.router.learning import Learning
from gateway.router.router import Router
from gateway.serving.exchange import Exchange

Route = tuple[UpstreamName, UpstreamName]
ESCALATED_ROUTE: Route = ("cerebras", "local")


@dataclass(frozen=True, slots=True)
class RouteChoice:
    """Where one request goes. `route`: the chosen upstream first, the fallback second.

    `reason` is the router's (e.g. "complex: keyword 'debug'") or the escalation's
    ("escalated: the local answer at turn 1 ..."); callers put it into `routing_reason`.
    """

    cloud: bool
    reason: str
    route: Route
    escalated: bool = False

    @property
    def kind(self) -> Literal["simple", "complex"]:
        """The route kind that selects `routing.thinking`."""
        return "complex" if self.cloud else "simple"


def choose_route(
    ex: Exchange,
    router: Router,
    learning: Learning | None = None,
    *,
    pair: Route = ("local", "cerebras"),
) -> RouteChoice:
    """Decide `ex`'s upstream once and set `ex.route_kind` from it.

    `pair` is (the upstream for a simple ask, the one for a complex ask); an escalated turn
    always goes to Cerebras first. Consumes the turn's escalation and records the decision in
    the router's window (`/stats` router block), so call it once per request.
    """
    escalated = learning.tracker.escalation(ex.request_id) if learning is not None else None
    if escalated is not None:
        choice = RouteChoice(True, escalated, ESCALATED_ROUTE, escalated=True)
    else:
        decision = router.route(ex.request_id, ex.body)
        simple, complex_ = pair
        route = (complex_, simple) if decision.cloud else pair
        choice = RouteChoice(decision.cloud, decision.reason, route)
    ex.route_kind = choice.kind
    return choice
