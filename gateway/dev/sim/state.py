"""Shared state of one simulated upstream: options, request log, fault queue and quota."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.dev.sim.dialects import DIALECTS, Dialect
from gateway.dev.sim.faults import FaultQueue, make_fault
from gateway.dev.sim.options import SimOptions, SimRequestLog
from gateway.dev.sim.quota import Quota

MAX_LOG = 20_000  # request log entries kept (the oldest half goes past this)


def quota_for(options: SimOptions) -> Quota:
    return Quota(
        requests_per_minute=options.quota_requests_per_minute,
        tokens_per_minute=options.quota_tokens_per_minute,
        requests_per_day=options.quota_requests_per_day,
    )


@dataclass
class SimState:
    """Everything the handlers share. `loading_origin` is when the loading window started;
    `hold`, when set, is an event chat answers wait for before their first byte."""

    options: SimOptions
    requests: list[SimRequestLog] = field(default_factory=list)
    faults: FaultQueue = field(default_factory=FaultQueue)
    quota: Quota = field(init=False)
    loading_origin: float = field(default_factory=time.monotonic)
    active: int = 0
    closing: bool = False
    hold: asyncio.Event | None = None

    def __post_init__(self) -> None:
        self.quota = quota_for(self.options)

    @property
    def dialect(self) -> type[Dialect]:
        return DIALECTS[self.options.profile]

    def is_loading(self) -> bool:
        return (
            self.options.profile == "llamacpp"
            and time.monotonic() < self.loading_origin + self.options.loading_seconds
        )

    def record(self, log: SimRequestLog) -> None:
        """Keep the request log; past MAX_LOG entries the oldest half goes (long soak runs)."""
        self.requests.append(log)
        if len(self.requests) > MAX_LOG:
            del self.requests[: MAX_LOG // 2]

    def inject(self, fault: str, count: int = 1, **params: Any) -> None:
        """Queue `fault` for the next `count` chat requests; bad names/params: ValueError."""
        self.faults.push(make_fault(fault, **params), count)

    def clear(self) -> None:
        """Forget queued faults and the request log."""
        self.faults.clear()
        self.requests.clear()


STATE_KEY = web.AppKey("sim_state", SimState)
