"""The gateway's error tree and its mapping to the OpenAI error shape.

    GatewayError                      any error that reaches a client
    ├── BadRequest                    the client's request is malformed (400, 413, 415)
    ├── NoUpstreamAvailable           every upstream that could serve failed or is disabled (503)
    ├── RateLimited                   no upstream can serve before a known reset (429)
    ├── BudgetExhausted               the Cerebras budget is spent and local cannot serve (402)
    └── UpstreamError                 one upstream call failed; `fallback_ok`: may another try
        ├── UpstreamConnectError      connection refused / DNS / reset before a response
        ├── UpstreamTimeout           first token or idle gap exceeded its limit
        ├── UpstreamHTTPError         a non-2xx answer; status and upstream wording are kept
        │   └── UpstreamRateLimited   a 429, with the retry delay the headers give
        ├── UpstreamProtocolError     broken stream: malformed event, cut connection, oversize event
        ├── UpstreamStreamError       the upstream sent an error event mid-stream
        └── UpstreamEmptyResponse     the stream ended with neither text nor a tool call

Library errors (aiohttp, sqlite, orjson) are mapped into this tree at the edge, inside the module
that talks to the library; nothing else catches them.

This module is the ground of the package graph with gateway.config: it imports nothing from the
gateway. What an error carries from the layers above (the failed call's record) is opaque here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The normalised condition of an upstream's "the prompt does not fit the context" (see
# GatewayError.condition).
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"


class GatewayError(Exception):
    """An error with an HTTP status and an OpenAI-shaped body.

    `condition`: what the error means whatever the provider's wording, set once by the upstream
    module that read it (CONTEXT_LENGTH_EXCEEDED); the doors read it, never the wording. The
    body keeps the upstream's own type, code and message."""

    status: int = 500
    error_type: str = "server_error"
    condition: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        code: str | int | None = None,
        param: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type
        self.code = code
        self.param = param
        self.extra: dict[str, Any] = dict(extra or {})

    def body(self) -> dict[str, Any]:
        """`{"error": {"message", "type", "param", "code", ...extra}}`."""
        err: dict[str, Any] = {
            "message": self.message,
            "type": self.error_type,
            "param": self.param,
            "code": self.code,
        }
        for key, value in self.extra.items():
            err.setdefault(key, value)
        return {"error": err}

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(GatewayError):
    status = 400
    error_type = "invalid_request_error"


class NoUpstreamAvailable(GatewayError):
    status = 503
    error_type = "service_unavailable"


class RateLimited(GatewayError):
    """No upstream can serve until `retry_after` seconds from now."""

    status = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: float | None, should_retry: bool) -> None:
        super().__init__(message, code="rate_limit_exceeded")
        self.retry_after = retry_after
        self.should_retry = should_retry

    def headers(self) -> dict[str, str]:
        headers = {"x-should-retry": "true" if self.should_retry else "false"}
        if self.retry_after is not None:
            seconds = max(0.0, self.retry_after)
            headers["retry-after"] = str(int(-(-seconds // 1)))
            headers["retry-after-ms"] = str(int(seconds * 1000))
        return headers


class BudgetExhausted(GatewayError):
    """The Cerebras spend budget is used up and no free upstream could serve (budget.on_exhausted:
    reject). Retrying cannot help before the budget period ends."""

    status = 402
    error_type = "insufficient_quota"

    def __init__(self, message: str) -> None:
        super().__init__(message, code="budget_exhausted")

    def headers(self) -> dict[str, str]:
        return {"x-should-retry": "false"}


class UpstreamError(GatewayError):
    """A failed call to one upstream. `fallback_ok`: another upstream may serve the request."""

    status = 502
    error_type = "upstream_error"
    fallback_ok = True
    call_status = "error"

    def __init__(self, upstream: str, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.upstream = upstream
        # The record of the call that failed, once the upstream tagged it (a continuation bills
        # its tokens): set by gateway.upstreams.errors.tag, read by its `failed_call`.
        self.call: object | None = None


class UpstreamConnectError(UpstreamError):
    error_type = "upstream_unreachable"


class UpstreamTimeout(UpstreamError):
    status = 504
    error_type = "upstream_timeout"


class UpstreamHTTPError(UpstreamError):
    """A non-2xx answer. The client sees the upstream's status and wording unchanged."""

    def __init__(
        self,
        upstream: str,
        status: int,
        error: Mapping[str, Any],
        *,
        fallback_ok: bool,
    ) -> None:
        message = str(error.get("message") or f"upstream answered HTTP {status}")
        code = error.get("code")
        super().__init__(
            upstream,
            message,
            status=status,
            error_type=str(error.get("type") or "upstream_error"),
            code=code if isinstance(code, str | int) else None,
            param=error.get("param") if isinstance(error.get("param"), str) else None,
            extra={k: v for k, v in error.items() if k not in ("message", "type", "code", "param")},
        )
        self.fallback_ok = fallback_ok


class UpstreamRateLimited(UpstreamHTTPError):
    call_status = "rate_limited"

    def __init__(
        self, upstream: str, error: Mapping[str, Any], *, retry_after: float | None
    ) -> None:
        super().__init__(upstream, 429, error, fallback_ok=True)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return RateLimited(self.message, retry_after=self.retry_after, should_retry=True).headers()


class UpstreamProtocolError(UpstreamError):
    error_type = "upstream_protocol_error"


class UpstreamStreamError(UpstreamError):
    """The upstream reported an error inside the stream; its error object is kept as sent."""

    def __init__(self, upstream: str, error: Mapping[str, Any]) -> None:
        message = str(error.get("message") or "upstream reported an error mid-stream")
        code = error.get("code")
        super().__init__(
            upstream,
            message,
            error_type=str(error.get("type") or "upstream_error"),
            code=code if isinstance(code, str | int) else None,
        )


class UpstreamEmptyResponse(UpstreamError):
    error_type = "upstream_empty_response"
