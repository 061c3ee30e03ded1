"""Routing strategies. Importing this package registers every built-in strategy."""

from . import (  # noqa: F401  (registration by import)
    adaptive,
    always,
    parallel_speculative,
    smart_routing,
    smart_speculative,
    speculative,
)
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
