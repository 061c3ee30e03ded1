"""HTTP endpoints: the doors (chat completions, ...) through one handler, models, health, stats."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from gateway import __version__
from gateway.accounting.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gateway.accounting.metrics import fleet_exposition
from gateway.accounting.records import RequestRecord
from gateway.accounting.refusals import HANDLED
from gateway.doors.base import Door, SinkOrder
from gateway.doors.chat import ChatDoor
from gateway.doors.responses import ResponsesDoor
from gateway.errors import GatewayError
from gateway.http.anthropic import VERSION_HEADER, anthropic_models, setup_messages
from gateway.http.feedback import setup_feedback
from gateway.http.guard import DOOR_PATHS, ERROR_SHAPES_KEY, ErrorShapes
from gateway.http.services import (
    CONFIG_KEY,
    GUARD_KEY,
    MODEL_ALIAS,
    SERVICES_KEY,
    Services,
    answered_by,
)
from gateway.responses import json_response, new_id, request_id_of
from gateway.router.conversation import HEADER as CONVERSATION_HEADER
from gateway.serving.exchange import Exchange
from gateway.storage.writer import handoff
from gateway.strategies import describe
from gateway.wire.sinks import Sink
from gateway.wire.validation import check_content_type, parse_body

log = logging.getLogger("gateway.requests")

STRATEGY_HEADER = "x-gateway-strategy"
_background: set[asyncio.Task[None]] = set()


async def serve(request: web.Request, door: Door) -> web.StreamResponse:
    """Serve one request through `door`: decode it into the internal chat request, run the
    strategy with the door's sink, answer errors in the door's shape. Door-blind otherwise.

    The request's writes to the ledger, `router.db` and `learning.db` go to the writer thread
    in one hand-off, with its ledger row (gateway.storage.writer)."""
    services = request.app[SERVICES_KEY]
    with handoff(services.writer):
        return await _serve(request, door, services)


async def _serve(request: web.Request, door: Door, services: Services) -> web.StreamResponse:
    request_id = request_id_of(request)
    try:
        check_content_type(request.headers.get("Content-Type", ""))
        decoded = door.decode(parse_body(await request.read()), request.headers)
    except GatewayError as exc:
        log.info("req=%s rejected status=%d %s", request_id, exc.status, exc.message)
        return door.error_response(exc, request_id)
    request[HANDLED] = True  # recorded from here on; before, as a refusal (gateway.http.app)

    body = decoded.body
    strategy, hinted = services.strategy_for_request(
        request.headers.get(STRATEGY_HEADER) or (body.get("model") if body.get("model") else None),
        decoded.model,
    )
    if hinted:
        log.info("req=%s strategy %s: %s", request_id, strategy.name, hinted)
    stream = decoded.stream
    headers = {"x-request-id": request_id, "x-gateway-strategy": strategy.name}
    # Drawn now so that only a sampled stream keeps its answer (KeepingStreamSink).
    verifier = services.verifier
    sampled = verifier is not None and verifier.draw()
    order = SinkOrder(
        request,
        decoded,
        response_id=new_id(),
        headers=headers,
        keep_answer=sampled,
        keep_text=services.config.routing.fallback_mid_stream == "continue",
    )
    sink = door.sink(order)
    record = RequestRecord(
        request_id=request_id,
        started_at=time.time(),
        strategy=strategy.name,
        stream=stream,
        door=door.name,
    )
    ex = Exchange(
        request_id=request_id,
        body=body,
        stream=stream,
        include_usage=decoded.include_usage,
        sink=sink,
        record=record,
        upstreams=services.upstreams,
        config=services.config,
        recorder=services.record_request,
        gate=services.gate.for_strategy(strategy.name),
        client_thinking=decoded.thinking,
    )
    learning = services.learning
    if learning is not None:  # agent-loop signals of the previous turn; escalation for this one
        conversation: Mapping[str, str] = request.headers
        if decoded.conversation_id is not None:
            conversation = {CONVERSATION_HEADER: decoded.conversation_id}
        learning.tracker.begin(request_id, body, conversation)
    cancelled = False  # then the record is written in the background
    try:
        await strategy.run(ex)
    except GatewayError as exc:
        return await _fail(ex, exc, door)
    except asyncio.CancelledError:
        cancelled = True
        # While draining, a cancellation is the shutdown's: aiohttp closes the connection
        # itself then, so the transport cannot tell the two apart.
        if request.app[GUARD_KEY].draining:
            _cancelled_by_server(ex)
        else:
            _disconnected(ex)
        raise
    except ConnectionError:
        _disconnected(ex)
        # The client may have left before the headers went out: nothing is sent to it anyway.
        return sink.response or web.Response(status=499)
    except Exception as exc:  # a bug must still end the stream cleanly, never corrupt it
        log.exception("req=%s unexpected error in strategy %s", request_id, strategy.name)
        internal = GatewayError(
            f"internal gateway error ({type(exc).__name__})", code="internal_error"
        )
        return await _fail(ex, internal, door)
    finally:
        sink.release()
        # Before the await below: a client that leaves during it cancels this handler there,
        # and the tracker would keep the request as in flight for ever.
        if learning is not None:  # a no-op when the record was stored (record_request)
            learning.tracker.finish(request_id, answered_by(record))
        if not cancelled and record.outcome != "client_disconnected":
            await _finalize(ex)
    response = _response_of(sink)
    if sampled and verifier is not None and record.outcome == "ok":
        await _deliver(request, response)
        verifier.submit(ex)
    return response


def bind(door: Door) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler serving `door`."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return await serve(request, door)

    handler.__name__ = f"serve_{door.name}"
    return handler


async def _deliver(request: web.Request, response: web.StreamResponse) -> None:
    """Send a response that aiohttp would send after the handler returns (a non-stream body)
    now, so that background work started next never precedes it; a stream is already ended.
    aiohttp's own prepare/write_eof afterwards are no-ops."""
    if not response.prepared:
        await response.prepare(request)
        await response.write_eof()


