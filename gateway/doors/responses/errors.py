"""Errors through the Responses door: the OpenAI error shape, with the codes Codex acts on.

Before the stream: a real HTTP status and `{"error": {"message", "type", "param", "code"}}`.
After it started: a `response.failed` event whose `response.error` is `{"code", "message"}`.
Codex CLI reads `code`: `context_length_exceeded` (it compacts or stops), `insufficient_quota`
(it stops: retrying cannot help), `rate_limit_exceeded` (it retries after the delay it finds as
"try again in N s" in the message); anything else is retried with backoff. The gateway's own
codes are mapped onto those where they mean the same thing; the wording is kept.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.errors import (
    CONTEXT_LENGTH_EXCEEDED,
    BudgetExhausted,
    GatewayError,
    RateLimited,
    UpstreamRateLimited,
)


def code_of(error: GatewayError) -> str | None:
    """The code a Responses client (Codex) acts on for `error`."""
    if isinstance(error, BudgetExhausted):
        return "insufficient_quota"
    if isinstance(error, RateLimited | UpstreamRateLimited):
        return "rate_limit_exceeded"
    if error.condition == CONTEXT_LENGTH_EXCEEDED:  # tagged by the upstream's module
        return CONTEXT_LENGTH_EXCEEDED
    return str(error.code) if error.code is not None else error.error_type


def _retry_words(error: GatewayError) -> str:
    """ " Please try again in N s." when the delay is known, the wording Codex parses."""
    delay = getattr(error, "retry_after", None)
    if isinstance(delay, int | float) and delay >= 0:
        return f" Please try again in {delay:.1f}s."
    return ""


def error_body(error: GatewayError) -> dict[str, Any]:
    """The HTTP error body: the gateway's OpenAI shape with the Codex code."""
    body = error.body()
    body["error"]["code"] = code_of(error)
    return body


def error_response(error: GatewayError, request_id: str) -> web.Response:
    headers = error.headers()
    headers["x-request-id"] = request_id
    return web.Response(
        status=error.status,
        body=orjson.dumps(error_body(error)),
        content_type="application/json",
        headers=headers,
    )


def failed_error(error: GatewayError) -> dict[str, Any]:
    """`response.error` for a `response.failed` event."""
    return {"code": code_of(error), "message": error.message + _retry_words(error)}
