"""Who may use the gateway and how much at once: client keys, concurrency limits, draining.

- Client keys (`auth.api_keys`, `GATEWAY_API_KEYS`): when any is configured, every endpoint but
  `/health` (and the dashboard's data-free page and static files) needs `Authorization: Bearer
  <key>`; keys are compared in constant time.
- Concurrency: chat requests in flight, overall and per client key; beyond a limit the client gets
  429 with `retry-after` (the request was never started, so retrying soon is safe).
- Draining: after SIGTERM new chat requests get 503 with `retry-after` while in-flight ones finish.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from gateway.config import AuthConfig, LimitsConfig
from gateway.errors import error_body

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = frozenset({"/health", "/dashboard"})
# The dashboard's page and static files hold no data (every number comes from key-protected JSON
# endpoints), and a browser cannot send a header when it navigates to them.
OPEN_PREFIXES = ("/dashboard/static/",)
CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
CLIENT_KEY = web.RequestKey("client_key", str)
ANONYMOUS = "anonymous"


def _reply(status: int, message: str, error_type: str, code: str, **headers: str) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(error_body(message, error_type, code=code)),
        content_type="application/json",
        headers=headers,
    )


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
        if scheme.lower() != "bearer" or not presented:
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
                401,
                "missing or invalid API key: send Authorization: Bearer <key>",
                "authentication_error",
                "invalid_api_key",
                **{"WWW-Authenticate": "Bearer"},
            )
        request[CLIENT_KEY] = client
        if request.path not in CHAT_PATHS or request.method != "POST":
            return await handler(request)
        if self.draining:
            return _reply(
                503,
                "the gateway is shutting down; retry shortly",
                "service_unavailable",
                "shutting_down",
                **{"retry-after": str(self.drain_retry_after)},
            )
        refusal = self.over_limit(client)
        if refusal is not None:
            return _reply(
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
