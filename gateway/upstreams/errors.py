"""From what an upstream answered (a non-2xx status and body, a failed connection) to the
gateway's own error types; every error is tagged onto the call it ended."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from gateway.accounting.records import UpstreamCall
from gateway.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamRateLimited,
)
from gateway.upstreams.response import ConnectFailed, MalformedResponse, UpstreamResponse

MAX_ERROR_BODY = 64 * 1024


def error_object(name: str, status: int, payload: Any) -> dict[str, Any]:
    """The error object of a non-2xx body, whatever shape the upstream used."""
    if isinstance(payload, dict):
        inner = payload.get("error")
        if isinstance(inner, dict):
            return dict(inner)
        if isinstance(inner, str):
            return {"message": inner}
        if "message" in payload:
            return dict(payload)
    if isinstance(payload, str) and payload.strip():
        return {"message": payload.strip()[:2000]}
    return {"message": f"{name} answered HTTP {status}"}


def may_fall_back(status: int) -> bool:
    """Whether another upstream may serve a request an upstream refused with `status`."""
    return status >= 500 or status in (401, 403, 404, 408, 409, 429)


async def read_error_body(response: UpstreamResponse) -> Any:
    """The body of a non-2xx response (at most MAX_ERROR_BODY bytes): JSON, else text."""
    raw = await response.content.read(MAX_ERROR_BODY)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


def http_error(
    name: str,
    status: int,
    error: dict[str, Any],
    *,
    retry_after: float | None,
    fallback_ok: bool,
) -> UpstreamError:
    """The gateway error for an upstream's refusal: 429 is a rate limit, anything else an
    HTTP error that another upstream may serve when `fallback_ok`."""
    if status == 429:
        return UpstreamRateLimited(name, error, retry_after=retry_after)
    return UpstreamHTTPError(name, status, error, fallback_ok=fallback_ok)


def connect_error(name: str, exc: BaseException) -> UpstreamError:
    """The gateway error for a request that never got its response headers: an answer that is
    not HTTP is a protocol error (aiohttp raises a bare ClientResponseError for it)."""
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectFailed):
        return UpstreamConnectError(name, f"{name}: cannot connect ({reason(exc)})")
    if isinstance(exc, MalformedResponse) or type(exc) is aiohttp.ClientResponseError:
        return UpstreamProtocolError(name, f"{name}: malformed response ({type(exc).__name__})")
    return UpstreamConnectError(name, f"{name}: connection failed ({type(exc).__name__})")


def tag(exc: UpstreamError, call: UpstreamCall) -> UpstreamError:
    """Record `exc` as the end of `call` and attach the call to it."""
    call.status = exc.call_status  # type: ignore[assignment]
    call.error = exc.message
    exc.call = call
    return exc


def failed_call(exc: UpstreamError) -> UpstreamCall | None:
    """The call `tag` attached to `exc`, or None when none was."""
    call = exc.call
    return call if isinstance(call, UpstreamCall) else None


def reason(exc: BaseException) -> str:
    """The OS's words for a failed connection, else the exception's type name."""
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror
    return type(exc).__name__
