"""The strategy protocol: one small class per routing strategy, found by name in a registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from gateway.accounting.records import UpstreamName
from gateway.config import GatewayConfig
from gateway.quota.admission import UpstreamGate
from gateway.router import Router
from gateway.router.learning import Learning
from gateway.serving.exchange import Exchange
from gateway.upstreams import Upstream

if TYPE_CHECKING:  # the adaptive strategy's module imports this one
    from gateway.strategies.adaptive import AdaptiveSwitch


@dataclass(frozen=True, slots=True)
class StrategyContext:
    """What a strategy may use, shared by every request of one app."""

    config: GatewayConfig
    upstreams: Mapping[UpstreamName, Upstream]
    gate: UpstreamGate
    # adaptive_cerebras' switch, one per app (it listens to the app's gate for 429s).
    adaptive: AdaptiveSwitch
    # The app's router (gateway.router), shared with the HTTP handlers; None: each strategy
    # that needs one makes a private, non-persistent one.
    router: Router | None = None
    # Escalation and outcome labels (gateway.router.learning); None: no escalation.
    learning: Learning | None = None


class Strategy(Protocol):
    """Serves one request: decides which upstream(s) answer and streams into `ex.sink`.

    `run` returns once the response is finished; it raises a GatewayError when no answer could be
    given (before any content was sent, the client then gets an HTTP error).
    """

    name: ClassVar[str]
    description: ClassVar[str]

    async def run(self, ex: Exchange) -> None: ...
