"""The aiohttp application: wiring of config, pooled upstream session, strategies and statistics."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from gateway import __version__
from gateway.accounting.ledger import Ledger
from gateway.accounting.metrics import MemoryCollector, Metrics
from gateway.accounting.ratio import RatioStore, store_path_for
from gateway.accounting.recorder import Recorder
from gateway.accounting.records import UPSTREAM_NAMES, UpstreamName
from gateway.accounting.refusals import HANDLED, RefusalRecorder
from gateway.accounting.stats import StatisticsTracker
from gateway.config import GatewayConfig, Prices, cross_check
from gateway.dashboard import setup_dashboard
from gateway.http.feedback import LEARNING_KEY
from gateway.http.guard import (
    CHAT_PATHS,
    Guard,
    ReplyError,
    door_of_path,
    error_reply,
)
from gateway.http.routes import drain_background, setup_routes
from gateway.http.services import CONFIG_KEY, GUARD_KEY, SERVICES_KEY, Services
from gateway.quota.budget import Budget
from gateway.quota.gate import RateLimitGate
from gateway.responses import request_id_of
from gateway.router import Router, RouterCollector
from gateway.router.learning import Learning
from gateway.speculation.verify_sample import VerifySampler
from gateway.state import open_store
from gateway.storage.writer import WriterThread
from gateway.strategies import StrategyContext, create_strategies, known_names
from gateway.strategies.adaptive import AdaptiveSwitch
from gateway.upstreams import LeanPool, Upstream, build_upstream
from gateway.upstreams.client import open_session

log = logging.getLogger("gateway.http.app")


def check_strategy(config: GatewayConfig) -> None:
    """The strategy and scorer names the config gives exist; raise ConfigError naming the key."""
    cross_check(config, known_names())


def replica_id(config: GatewayConfig) -> str:
    """`state.replica_id`, else host and ledger path: stable across restarts, one per ledger."""
    if config.state.replica_id:
        return config.state.replica_id
    return f"{socket.gethostname()}:{os.path.abspath(config.storage.ledger_path)}"


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG_KEY]
    state = open_store(config.state, replica_id(config))
    session = open_session()
    pool = LeanPool()  # streamed calls to plain-http upstreams (the session serves the rest)
    # The ledger, router.db and learning.db: one thread (started by the first store that starts).
    writer = WriterThread()
    ledger = Ledger(config.storage.ledger_path, writer=writer)
    await ledger.start()
    router: Router | None = None
    learning: Learning | None = None
    verifier: VerifySampler | None = None
    ratios: RatioStore | None = None
    try:
        stats = StatisticsTracker(
            {name: config.models[name].prices for name in UPSTREAM_NAMES}, ledger
        )
        await stats.load_from_ledger()
        upstreams: dict[UpstreamName, Upstream] = {
            name: build_upstream(
                name,
                config.models[name],
                session,
                max_event_bytes=config.server.max_event_bytes,
                pool=pool,
            )
            for name in UPSTREAM_NAMES
        }
        ratios = RatioStore(
            store_path_for(config.storage.ledger_path),
            {name: up.chars_per_token for name, up in upstreams.items()},
        )
        await asyncio.to_thread(ratios.load)
        watchers = {name: up.watcher for name, up in upstreams.items()}
        budget = Budget(config.budget, config.models["cerebras"].prices, state=state)
        await budget.load(ledger)
        gate = RateLimitGate(config, upstreams, budget=budget, state=state)
        adaptive = AdaptiveSwitch(gate, config.routing.adaptive_cerebras)
        router = Router.from_config(config, writer=writer)
        learning = await asyncio.to_thread(
            Learning,
            config,
            learner=router.learn,
            on_escalated_turn=router.count_escalation,
            writer=writer,
        )
        app[LEARNING_KEY] = learning
        strategies = create_strategies(
            StrategyContext(config, upstreams, gate, adaptive, router=router, learning=learning)
        )
        guard = app[GUARD_KEY]
        prices: dict[str, Prices] = {n: config.models[n].prices for n in UPSTREAM_NAMES}
        metrics = Metrics(prices, {str(n): w for n, w in watchers.items()}, lambda: guard.in_flight)
        metrics.registry.register(RouterCollector(router))
        recorder = Recorder(stats, metrics, budget, state, router.count_no_think, ratios)
        app[SERVICES_KEY] = Services(
            config=config,
            upstreams=upstreams,
            strategies=strategies,
            gate=gate,
            adaptive=adaptive,
            budget=budget,
            stats=stats,
            ledger=ledger,
            started=time.time(),
            guard=guard,
            metrics=metrics,
            state=state,
            refusals=RefusalRecorder(stats),
            recorder=recorder,
            writer=writer,
            router=router,
            learning=learning,
            ratios=ratios,
        )
        services = app[SERVICES_KEY]
        metrics.registry.register(MemoryCollector(services.memory))
        if state.shared:
            state.publish_stats(stats.shareable_totals)
        if config.routing.learn.verify_sample > 0:
            verifier = VerifySampler(
                config, upstreams["cerebras"], gate, learning.labels, recorder.record
            )
            services.verifier = verifier
        yield
    finally:
        if verifier is not None:  # before the session and the ledger close under it
            await verifier.close()
        await drain_background()  # records of requests cancelled just before shutdown
        if SERVICES_KEY in app:  # this minute's refusal counts, before the ledger closes
            app[SERVICES_KEY].refusals.close()
        await pool.close()
        await session.close()
        if ratios is not None:
            await asyncio.to_thread(ratios.save)
        if router is not None:
            await asyncio.to_thread(router.close)  # waits for its queued writes
        if learning is not None:
            await asyncio.to_thread(learning.close)
        await ledger.close()
        await asyncio.to_thread(writer.stop)
        await state.close()


@web.middleware
async def record_refusals(request: web.Request, handler: Any) -> web.StreamResponse:
    """A chat request answered with an error before the handler took it on is a refusal."""
    response: web.StreamResponse = await handler(request)
    if (
        response.status >= 400
        and request.path in CHAT_PATHS
        and HANDLED not in request
        and request.method == "POST"
    ):
        services = request.app.get(SERVICES_KEY)
        if services is not None:
            services.refusals.refuse(
                request_id_of(request),
                response.status,
                _error_code(response),
                door_of_path(request.path),
            )
    return response


def _error_code(response: web.StreamResponse) -> str | None:
    """The `error.code` (else `error.type`) of an OpenAI-shaped error body."""
    body = response.body if isinstance(response, web.Response) else None
    try:
        error = orjson.loads(body)["error"] if isinstance(body, bytes) else None
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(error, dict):
        return None
    code = error.get("code") or error.get("type")
    return str(code) if code is not None else None


@web.middleware
async def openai_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error a client sees is in its door's shape (OpenAI unless a door claims the
    request, gateway.http.guard.ErrorShapes), aiohttp's own included."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kinds = {
            404: "not_found_error",
            405: "method_not_allowed",
            413: "request_too_large",
        }
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        error = ReplyError(
            exc.status,
            exc.reason if exc.status != 413 else "request body exceeds the configured size limit",
            kinds.get(exc.status, "invalid_request_error"),
            str(exc.status),
            headers,
        )
        return error_reply(request, error)
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        error = ReplyError(500, "internal gateway error", "server_error", "internal_error", {})
        return error_reply(request, error)


def create_app(config: GatewayConfig) -> web.Application:
    """Build the app; upstream session, ledger and stats open on startup, close on cleanup."""
    check_strategy(config)
    guard = Guard(config.auth, config.limits)
    app = web.Application(
        client_max_size=config.server.max_body_bytes,
        middlewares=[record_refusals, openai_errors, guard.middleware],
    )
    app[CONFIG_KEY] = config
    app[GUARD_KEY] = guard
    app.cleanup_ctx.append(_services_ctx)
    setup_routes(app)
    setup_dashboard(app, config, lambda running: running[SERVICES_KEY])
    log.info(
        "gateway %s configured from %s, strategy %s",
        __version__,
        config.source,
        config.routing.strategy,
    )
    return app