def _stream_started(sink: Sink) -> bool:
    """Whether the sink's stream sent its headers (a whole-body answer is a web.Response)."""
    response = sink.response
    return response is not None and not isinstance(response, web.Response) and response.prepared


async def _fail(ex: Exchange, error: GatewayError, door: Door) -> web.StreamResponse:
    """Report a failure: an HTTP error before the stream started, else one error event."""
    record, sink = ex.record, ex.sink
    record.outcome = "error"
    record.error_type = error.error_type
    await sink.quiesce()
    if not _stream_started(sink):
        record.http_status = error.status
        return door.error_response(error, ex.request_id)
    record.http_status = 200  # what the client saw; the error went out as an event
    try:
        await sink.fail(error)
    except (ConnectionError, RuntimeError):
        _disconnected(ex)
    return _response_of(sink)


def _disconnected(ex: Exchange) -> None:
    """The client went away: record what was billed so far, without delaying cancellation."""
    if ex.record.outcome == "client_disconnected":
        return
    ex.record.outcome = "client_disconnected"
    ex.record.http_status = 499
    _finalize_in_background(ex)


def _cancelled_by_server(ex: Exchange) -> None:
    """Cancelled by the shutdown after its grace period: a 503, not a client's 499."""
    ex.record.outcome = "error"
    ex.record.error_type = "shutdown"
    ex.record.http_status = 503
    _finalize_in_background(ex)


async def drain_background() -> None:
    """Wait for records still being written for cancelled requests (at shutdown)."""
    while _background:
        await asyncio.gather(*list(_background), return_exceptions=True)


def _response_of(sink: Sink) -> web.StreamResponse:
    response = sink.response
    assert response is not None, "a finished sink always has a response"
    return response


async def _finalize(ex: Exchange) -> None:
    """Record the request unless the response already did, then write its log line (also
    when recording fails: the line is where the routing reason shows at INFO)."""
    try:
        if not ex.recorded:
            await ex.finalize()
    finally:
        _log_request(ex)


def _finalize_in_background(ex: Exchange) -> None:
    """Record a request whose handler is being cancelled, without delaying the cancellation."""
    task = asyncio.get_running_loop().create_task(_finalize(ex))
    _background.add(task)
    task.add_done_callback(_background.discard)


def _log_request(ex: Exchange) -> None:
    if not log.isEnabledFor(logging.INFO):
        return  # the line's fields are formatted here, before logging would drop it
    r = ex.record
    tokens = " ".join(
        f"{c.upstream}:{c.role}:{c.status}:{c.prompt_tokens}/{c.completion_tokens}"
        + ("~" if c.estimated else "")
        for c in r.calls
    )
    log.info(
        "req=%s door=%s strategy=%s model_used=%s outcome=%s status=%d stream=%s ttft_ms=%s "
        "duration_ms=%.1f fallback=%s reason=%s calls=[%s]",
        r.request_id,
        r.door,
        r.strategy,
        r.model_used,
        r.outcome,
        r.http_status,
        r.stream,
        f"{r.ttft_s * 1000:.1f}" if r.ttft_s is not None else "-",
        r.duration_s * 1000,
        r.fallback,
        r.routing_reason,
        tokens,
    )


