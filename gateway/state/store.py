"""`StateStore`, the shared state's interface, and its embedded (single-process, nothing shared)
implementation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gateway.config import StateConfig

StoreStatus = Literal["embedded", "ok", "degraded"]
# (name, unit, limit, seconds) of a plan window the headers do not report.
PlanSpec = tuple[str, str, float, float]
# name -> (limit, remaining, reset as unix seconds); None where unknown.
WallWindows = Mapping[str, tuple[float | None, float | None, float | None]]


@dataclass(frozen=True, slots=True)
class SharedVerdict:
    """The fleet-wide answer of a check-and-reserve: `kind` "ok" or why not (the gate's kinds)."""

    kind: Literal["ok", "budget", "cool_down", "predicted"]
    window: str = ""
    left: float = 0.0
    limit: float = 0.0
    pending: float = 0.0
    wait: float | None = None


@dataclass(frozen=True, slots=True)
class SpendAlerts:
    """Budget thresholds to claim for the fleet with a spend publication. `report(fleet spend,
    percents this replica claimed)` is called once it is known; `(None, [])` when the store
    could not answer (the caller then alerts on its own spend)."""

    limit_usd: float
    percents: tuple[int, ...]
    ttl_s: int
    report: Callable[[float | None, list[int]], None]


class StateStore:
    """What the gate, the budget, the adaptive switch and `/stats` share across processes.

    Async calls answer None when the shared state cannot be read or written in time (the caller
    then uses its local state); `publish_*`/`release`/`cool_down` are fire-and-forget. These
    methods are the embedded store's, which shares nothing (callers check `shared` first and
    never reach them); RedisStore overrides every one.
    """

    shared = False
    replica_id = "embedded"

    @property
    def status(self) -> StoreStatus:
        return "embedded"

    async def reserve(
        self,
        upstream: str,
        key: str,
        need: tuple[float, float],
        *,
        threshold: float,
        predictive: bool,
        plans: tuple[PlanSpec, ...],
        budget: Mapping[str, tuple[float, float]],
    ) -> SharedVerdict | None:
        return SharedVerdict("ok")

    def release(self, upstream: str, key: str, windows: WallWindows | None) -> None:
        return None

    def cool_down(self, upstream: str, until: float) -> None:
        return None

    def publish_spend(
        self, period: str, start: float, spent_usd: float, alerts: SpendAlerts | None = None
    ) -> None:
        return None

    async def fleet_spend(self, periods: Mapping[str, float]) -> dict[str, float] | None:
        return None

    def publish_stats(self, totals: Callable[[], dict[str, Any]]) -> None:
        return None

    async def fleet_stats(self) -> list[dict[str, Any]] | None:
        return None

    def publish_adaptive(self, state: dict[str, Any]) -> None:
        return None

    async def adaptive(self) -> dict[str, Any] | None:
        return None

    async def close(self) -> None:
        return None


class EmbeddedStore(StateStore):
    """Nothing shared: the process's own memory is the state."""


EMBEDDED = EmbeddedStore()


def open_store(config: StateConfig, replica_id: str) -> StateStore:
    """The store `config` asks for: Redis when `redis_url` is set, else the embedded one."""
    if not config.redis_url:
        return EMBEDDED
    from gateway.state.redis_store import RedisStore

    return RedisStore(config, replica_id)
