"""Strategy registry: name -> class. Strategies register themselves with `@register`."""

from __future__ import annotations

from typing import Any, TypeVar

from gateway.config import KnownNames
from gateway.speculation.engine import SCORER_CHOICES
from gateway.strategies.base import Strategy, StrategyContext

_REGISTRY: dict[str, Any] = {}
T = TypeVar("T")


def register(cls: type[T]) -> type[T]:
    """Class decorator: make a strategy available by its `name`."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a non-empty `name`")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"strategy {name!r} registered twice")
    _REGISTRY[name] = cls
    return cls


def strategy_names() -> list[str]:
    return sorted(_REGISTRY)


def known_names() -> KnownNames:
    """The strategy and scorer names a config may give, for gateway.config's checks."""
    return KnownNames(strategies=tuple(strategy_names()), scorers=SCORER_CHOICES)


def describe() -> dict[str, str]:
    return {name: str(getattr(cls, "description", "")) for name, cls in sorted(_REGISTRY.items())}


def create_strategies(ctx: StrategyContext) -> dict[str, Strategy]:
    """One instance of every registered strategy, sharing `ctx`."""
    return {name: cls(ctx) for name, cls in _REGISTRY.items()}
