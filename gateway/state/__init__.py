"""State shared by every worker and replica of a gateway fleet (admission, cool-downs, adaptive
switch, budget spend, fleet statistics) behind one interface, `StateStore`.

`EmbeddedStore` (no `state.redis_url`) shares nothing: the process's own memory is the state and
the per-request path is what it was before shared state existed. `RedisStore` keeps the shared
parts in Redis; every call is bounded by `state.timeout_ms` and answers None when Redis cannot
answer in time, so that callers fall back to the replica's local state.
"""

from __future__ import annotations

from gateway.state.store import (
    EMBEDDED,
    EmbeddedStore,
    SharedVerdict,
    SpendAlerts,
    StateStore,
    open_store,
)

__all__ = [
    "EMBEDDED",
    "EmbeddedStore",
    "SharedVerdict",
    "SpendAlerts",
    "StateStore",
    "open_store",
]
