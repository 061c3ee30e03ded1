"""What one running app shares between requests, and the app keys that hold it."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.accounting.bill import Bill
from gateway.accounting.ledger import Ledger
from gateway.accounting.metrics import Metrics
from gateway.accounting.ratio import RatioStore
from gateway.accounting.recorder import Recorder
from gateway.accounting.records import RequestRecord, UpstreamName
from gateway.accounting.refusals import RefusalRecorder
from gateway.accounting.stats import StatisticsTracker
from gateway.config import DEFAULT_MODEL_ROUTES, GatewayConfig, ModelRoute
from gateway.http.guard import Guard
from gateway.quota.budget import Budget
from gateway.quota.gate import RateLimitGate
from gateway.router import Router
from gateway.router.learning import Learning
from gateway.speculation.verify_sample import VerifySampler
from gateway.state import StateStore
from gateway.storage.writer import WriterThread
from gateway.strategies import Strategy
from gateway.strategies.adaptive import AdaptiveSwitch
from gateway.upstreams import Upstream

MODEL_ALIAS = "glm-token-saver"


def answered_by(record: RequestRecord) -> str | None:
    """The upstream whose answer reached the client (None: no answer did)."""
    return record.model_used if record.outcome == "ok" else None


@dataclass(slots=True)
class Services:
    """Everything one running app shares between requests."""

    config: GatewayConfig
    upstreams: dict[UpstreamName, Upstream]
    strategies: dict[str, Strategy]
    gate: RateLimitGate
    adaptive: AdaptiveSwitch  # adaptive_cerebras' switch, listening to `gate`
    budget: Budget
    stats: StatisticsTracker
    ledger: Ledger
    started: float
    guard: Guard
    metrics: Metrics
    state: StateStore
    refusals: RefusalRecorder
    recorder: Recorder  # prices and stores every finished request (gateway.accounting.recorder)
    writer: WriterThread  # the writer thread of the ledger, router.db and learning.db
    router: Router | None = None  # gateway.router: decisions, learn(), the /stats router block
    learning: Learning | None = None  # escalation, feedback, outcome labels (learning.db)
    verifier: VerifySampler | None = None  # routing.learn.verify_sample (None when 0)
    ratios: RatioStore | None = None  # the upstreams' learned characters per token, persisted

    async def record_request(self, record: RequestRecord) -> Bill:
        """A client request ended: the conversation tracker learns who answered it, then the
        recorder bills and stores it. In this order, the tracker's writes go in the same
        hand-off as the ledger row (gateway.storage.writer)."""
        if self.learning is not None:
            self.learning.tracker.finish(record.request_id, answered_by(record))
        return await self.recorder.record(record)

    def rate_limits(self) -> dict[str, Any]:
        """`/stats` `rate_limits`: the gate's block, with the adaptive switch's state and the
        requests it sent local counted among the fallbacks."""
        block = self.gate.snapshot()
        routed_local = self.adaptive.routed_local
        block["fallbacks_by_reason"]["adaptive_local"] = routed_local
        block["fallbacks"] += routed_local
        return {**block, **self.adaptive.snapshot(self.gate.clock())}

    def memory(self) -> dict[str, dict[str, Any]]:
        """The `/stats` memory block: each structure that grows with conversations, requests,
        client keys or time, as `{"size", "bound"}` (None: bounded only by requests in flight),
        with `bytes` / `bytes_bound` where entries vary in size and `evicted` / `deleted` where
        entries are dropped to keep the bound. SQLite tables report rows."""
        limit = self.config.limits.max_concurrent_requests or None
        keys = len(self.config.auth.api_keys)
        block: dict[str, dict[str, Any]] = {}
        if self.learning is not None:
            block.update(self.learning.usage())
            block["requests_in_flight"]["bound"] = limit
        if self.router is not None:
            block.update(self.router.usage())
        block["latency_samples"] = self.stats.latency_usage()
        block["in_flight_per_key"] = {"size": len(self.guard.per_key), "bound": keys or 1}
        if self.verifier is not None:
            block["verify_samples_in_flight"] = {"size": self.verifier.in_flight, "bound": None}
        return dict(sorted(block.items()))

    def named_strategy(self, requested: str | None) -> Strategy | None:
        """The strategy a request names (header or model) when the client may pick it."""
        if requested:
            name = requested.removeprefix(MODEL_ALIAS + "/")
            strategy = self.strategies.get(name)
            allowed = self.config.routing.client_strategies
            if strategy is not None and (allowed is None or name in allowed):
                return strategy
        return None

    def model_routes(self) -> tuple[tuple[str, ModelRoute], ...]:
        """`routing.model_routes`, or the default map when the default strategy is
        smart_routing and none is configured."""
        routing = self.config.routing
        if routing.model_routes is not None:
            return routing.model_routes
        return DEFAULT_MODEL_ROUTES if routing.strategy == "smart_routing" else ()

    def strategy_for_request(self, requested: str | None, model: str) -> tuple[Strategy, str]:
        """The strategy for a request (a strategy it names, else its model name's route in
        `routing.model_routes`, else the default) and a note saying why when a route chose it."""
        named = self.named_strategy(requested)
        if named is not None:
            return named, ""
        lowered = model.lower()
        for pattern, route in self.model_routes():
            if fnmatch.fnmatchcase(lowered, pattern.lower()):
                if route == "strategy":
                    break
                name = "always_local" if route == "local" else "always_cerebras"
                return (
                    self.strategies[name],
                    f"model {model[:80]!r} matches routing.model_routes {pattern!r}: {route}",
                )
        return self.strategies[self.config.routing.strategy], ""


CONFIG_KEY = web.AppKey("config", GatewayConfig)
GUARD_KEY = web.AppKey("guard", Guard)
SERVICES_KEY = web.AppKey("services", Services)
