"""Who may use the gateway and how much at once: client keys, concurrency limits, draining.

- Client keys (`auth.api_keys`, `GATEWAY_API_KEYS`): when any is configured, every endpoint but
  `/health` (and the dashboard's data-free page and static files) needs `Authorization: Bearer
  <key>` or `x-api-key: <key>` (what the Anthropic SDK and Claude Code send); keys are compared
  in constant time.
- Concurrency: requests in flight on the doors' paths (`CHAT_PATHS`), overall and per client key;
  beyond a limit the client gets 429 with `retry-after` (the request was never started, so
  retrying soon is safe).
- Draining: after SIGTERM new door requests get 503 with `retry-after` while in-flight ones
  finish.
- Every refusal is in the shape of the door the request came through (`ErrorShapes`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from gateway.config import AuthConfig, LimitsConfig
from gateway.doors.base import Door, DoorName
from gateway.errors import GatewayError
from gateway.responses import error_response, request_id_of

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = frozenset({"/", "/health", "/dashboard"})
# The dashboard's page and static files hold no data (every number comes from key-protected JSON
# endpoints), and a browser cannot send a header when it navigates to them.
OPEN_PREFIXES = ("/dashboard/static/",)
# The paths each door serves its answers on (POST).
DOOR_PATHS: dict[DoorName, tuple[str, ...]] = {
    "chat": ("/v1/chat/completions", "/chat/completions"),
    "messages": ("/v1/messages",),
    "responses": ("/v1/responses",),
}
# Requests that run a strategy: limited, drained and counted as refusals when refused.
CHAT_PATHS = frozenset(path for paths in DOOR_PATHS.values() for path in paths)
_DOOR_OF_PATH: dict[str, DoorName] = {
    path: door for door, paths in DOOR_PATHS.items() for path in paths
}


def door_of_path(path: str) -> DoorName:
    """The door serving `path` (`chat` for any other path)."""
    return _DOOR_OF_PATH.get(path, "chat")


CLIENT_KEY = web.RequestKey("client_key", str)
ANONYMOUS = "anonymous"


@dataclass(slots=True)
class ErrorShapes:
    """Which door's shape an error reply takes: by path first, then by a header the request
    carries (e.g. `anthropic-version`); the OpenAI shape otherwise."""

    by_path: dict[str, Door] = field(default_factory=dict)
    by_header: dict[str, Door] = field(default_factory=dict)

    def door_for(self, request: web.BaseRequest) -> Door | None:
        door = self.by_path.get(request.path)
        if door is not None:
            return door
        for header, candidate in self.by_header.items():
            if header in request.headers:
                return candidate
        return None

    def render(self, request: web.BaseRequest, error: GatewayError) -> web.Response:
        """`error` in the request's door shape (a door's reply carries `x-request-id`)."""
        door = self.door_for(request)
        if door is None:
            return error_response(error)
        return door.error_response(error, request_id_of(request))


ERROR_SHAPES_KEY = web.AppKey("error_shapes", ErrorShapes)


def error_reply(request: web.BaseRequest, error: GatewayError) -> web.Response:
    """`error` in the shape the request's door answers in (OpenAI when no door claims it)."""
    shapes = request.app.get(ERROR_SHAPES_KEY) if isinstance(request, web.Request) else None
    if shapes is None:
        return error_response(error)
    return shapes.render(request, error)


class ReplyError(GatewayError):
    """An error raised outside the tree (a guard refusal, aiohttp's own), with its headers."""

    def __init__(
        self, status: int, message: str, error_type: str, code: str, headers: dict[str, str]
    ) -> None:
        super().__init__(message, status=status, error_type=error_type, code=code)
        self._headers = headers

    def headers(self) -> dict[str, str]:
        return dict(self._headers)


def _reply(
    request: web.Request, status: int, message: str, error_type: str, code: str, **headers: str
) -> web.Response:
    return error_reply(request, ReplyError(status, message, error_type, code, headers))


def key_id(key: str) -> str:
    """A short, non-reversible name for a client key (for limits and logs)."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(slots=True)
class Guard:
    auth: AuthConfig
    limits: LimitsConfig
    draining: bool = False
    drain_retry_after: int = 5
    in_flight: int = 0
    per_key: Counter[str] = field(default_factory=Counter)

    def identify(self, request: web.Request) -> str | None:
        """The client key's id, `anonymous` when keys are off, None when the key is wrong."""
        if not self.auth.api_keys:
            return ANONYMOUS
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            presented = request.headers.get("x-api-key", "")
        if not presented.strip():
            return None
        given = presented.strip().encode()
        match: str | None = None
        for key in self.auth.api_keys:  # no early exit: timing must not tell which key is close
            if hmac.compare_digest(given, key.encode()):
                match = key
        return key_id(match) if match is not None else None

    def over_limit(self, client: str) -> str | None:
        limits = self.limits
        if limits.max_concurrent_requests and self.in_flight >= limits.max_concurrent_requests:
            return f"the gateway is serving its limit of {limits.max_concurrent_requests} requests"
        if limits.max_concurrent_per_key and self.per_key[client] >= limits.max_concurrent_per_key:
            return f"this key has {limits.max_concurrent_per_key} requests in flight already"
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIXES):
            return await handler(request)
        client = self.identify(request)
        if client is None:
            return _reply(
                request,
                401,
                "missing or invalid API key: send Authorization: Bearer <key> or x-api-key: <key>",
                "authentication_error",
                "invalid_api_key",
                **{"WWW-Authenticate": "Bearer"},
            )
        request[CLIENT_KEY] = client
        if request.path not in CHAT_PATHS or request.method != "POST":
            return await handler(request)
        if self.draining:
            return _reply(
                request,
                503,
                "the gateway is shutting down; retry shortly",
                "service_unavailable",
                "shutting_down",
                **{"retry-after": str(self.drain_retry_after)},
            )
        refusal = self.over_limit(client)
        if refusal is not None:
            return _reply(
                request,
                429,
                refusal,
                "rate_limit_error",
                "concurrency_limit",
                **{"retry-after": "1", "retry-after-ms": "1000", "x-should-retry": "true"},
            )
        self.in_flight += 1
        self.per_key[client] += 1
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1
            self.per_key[client] -= 1
            if not self.per_key[client]:
                del self.per_key[client]
