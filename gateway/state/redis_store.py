"""`RedisStore`: the fleet's shared state in Redis (redis-py's asyncio client).

Contracts:
- every call is bounded by `state.timeout_ms`; a failure or a timeout makes the store `degraded`
  (logged once per outage) and the call answers None, so the caller uses its local state;
- while degraded, calls answer None at once except one probe per `_PROBE_INTERVAL`; the first
  probe that succeeds ends the outage (redis-py reconnects by itself);
- each replica publishes its own account (budget spend per period, statistics totals) under its
  `replica_id`, as absolute values read from its ledger: a restart republishes, never doubles.
Time in Redis is unix seconds (replicas must have synchronised clocks, as NTP gives).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis

from gateway.config import StateConfig
from gateway.state import scripts
from gateway.state.store import (
    PlanSpec,
    SharedVerdict,
    SpendAlerts,
    StateStore,
    StoreStatus,
    WallWindows,
)

log = logging.getLogger("gateway.state")

T = TypeVar("T")
_PROBE_INTERVAL = 1.0
_STATS_TTL = 7 * 86_400
_HEARTBEAT = 30.0


class RedisStore(StateStore):
    shared = True

    def __init__(self, config: StateConfig, replica_id: str) -> None:
        self.config = config
        self.replica_id = replica_id
        self.prefix = config.key_prefix
        self.timeout = config.timeout_ms / 1000
        self.client = aioredis.Redis.from_url(
            config.redis_url,
            socket_timeout=self.timeout * 4,
            socket_connect_timeout=self.timeout * 4,
            retry_on_timeout=False,
        )
        self._reserve = self.client.register_script(scripts.RESERVE)
        self._release = self.client.register_script(scripts.RELEASE)
        self._cool_down = self.client.register_script(scripts.COOL_DOWN)
        self._spend = self.client.register_script(scripts.SPEND)
        self.degraded = False
        self.outages = 0
        self.commands = 0  # round trips attempted (for the benchmarks' commands per request)
        self._next_probe = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stats_source: Callable[[], dict[str, Any]] | None = None
        self._stats_pending = False
        self._stats_task: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._spend_pending: dict[str, tuple[list[str], list[str], SpendAlerts | None]] = {}
        self._spend_running: set[str] = set()

    @property
    def status(self) -> StoreStatus:
        return "degraded" if self.degraded else "ok"

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def _call(self, make: Callable[[], Awaitable[T]], *, probe: bool = True) -> T | None:
        """Run one Redis call within the timeout; None (and degraded) when it cannot. While
        degraded, calls with `probe` answer None at once until the next probe is due."""
        if probe and self.degraded and time.monotonic() < self._next_probe:
            return None
        self.commands += 1
        try:
            async with asyncio.timeout(self.timeout):
                result = await make()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure of the store must fall back, never fail a request
            self._next_probe = time.monotonic() + _PROBE_INTERVAL
            if not self.degraded:
                self.degraded = True
                self.outages += 1
                log.warning(
                    "shared state unavailable (%s: %s); using this replica's local state until "
                    "Redis answers again",
                    type(exc).__name__,
                    exc,
                )
            return None
        if self.degraded:
            self.degraded = False
            log.warning("shared state available again: Redis answers, sharing resumed")
        return result

    def _background(self, make: Callable[[], Awaitable[Any]]) -> None:
        # Off the request path, so always tried: a release must not be skipped by an outage.
        task = asyncio.get_running_loop().create_task(self._call(make, probe=False))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- admission ------------------------------------------------------------------------------

    def _upstream_keys(self, upstream: str) -> list[str]:
        return [
            self._key(upstream, "headers"),
            self._key(upstream, "reserved"),
            self._key(upstream, "amounts"),
            self._key(upstream, "cool"),
        ]

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
        keys = self._upstream_keys(upstream)
        args: list[Any] = [
            repr(time.time()),
            repr(threshold),
            repr(need[0]),
            repr(need[1]),
            key,
            repr(self.config.reservation_ttl_s),
            "1" if predictive else "0",
            len(budget),
            len(plans),
        ]
        for period, (start, cap) in budget.items():
            keys.append(self._key("budget", period, f"{start:.0f}"))
            args.append(repr(cap))
        for name, unit, amount, seconds in plans:
            keys.append(self._key(upstream, "plan", name))
            args += [name, unit, repr(amount), repr(seconds)]
        reply = await self._call(lambda: self._reserve(keys=keys, args=args))
        if reply is None:
            return None
        fields = [v.decode() if isinstance(v, bytes) else str(v) for v in reply]
        if fields[0] == "ok":
            return SharedVerdict("ok")
        kind, window, left, limit, pending, wait = fields
        if kind == "budget":
            window = window.split(":")[-2]
        return SharedVerdict(
            kind,  # type: ignore[arg-type]  # the script returns only the gate's kinds
            window,
            float(left),
            float(limit),
            float(pending),
            float(wait) if wait else None,
        )

    def release(self, upstream: str, key: str, windows: WallWindows | None) -> None:
        keys = self._upstream_keys(upstream)[:3]
        args: list[Any] = [key, repr(time.time()) if windows else ""]
        for name, values in (windows or {}).items():
            args += [name, "|".join("" if v is None else repr(v) for v in values)]
        self._background(lambda: self._release(keys=keys, args=args))

    def cool_down(self, upstream: str, until: float) -> None:
        keys = [self._key(upstream, "cool")]
        args = [repr(until), repr(time.time())]
        self._background(lambda: self._cool_down(keys=keys, args=args))

    # --- budget ---------------------------------------------------------------------------------

    def publish_spend(
        self,
        period: str,
        start: float,
        spent_usd: float,
        alerts: SpendAlerts | None = None,
    ) -> None:
        """Publish soon, with the fleet-wide claim of `alerts`' thresholds. One publication per
        period at a time, the latest asked for next: an older, lower spend never lands last."""
        key = self._key("budget", period, f"{start:.0f}")
        percents = alerts.percents if alerts is not None else ()
        keys = [key] + [self._key("budget", "alert", period, f"{start:.0f}", str(p))
                        for p in percents]  # fmt: skip
        args = [
            self.replica_id,
            repr(spent_usd),
            str(alerts.ttl_s if alerts is not None else 1),
            repr(alerts.limit_usd if alerts is not None else 0.0),
            *(str(p) for p in percents),
        ]
        self._spend_pending[key] = (keys, args, alerts)
        # A running publisher takes the newest pending entry next; none running (or one that
        # died on an error) means a new one, so a period's spend never stops being published.
        if key not in self._spend_running:
            self._spend_running.add(key)
            task = asyncio.get_running_loop().create_task(self._publish_spend(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _publish_spend(self, key: str) -> None:
        try:
            while key in self._spend_pending:
                keys, args, alerts = self._spend_pending.pop(key)
                reply = await self._call(partial(self._spend, keys=keys, args=args), probe=False)
                if alerts is None:
                    continue
                if reply is None:
                    alerts.report(None, [])
                    continue
                values = [float(v) for v in reply]
                alerts.report(values[0], [int(v) for v in values[1:]])
        finally:
            self._spend_running.discard(key)

    async def fleet_spend(self, periods: Mapping[str, float]) -> dict[str, float] | None:
        names = list(periods)

        async def read() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hvals(self._key("budget", name, f"{periods[name]:.0f}"))
                result: list[Any] = await pipe.execute()
                return result

        values = await self._call(read)
        if values is None:
            return None
        return {name: sum(float(v) for v in vals) for name, vals in zip(names, values, strict=True)}

    # --- statistics -----------------------------------------------------------------------------

    def publish_stats(self, totals: Callable[[], dict[str, Any]]) -> None:
        """Publish this replica's totals soon. One publication at a time (a slower, older one
        must never land after a newer one); those asked for meanwhile coalesce into the next."""
        self._stats_source = totals
        if self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat())
        self._stats_pending = True
        if self._stats_task is None or self._stats_task.done():
            self._stats_task = asyncio.get_running_loop().create_task(self._publish_stats())
            self._tasks.add(self._stats_task)
            self._stats_task.add_done_callback(self._tasks.discard)

    async def _publish_stats(self) -> None:
        while self._stats_pending:
            self._stats_pending = False  # cleared even when the call is skipped during an outage
            await self._call(self._write_stats)

    async def _write_stats(self) -> None:
        source = self._stats_source
        if source is None:
            return
        payload = orjson.dumps({"at": time.time(), "totals": source()})
        await self.client.hset(self._key("stats"), self.replica_id, payload)

    async def _beat(self) -> None:
        # An idle replica keeps its account fresh, so readers do not take it for a dead one.
        while True:
            await asyncio.sleep(_HEARTBEAT)
            await self._call(self._write_stats)

    async def fleet_stats(self) -> list[dict[str, Any]] | None:
        """Every replica's published totals (fresher than a week), this one's included."""
        raw = await self._call(lambda: self.client.hgetall(self._key("stats")))
        if raw is None:
            return None
        now, out = time.time(), []
        for value in raw.values():
            try:
                entry = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(entry, dict) and now - float(entry.get("at", 0)) < _STATS_TTL:
                out.append(entry["totals"])
        return out

    # --- adaptive switch ------------------------------------------------------------------------

    def publish_adaptive(self, state: dict[str, Any]) -> None:
        payload = orjson.dumps(state)
        self._background(lambda: self.client.set(self._key("adaptive"), payload, ex=86_400))

    async def adaptive(self) -> dict[str, Any] | None:
        raw = await self._call(lambda: self.client.get(self._key("adaptive")))
        if not raw:
            return None
        state: dict[str, Any] = orjson.loads(raw)
        return state

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        if self._stats_source is not None and not self.degraded:
            await self._call(self._write_stats)  # the final account, before the replica leaves
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.client.aclose()
