"""Serve a request from one upstream, falling back to the next before the client saw content.

This is the building block of the routing strategies: a strategy decides the order of upstreams
and the reason; `serve()` streams the first one that answers into the sink. Once answer content
reached the client, an upstream failure ends the stream with one error event instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .errors import (
    GatewayError,
    NoUpstreamAvailable,
    RateLimited,
    UpstreamEmptyResponse,
    UpstreamError,
    UpstreamRateLimited,
)
from .exchange import Exchange
from .records import UpstreamCall, UpstreamName
from .upstreams import OpenAICompatibleUpstream, UpstreamStream

log = logging.getLogger("gateway.relay")

# Clients retry on their own when told to wait less than this (openai SDKs wait up to 60 s).
CLIENT_RETRY_LIMIT_S = 60.0


async def serve(ex: Exchange, route: Sequence[UpstreamName], *, reason: str) -> None:
    """Stream the answer from the first upstream of `route` that can give one.

    Raises a GatewayError when no upstream could answer and nothing was sent yet; after content
    was sent, failures are reported to the client by the caller via `sink.fail`.
    """
    ex.set_reason(reason)
    failures: list[UpstreamError] = []
    for name in route:
        upstream = ex.upstreams[name]
        if not upstream.enabled:
            continue
        if failures and not ex.fallback_allowed(name):
            continue
        if failures:
            ex.record.fallback = True
            ex.sink.reset()
            log.info(
                "%s fallback to %s after %s: %s",
                ex.request_id,
                name,
                failures[-1].upstream,
                failures[-1].message,
            )
        try:
            await relay_stream(ex, upstream)
            return
        except UpstreamError as exc:
            failures.append(exc)
            if ex.sink.committed or not exc.fallback_ok:
                raise
    raise no_upstream_error(failures)


def no_upstream_error(failures: Sequence[UpstreamError]) -> GatewayError:
    """The client-facing error when every upstream tried failed before any content was sent."""
    if not failures:
        return NoUpstreamAvailable("no upstream is enabled for this request")
    if all(isinstance(f, UpstreamRateLimited) for f in failures):
        waits = [f.retry_after for f in failures if isinstance(f, UpstreamRateLimited)]
        known = [w for w in waits if w is not None]
        retry_after = min(known) if known else None
        return RateLimited(
            "every upstream is rate limited; " + "; ".join(f.message for f in failures),
            retry_after=retry_after,
            should_retry=retry_after is not None and retry_after < CLIENT_RETRY_LIMIT_S,
        )
    if len(failures) == 1:
        return failures[0]
    last = failures[-1]
    if isinstance(last, UpstreamError) and not last.fallback_ok:
        return last
    return NoUpstreamAvailable(
        "no upstream could answer: " + "; ".join(f.message for f in failures),
        code="upstreams_unavailable",
    )


async def relay_stream(ex: Exchange, upstream: OpenAICompatibleUpstream) -> None:
    """Stream one upstream's answer into the sink and finish the response on success."""
    sink = ex.sink
    sink.model_used = upstream.name
    async with upstream.open_stream(
        ex.body, role="answer", request_id=ex.request_id, calls=ex.record.calls
    ) as stream:
        async for chunk in stream:
            await sink.emit(chunk)
    if not sink.has_answer():
        stream.call.error = "empty answer"
        raise UpstreamEmptyResponse(
            upstream.name, f"{upstream.name}: answer had neither text nor a tool call"
        )
    await complete(ex, upstream.name, stream)


async def complete(ex: Exchange, name: UpstreamName, stream: UpstreamStream) -> None:
    """Record the committed upstream and finish the client response (usage, metadata, [DONE])."""
    call = stream.call
    record = ex.record
    record.model_used = name
    record.outcome = "ok"
    record.counterfactual_prompt_tokens = call.prompt_tokens
    record.counterfactual_completion_tokens = call.completion_tokens
    ex.metadata["model_used"] = name
    await ex.sink.finish(client_usage(stream.usage, call), ex.metadata, ex.finalize)


def client_usage(reported: dict[str, Any] | None, call: UpstreamCall) -> dict[str, Any]:
    """The usage object for the client: the upstream's own when it sent one, else the estimate."""
    if reported is not None:
        usage = dict(reported)
        usage.setdefault("total_tokens", call.prompt_tokens + call.completion_tokens)
        return usage
    return {
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens,
        "total_tokens": call.prompt_tokens + call.completion_tokens,
        "estimated": True,
    }
