"""HTTP endpoints: chat completions, models, health, stats."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from gateway import __version__
from gateway.accounting.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gateway.accounting.metrics import fleet_exposition
from gateway.accounting.records import RequestRecord
from gateway.accounting.refusals import HANDLED
from gateway.errors import GatewayError
from gateway.http.guard import request_id_of
from gateway.http.services import GUARD_KEY, MODEL_ALIAS, SERVICES_KEY, Services
from gateway.http.validation import check_content_type, parse_body, validate_chat_request
from gateway.router.feedback import setup_feedback
from gateway.serving.exchange import Exchange
from gateway.strategies import describe
from gateway.wire.sinks import CollectSink, KeepingStreamSink, Sink, StreamSink

log = logging.getLogger("gateway.requests")

STRATEGY_HEADER = "x-gateway-strategy"
_background: set[asyncio.Task[None]] = set()


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(data), content_type="application/json", headers=headers
    )


def error_response(error: GatewayError, request_id: str) -> web.Response:
    headers = error.headers()
    headers["x-request-id"] = request_id
    return json_response(error.body(), status=error.status, headers=headers)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES_KEY]
    request_id = request_id_of(request)
    try:
        check_content_type(request.headers.get("Content-Type", ""))
        body = parse_body(await request.read())
        validate_chat_request(body, max_messages=services.config.server.max_messages)
    except GatewayError as exc:
        log.info("req=%s rejected status=%d %s", request_id, exc.status, exc.message)
        return error_response(exc, request_id)
    request[HANDLED] = True  # recorded from here on; before, as a refusal (gateway.http.app)

    strategy = services.strategy_for(
        request.headers.get(STRATEGY_HEADER) or (body.get("model") if body.get("model") else None)
    )
    stream = bool(body.get("stream"))
    options = body.get("stream_options")
    include_usage = bool(stream and isinstance(options, dict) and options.get("include_usage"))
    response_id = "chatcmpl-" + uuid.uuid4().hex
    headers = {"x-request-id": request_id, "x-gateway-strategy": strategy.name}
    sink: Sink
    # Drawn now so that only a sampled stream keeps its answer (KeepingStreamSink).
    verifier = services.verifier
    sampled = verifier is not None and verifier.draw()
    if stream:
        sink = (KeepingStreamSink if sampled else StreamSink)(
            request,
            response_id=response_id,
            include_usage=include_usage,
            headers=headers,
            keep_text=services.config.routing.fallback_mid_stream == "continue",
        )
    else:
        sink = CollectSink(response_id=response_id, headers=headers)
    record = RequestRecord(
        request_id=request_id, started_at=time.time(), strategy=strategy.name, stream=stream
    )
    ex = Exchange(
        request_id=request_id,
        body=body,
        stream=stream,
        include_usage=include_usage,
        sink=sink,
        record=record,
        upstreams=services.upstreams,
        config=services.config,
        recorder=services.record,
        gate=services.gate.for_strategy(strategy.name),
    )
    learning = services.learning
    if learning is not None:  # agent-loop signals of the previous turn; escalation for this one
        learning.tracker.begin(request_id, body, request.headers)
    cancelled = False  # then the record is written in the background
    try:
        await strategy.run(ex)
    except GatewayError as exc:
        return await _fail(ex, exc)
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
        return await _fail(ex, internal)
    finally:
        sink.release()
        # Before the await below: a client that leaves during it cancels this handler there,
        # and the tracker would keep the request as in flight for ever.
        if learning is not None:
            learning.tracker.finish(
                request_id, record.model_used if record.outcome == "ok" else None
            )
        if not cancelled and record.outcome != "client_disconnected":
            await _finalize(ex)
    response = _response_of(sink)
    if sampled and verifier is not None and record.outcome == "ok":
        await _deliver(request, response)
        verifier.submit(ex)
    return response


async def _deliver(request: web.Request, response: web.StreamResponse) -> None:
    """Send a response that aiohttp would send after the handler returns (a non-stream body)
    now, so that background work started next never precedes it; a stream is already ended.
    aiohttp's own prepare/write_eof afterwards are no-ops."""
    if not response.prepared:
        await response.prepare(request)
        await response.write_eof()


async def _fail(ex: Exchange, error: GatewayError) -> web.StreamResponse:
    """Report a failure: an HTTP error before the stream started, else one error event."""
    record, sink = ex.record, ex.sink
    record.outcome = "error"
    record.error_type = error.error_type
    prepared = isinstance(sink, StreamSink) and sink.prepared
    if not prepared:
        record.http_status = error.status
        return error_response(error, ex.request_id)
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
    """Record the request unless the response already did, then write its log line."""
    if not ex.recorded:
        await ex.finalize()
    _log_request(ex)


def _finalize_in_background(ex: Exchange) -> None:
    """Record a request whose handler is being cancelled, without delaying the cancellation."""
    task = asyncio.get_running_loop().create_task(_finalize(ex))
    _background.add(task)
    task.add_done_callback(_background.discard)


def _log_request(ex: Exchange) -> None:
    r = ex.record
    tokens = " ".join(
        f"{c.upstream}:{c.role}:{c.status}:{c.prompt_tokens}/{c.completion_tokens}"
        + ("~" if c.estimated else "")
        for c in r.calls
    )
    log.info(
        "req=%s strategy=%s model_used=%s outcome=%s status=%d stream=%s ttft_ms=%s "
        "duration_ms=%.1f fallback=%s reason=%s calls=[%s]",
        r.request_id,
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


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", get_stats)
    app.router.add_post("/stats/reset", reset_stats)
    app.router.add_get("/metrics", get_metrics)
    setup_feedback(app)
