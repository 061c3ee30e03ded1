"""StateStore's own methods are the embedded store's no-ops: the Redis store must override every
one, or a fleet would silently stop sharing that part of its state."""

from __future__ import annotations

import inspect

from gateway.state import EMBEDDED, EmbeddedStore, StateStore
from gateway.state.redis_store import RedisStore


def interface() -> list[str]:
    return [
        name
        for name, value in vars(StateStore).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    ]


def test_the_redis_store_overrides_every_method_of_the_interface() -> None:
    names = interface()
    assert {"reserve", "release", "publish_stats", "fleet_stats", "close"} <= set(names)
    missing = [name for name in names if name not in vars(RedisStore)]
    assert missing == []
    for name in names:
        ours, theirs = getattr(StateStore, name), getattr(RedisStore, name)
        if callable(ours):
            assert inspect.signature(ours) == inspect.signature(theirs), name


def test_the_embedded_store_shares_nothing() -> None:
    assert isinstance(EMBEDDED, EmbeddedStore)
    assert not EMBEDDED.shared and EMBEDDED.status == "embedded"
