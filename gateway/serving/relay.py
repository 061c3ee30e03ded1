"""Serve a request from one upstream, falling back to the next before the client saw content.

This is the building block of the routing strategies: a strategy decides the order of upstreams
and the reason; `serve()` streams the first one that answers into the sink. Once answer content
reached the client, an upstream failure is continued on the other upstream from the partial
answer (gateway.serving.continuation), or else ends the stream with one error event.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gateway.accounting.records import UpstreamName
from gateway.accounting.usage import client_usage
from gateway.config import ThinkingMode
from gateway.errors import (
    BudgetExhausted,
    GatewayError,
    NoUpstreamAvailable,
    RateLimited,
    UpstreamEmptyResponse,
    UpstreamError,
    UpstreamRateLimited,
)
from gateway.quota.admission import Refusal, Ticket
from gateway.quota.budget import BudgetRefusal
from gateway.serving.continuation import continue_stream
from gateway.serving.exchange import Exchange
from gateway.serving.pump import pump_call
from gateway.upstreams import Stream, Upstream

log = logging.getLogger("gateway.serving.relay")

# Clients retry on their own when told to wait less than this (openai SDKs wait up to 60 s).
CLIENT_RETRY_LIMIT_S = 60.0


async def serve(
    ex: Exchange,
    route: Sequence[UpstreamName],
    *,
    reason: str,
    thinking: ThinkingMode | None = None,
) -> None:
    """Stream the answer from the first upstream of `route` that can give one.

    Each upstream is asked of the gate first; a refused or failed upstream passes the request
    to the next one while no content reached the client. After content was sent, a failure is
    continued on the other upstream when it may be (gateway.serving.continuation). Raises a
    GatewayError when no upstream could answer and nothing was sent yet; a failure after content was
    sent that is not continued propagates, and the caller reports it to the client with `sink.fail`.

    `thinking` is the route choice's thinking mode (None: the strategy classified nothing); a
    client's own wish wins over it (`Exchange.thinking_mode`).
    """
    ex.set_reason(reason)
    failures: list[UpstreamError | Refusal] = []
    for name in route:
        upstream = ex.upstreams[name]
        if not upstream.enabled:
            continue
        if failures and not ex.fallback_allowed(name):
            continue
        admission = await ex.gate.admit(name, ex.body, ex.prompt_estimate(name))
        if isinstance(admission, Refusal):
            log.info("%s skipping %s: %s", ex.request_id, name, admission.reason)
            failures.append(admission)
            continue
        if failures:
            ex.record.fallback = True
            ex.sink.reset()
            last = failures[-1]
            log.info(
                "%s serving from %s after %s: %s",
                ex.request_id,
                name,
                last.upstream,
                _describe(last),
            )
            ex.set_reason(f"{reason}; fallback to {name} ({_describe(last)})")
        try:
            await relay_stream(ex, upstream, admission, thinking=thinking)
            return
        except UpstreamError as exc:
            failures.append(exc)
            if ex.sink.committed:
                if await continue_stream(ex, exc):
                    return
                raise
            if not exc.fallback_ok:
                raise
    raise no_upstream_error(failures)


def _describe(failure: UpstreamError | Refusal) -> str:
    return failure.reason if isinstance(failure, Refusal) else failure.message


def no_upstream_error(failures: Sequence[UpstreamError | Refusal]) -> GatewayError:
    """The client-facing error when every upstream tried failed before any content was sent.

    Only refusals and 429s: 429 with the earliest known reset. A spent budget whose config says
    `on_exhausted: reject`: 402. Otherwise the last upstream error, or 503 naming them all.
    """
    if not failures:
        return NoUpstreamAvailable("no upstream is enabled for this request")
    if any(isinstance(f, BudgetRefusal) and f.reject for f in failures):
        others = [_describe(f) for f in failures if not isinstance(f, BudgetRefusal)]
        budget = next(f for f in failures if isinstance(f, BudgetRefusal))
        local = "; ".join(others) if others else "no other upstream may serve this request"
        return BudgetExhausted(f"{budget.reason}, and {local}")
    limited = [f for f in failures if isinstance(f, UpstreamRateLimited | Refusal)]
    if len(limited) == len(failures):
        waits = [f.retry_after for f in limited if f.retry_after is not None]
        retry_after = min(waits) if waits else None
        return RateLimited(
            "every upstream is rate limited or over budget: "
            + "; ".join(_describe(f) for f in failures),
            retry_after=retry_after,
            should_retry=retry_after is not None and retry_after < CLIENT_RETRY_LIMIT_S,
        )
    errors = [f for f in failures if isinstance(f, UpstreamError)]
    if len(errors) == 1 or not errors[-1].fallback_ok:
        return errors[-1]
    return NoUpstreamAvailable(
        "no upstream could answer: " + "; ".join(_describe(f) for f in failures),
        code="upstreams_unavailable",
    )


async def relay_stream(
    ex: Exchange,
    upstream: Upstream,
    ticket: Ticket,
    *,
    thinking: ThinkingMode | None = None,
) -> None:
    """Stream one upstream's answer into the sink and finish the response on success.

    The admission `ticket` is released as soon as the response headers arrive (they carry the
    upstream's own account of its rate limits); a failure is reported to the gate. `thinking`:
    the route's thinking mode, unless the client stated its own."""
    sink = ex.sink
    sink.model_used = upstream.name
    stream = await pump_call(
        upstream,
        ex.body,
        calls=ex.record.calls,
        ticket=ticket,
        gate=ex.gate,
        feed=sink.emit_many,
        # e.g. a stop sequence matched: stop the upstream generating
        until=lambda: sink.satisfied,
        request_id=ex.request_id,
        thinking=ex.thinking_mode(thinking),
        prompt_tokens=ex.prompt_tokens,
    )
    if not sink.has_answer():
        stream.call.error = "empty answer"
        raise UpstreamEmptyResponse(
            upstream.name, f"{upstream.name}: answer had neither text nor a tool call"
        )
    await complete(ex, upstream.name, stream)


async def complete(ex: Exchange, name: UpstreamName, stream: Stream) -> None:
    """Record the committed upstream and finish the client response (usage, metadata, [DONE])."""
    call = stream.call
    record = ex.record
    record.model_used = name
    record.outcome = "ok"
    record.delivered_by(call)
    ex.metadata["model_used"] = name
    await ex.finish(client_usage(stream.usage, call))
