"""Errors in the Anthropic Messages shape.

    {"type": "error", "error": {"type": <kind>, "message": ...}, "request_id": ...}

Kinds by status as the Anthropic API documents them: 400 invalid_request_error, 401
authentication_error, 402 billing_error, 403 permission_error, 404 not_found_error, 413
request_too_large, 429 rate_limit_error, 500 api_error, 504 timeout_error, 529 overloaded_error.
The gateway's "no upstream can serve" (503) goes out as 529 overloaded_error, which Claude Code
and the SDK retry. A context overflow keeps its status 400 and is worded "prompt is too long: ..."
so that Claude Code compacts the conversation. In a stream the same object goes out as one
`event: error`.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.errors import CONTEXT_LENGTH_EXCEEDED, GatewayError

_KIND_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
OVERLOADED = 529
PROMPT_TOO_LONG = "prompt is too long"


def is_context_overflow(error: GatewayError) -> bool:
    """The upstream module found the prompt too long for the context (its own wording)."""
    return error.condition == CONTEXT_LENGTH_EXCEEDED


def status_and_kind(error: GatewayError) -> tuple[int, str]:
    """The HTTP status and Anthropic error type for a gateway error."""
    status = error.status
    if status == 503:
        return OVERLOADED, "overloaded_error"
    kind = _KIND_BY_STATUS.get(status)
    if kind is None:
        kind = "invalid_request_error" if 400 <= status < 500 else "api_error"
    return status, kind


def error_object(error: GatewayError) -> dict[str, Any]:
    """`{"type": "error", "error": {"type", "message"}}` for `error`."""
    _, kind = status_and_kind(error)
    message = error.message
    if is_context_overflow(error) and PROMPT_TOO_LONG not in message.lower():
        message = f"{PROMPT_TOO_LONG}: {message}"
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_response(error: GatewayError, request_id: str) -> web.Response:
    """The whole-body error reply, with the error's own headers (retry-after ...) and the
    request id as both `request-id` (what the Anthropic SDK reads) and `x-request-id`."""
    status, _ = status_and_kind(error)
    body = error_object(error)
    body["request_id"] = request_id
    headers = error.headers()
    headers["request-id"] = request_id
    headers["x-request-id"] = request_id
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def error_event(error: GatewayError) -> bytes:
    """The stream's `event: error` for a failure after the stream started."""
    return b"event: error\ndata: " + orjson.dumps(error_object(error)) + b"\n\n"