async def list_models(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    created = int(services.started)
    entries = [(MODEL_ALIAS, f"default strategy ({services.config.routing.strategy})")]
    entries += list(describe().items())
    if VERSION_HEADER in request.headers:
        return anthropic_models(services, entries)
    data = [
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "glm-token-saver",
            "description": text,
        }
        for name, text in entries
    ]
    return json_response({"object": "list", "data": data})


async def health(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES_KEY]
    names = list(services.upstreams)
    results = await asyncio.gather(*(services.upstreams[n].health() for n in names))
    upstreams = {name: result.as_dict() for name, result in zip(names, results, strict=True)}
    usable = any(result.state == "ok" for result in results)
    body = {
        "status": "ok" if usable else "unavailable",
        "version": __version__,
        "strategy": services.config.routing.strategy,
        "upstreams": upstreams,
        "state_store": services.state.status,
    }
    return json_response(body, status=200 if usable else 503)


async def _fleet_figures(
    services: Services,
) -> tuple[dict[str, float] | None, list[dict[str, Any]] | None]:
    """The fleet's budget spend per period and every replica's published account; None each
    when state is not shared or the store cannot answer."""
    state = services.state
    if not state.shared:
        return None, None
    budget = services.budget
    fleet_spend = await state.fleet_spend({p.name: p.start for p in budget.periods})
    return fleet_spend, await state.fleet_stats()


async def _stats_body(services: Services) -> dict[str, Any]:
    """`/stats`: with shared state, figures of the whole fleet (every replica's published
    account); this replica's own when the store cannot answer (`fleet.scope` says which)."""
    state = services.state
    fleet_spend, accounts = await _fleet_figures(services)
    extra: dict[str, Any] = {
        "gateway": {"version": __version__, "strategy": services.config.routing.strategy},
        "rate_limits": services.rate_limits(),
        "budget": services.budget.snapshot(fleet_spend),
    }
    if services.ratios is not None:
        extra["token_ratios"] = services.ratios.snapshot()
    if services.router is not None:
        extra["router"] = services.router.snapshot()
    if services.learning is not None:
        extra["learning"] = services.learning.snapshot()
        verifier = services.verifier
        extra["learning"]["verify_samples"] = (
            verifier.snapshot() if verifier is not None else {"share": 0.0, "samples": 0}
        )
    extra["memory"] = services.memory()
    if accounts is not None:
        body = services.stats.fleet_statistics(accounts, extra)
        body["fleet"]["replica_id"] = state.replica_id
        return body
    body = services.stats.get_statistics(extra)
    if state.shared:
        body["fleet"] = {"scope": "replica", "replicas_reported": 1, "state_store": state.status}
    return body


async def get_stats(request: web.Request) -> web.Response:
    return json_response(await _stats_body(request.app[SERVICES_KEY]))


async def reset_stats(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    services.stats.reset()
    await services.ledger.flush()
    if services.state.shared:
        services.state.publish_stats(services.stats.shareable_totals)
    return json_response({"status": "reset", "stats": await _stats_body(services)})


async def get_metrics(request: web.Request) -> web.Response:
    """This replica's metrics; with shared state also the fleet's (`glm_gateway_fleet_*`),
    summed as `/stats` sums them, left out while the store cannot answer."""
    services = request.app[SERVICES_KEY]
    body = services.metrics.render()
    fleet_spend, accounts = await _fleet_figures(services)
    if accounts is not None:
        fleet = services.stats.fleet_statistics(accounts)
        body += fleet_exposition(fleet, fleet_spend)
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


def _bind_responses(app: web.Application) -> None:
    """`POST /v1/responses` through the Responses door, its errors in that door's shape."""
    door = ResponsesDoor(max_messages=app[CONFIG_KEY].server.max_messages)
    handler = bind(door)
    for path in DOOR_PATHS["responses"]:
        app.router.add_post(path, handler)
        app[ERROR_SHAPES_KEY].by_path[path] = door


def setup_routes(app: web.Application) -> None:
    config = app[CONFIG_KEY]
    chat = bind(ChatDoor(max_messages=config.server.max_messages))
    for path in DOOR_PATHS["chat"]:
        app.router.add_post(path, chat)
    # The chat door's errors are the default (OpenAI) shape; other doors claim their paths.
    app[ERROR_SHAPES_KEY] = ErrorShapes()
    _bind_responses(app)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", get_stats)
    app.router.add_post("/stats/reset", reset_stats)
    app.router.add_get("/metrics", get_metrics)
    setup_messages(app, bind)
    setup_feedback(app)
