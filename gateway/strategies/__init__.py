"""Routing strategies. Importing this package registers every built-in strategy."""

from gateway.strategies import (  # noqa: F401  (registration by import)
    adaptive,
    always,
    parallel_speculative,
    smart_routing,
    smart_speculative,
    speculative,
)
from gateway.strategies.base import Strategy, StrategyContext
from gateway.strategies.registry import (
    create_strategies,
    describe,
    known_names,
    register,
    strategy_names,
)

__all__ = [
    "Strategy",
    "StrategyContext",
    "create_strategies",
    "describe",
    "known_names",
    "register",
    "strategy_names",
]
