"""HTTP wiring of the dashboard: the page, its static files and its JSON endpoints.

The page and its static files carry no data, so the guard lets a browser load them without a
key (a browser cannot send a header on navigation, and a key must never be in a URL). Every
number on the page comes from the JSON endpoints below, which need the client key like any
other endpoint; the page sends the key it keeps in sessionStorage as `Authorization: Bearer`.

The app that mounts the dashboard (gateway.http.app) passes in its config and how to reach what
the endpoints read (`Sources`); the dashboard imports nothing from gateway.http.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aiohttp import web

from gateway.accounting.ledger import Ledger, LedgerError
from gateway.config import GatewayConfig
from gateway.dashboard import history as history_mod
from gateway.dashboard import requests as requests_mod
from gateway.dashboard import summary as summary_mod
from gateway.dashboard.params import choice_param, int_param
from gateway.errors import GatewayError
from gateway.quota.budget import Budget
from gateway.quota.gate import RateLimitGate
from gateway.responses import error_response, json_response, request_id_of
from gateway.strategies.adaptive import AdaptiveSwitch

STATIC_DIR = Path(__file__).with_name("static")
PAGE_PATH = "/dashboard"
STATIC_PREFIX = "/dashboard/static/"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
# Only these files are served (no path from the URL ever reaches the filesystem).
STATIC_FILES = (
    "dashboard.js",
    "dashboard.css",
    "uPlot.iife.min.js",
    "uPlot.min.css",
    "uPlot.LICENSE",
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Sources(Protocol):
    """What the JSON endpoints read from the running app (its Services, once started)."""

    @property
    def ledger(self) -> Ledger: ...

    @property
    def gate(self) -> RateLimitGate: ...

    @property
    def adaptive(self) -> AdaptiveSwitch: ...

    @property
    def budget(self) -> Budget: ...


# The app's Sources, looked up per request: they exist only once the app has started.
SourcesOf = Callable[[web.Application], Sources]

REDACTOR_KEY = web.AppKey("dashboard_redactor", requests_mod.Redactor)
FILES_KEY = web.AppKey("dashboard_files", dict)
SOURCES_KEY: web.AppKey[SourcesOf] = web.AppKey("dashboard_sources")

T = TypeVar("T")


def _load_files(auth_required: bool) -> dict[str, tuple[bytes, str]]:
    """The page and its static files, read once when the app is built. The page learns only
    whether a key is needed (so it can ask for one before its first request fails)."""
    files: dict[str, tuple[bytes, str]] = {}
    for name in ("index.html", *STATIC_FILES):
        path = STATIC_DIR / name
        files[name] = (path.read_bytes(), _TYPES.get(path.suffix, "text/plain; charset=utf-8"))
    page, content_type = files["index.html"]
    auth = b"required" if auth_required else b"none"
    files["index.html"] = (page.replace(b"__AUTH__", auth), content_type)
    return files


def _file_response(request: web.Request, name: str) -> web.Response:
    body, content_type = request.app[FILES_KEY][name]
    return web.Response(body=body, headers={"Content-Type": content_type, **_SECURITY_HEADERS})


async def page(request: web.Request) -> web.Response:
    return _file_response(request, "index.html")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return _file_response(request, name)


async def _read(request: web.Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a synchronous ledger read in a thread; a broken ledger is a 503, not a 500."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except LedgerError as exc:
        raise GatewayError(
            f"the ledger cannot be read: {exc}",
            status=503,
            error_type="service_unavailable",
            code="ledger_unavailable",
        ) from exc


def _guarded(
    handler: Callable[[web.Request], Any],
) -> Callable[[web.Request], Any]:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except GatewayError as exc:
            return error_response(exc, request_id_of(request))

    return wrapped


@_guarded
async def get_history(request: web.Request) -> web.Response:
    name = choice_param(request.query, "window", history_mod.WINDOWS, default="1h")
    assert name is not None
    services = _sources(request)
    body = await _read(
        request, history_mod.history, services.ledger, history_mod.WINDOWS[name], time.time()
    )
    return json_response(body)


@_guarded
async def get_requests(request: web.Request) -> web.Response:
    query = request.query
    limit = int_param(
        query, "limit", default=requests_mod.DEFAULT_LIMIT, low=1, high=requests_mod.MAX_LIMIT
    )
    assert limit is not None
    before = int_param(query, "before", default=None, low=1, high=2**62)
    upstream = choice_param(query, "upstream", requests_mod.UPSTREAM_FILTERS, default=None)
    outcome = choice_param(query, "outcome", requests_mod.OUTCOMES, default=None)
    services = _sources(request)
    body = await _read(
        request,
        requests_mod.list_requests,
        services.ledger,
        limit=limit,
        before=before,
        upstream=upstream,
        outcome=outcome,
        redactor=request.app[REDACTOR_KEY],
    )
    return json_response(body)


@_guarded
async def get_request(request: web.Request) -> web.Response:
    ident = request.match_info["id"]
    services = _sources(request)
    found = await _read(
        request, requests_mod.find_request, services.ledger, ident, request.app[REDACTOR_KEY]
    )
    if found is None:
        raise GatewayError(
            f"no recorded request with id {ident[:64]!r}",
            status=404,
            error_type="not_found_error",
            code="request_not_found",
            param="id",
        )
    return json_response(found)


@_guarded
async def get_summary(request: web.Request) -> web.Response:
    services = _sources(request)
    body = await _read(request, summary_mod.today, services.ledger, time.time())
    body["rate_limits"] = summary_mod.rate_limits(services.gate, services.adaptive)
    body["budget"] = summary_mod.budget(services.budget)
    body["now"] = time.time()
    body["object"] = "dashboard.summary"
    return json_response(body)


def _sources(request: web.Request) -> Sources:
    return request.app[SOURCES_KEY](request.app)


def setup_dashboard(app: web.Application, config: GatewayConfig, sources: SourcesOf) -> None:
    """Register the page, its files and the JSON endpoints on `app`; `sources(app)` gives what
    the endpoints read."""
    app[SOURCES_KEY] = sources
    app[REDACTOR_KEY] = requests_mod.Redactor(config.secrets())
    app[FILES_KEY] = _load_files(bool(config.auth.api_keys))
    app.router.add_get(PAGE_PATH, page)
    app.router.add_get(STATIC_PREFIX + "{name}", static)
    app.router.add_get("/dashboard/summary", get_summary)
    app.router.add_get("/stats/history", get_history)
    app.router.add_get("/requests", get_requests)
    app.router.add_get("/requests/{id}", get_request)
