"""Routing strategies. Importing this package registers every built-in strategy."""

from . import always, smart_routing  # noqa: F401  (registration by import)
from .base import Strategy, StrategyContext
from .registry import create_strategies, describe, register, strategy_names

__all__ = [
    "Strategy",
    "StrategyContext",
    "create_strategies",
    "describe",
    "register",
    "strategy_names",
]
