"""`always_local` and `always_cerebras`: one upstream, the other only as a fallback."""

from __future__ import annotations

from typing import ClassVar

from gateway.serving.exchange import Exchange
from gateway.serving.relay import serve
from gateway.strategies.base import StrategyContext
from gateway.strategies.registry import register


@register
class AlwaysLocal:
    name: ClassVar[str] = "always_local"
    description: ClassVar[str] = "every request to the local llama.cpp server (free)"

    def __init__(self, ctx: StrategyContext) -> None:
        self.ctx = ctx

    async def run(self, ex: Exchange) -> None:
        await serve(ex, ("local", "cerebras"), reason="always_local")


@register
class AlwaysCerebras:
    name: ClassVar[str] = "always_cerebras"
    description: ClassVar[str] = "every request to Cerebras (best quality, highest cost)"

    def __init__(self, ctx: StrategyContext) -> None:
        self.ctx = ctx

    async def run(self, ex: Exchange) -> None:
        await serve(ex, ("cerebras", "local"), reason="always_cerebras")
