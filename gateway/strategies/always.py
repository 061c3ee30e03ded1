"""`always_local` and `always_cerebras`: one upstream, the other only as a fallback."""

from __future__ import annotations

from typing import ClassVar

from gateway.accounting.records import UpstreamName
from gateway.serving.exchange import Exchange
from gateway.serving.relay import serve
from gateway.strategies.base import StrategyContext
from gateway.strategies.registry import register


class _Always:
    """Serves every request along `route`; its name is the routing_reason."""

    name: ClassVar[str]
    description: ClassVar[str]
    route: ClassVar[tuple[UpstreamName, UpstreamName]]

    def __init__(self, ctx: StrategyContext) -> None:
        del ctx  # nothing to share: the route is fixed

    async def run(self, ex: Exchange) -> None:
        await serve(ex, self.route, reason=self.name)


@register
class AlwaysLocal(_Always):
    name = "always_local"
    description = "every request to the local llama.cpp server (free)"
    route = ("local", "cerebras")


@register
class AlwaysCerebras(_Always):
    name = "always_cerebras"
    description = "every request to Cerebras (best quality, highest cost)"
    route = ("cerebras", "local")
