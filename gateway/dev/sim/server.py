"""The aiohttp app of a simulated upstream and a handle to run it on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

from gateway.dev.sim.agents import agent_loop_from_json
from gateway.dev.sim.chat import handle_chat
from gateway.dev.sim.options import SimOptions, SimRequestLog, script_from_json
from gateway.dev.sim.quota import Quota
from gateway.dev.sim.state import STATE_KEY, SimState, quota_for
from gateway.dev.sim.tokenize import handle_apply_template, handle_tokenize

SHUTDOWN_TIMEOUT = 0.5
_FLOAT_OPTIONS = {"ttft", "tps", "loading_seconds", "logprob", "cached_prompt_share"}
_INT_OPTIONS = {"answer_tokens", "n_ctx", "default_max_completion_tokens", "seed", "n_slots"}
_OPTIONAL_STR_OPTIONS = {"model", "api_key"}
_QUOTA_OPTIONS = {
    "quota_requests_per_minute",
    "quota_tokens_per_minute",
    "quota_requests_per_day",
}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def _state(request: web.Request) -> SimState:
    return request.app[STATE_KEY]


async def handle_health(request: web.Request) -> web.Response:
    state = _state(request)
    if state.is_loading():
        reply = state.dialect.loading()
        return _json(reply.body, reply.status)
    return _json({"status": "ok"})


async def handle_models(request: web.Request) -> web.Response:
    options = _state(request).options
    return _json(_state(request).dialect.models(options.model_name, options.n_ctx))


async def handle_slots(request: web.Request) -> web.Response:
    state = _state(request)
    slots = max(1, state.options.n_slots)
    return _json([{"id": i, "is_processing": i < state.active} for i in range(slots)])


async def handle_props(request: web.Request) -> web.Response:
    options = _state(request).options
    return _json(
        {
            "default_generation_settings": {"n_ctx": options.n_ctx, "model": options.model_name},
            "total_slots": max(1, options.n_slots),
            "model_path": f"/models/{options.model_name}.gguf",
            "build_info": "b4000-sim",
        }
    )


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return body


async def handle_inject(request: web.Request) -> web.Response:
    body = await _json_body(request)
    try:
        fault = str(body.pop("fault"))
        count = int(body.pop("count", 1))
        _state(request).inject(fault, count, **body)
    except (KeyError, ValueError, TypeError) as exc:
        return _json({"error": str(exc)}, 400)
    return _json({"ok": True})


def update_options(state: SimState, changes: dict[str, Any]) -> None:
    """Apply a partial options update; a loading_seconds change restarts the loading window."""
    options = state.options
    unknown = set(changes) - (
        _FLOAT_OPTIONS
        | _INT_OPTIONS
        | _OPTIONAL_STR_OPTIONS
        | _QUOTA_OPTIONS
        | {"script", "agent_loop"}
    )
    if unknown:
        raise ValueError(f"unknown or read-only option(s): {sorted(unknown)}")
    for key, value in changes.items():
        if key in _FLOAT_OPTIONS:
            setattr(options, key, float(value))
        elif key in _INT_OPTIONS:
            setattr(options, key, int(value))
        elif key in _OPTIONAL_STR_OPTIONS or key in _QUOTA_OPTIONS:
            is_str = key in _OPTIONAL_STR_OPTIONS
            setattr(options, key, None if value is None else str(value) if is_str else float(value))
        elif key == "agent_loop":
            options.agent_loop = None if value is None else agent_loop_from_json(value)
        else:
            options.script = None if value is None else script_from_json(value)
    if "loading_seconds" in changes:
        state.loading_origin = time.monotonic()
    if _QUOTA_OPTIONS & set(changes):
        state.quota = quota_for(options)


async def handle_options(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        update_options(state, await _json_body(request))
    except (ValueError, TypeError) as exc:
        return _json({"error": str(exc)}, 400)
    return _json({k: v for k, v in dataclasses.asdict(state.options).items() if k != "api_key"})


async def handle_requests(request: web.Request) -> web.Response:
    return _json([dataclasses.asdict(r) for r in _state(request).requests])


async def handle_clear(request: web.Request) -> web.Response:
    _state(request).clear()
    return _json({"ok": True})


def create_sim_app(options: SimOptions) -> tuple[web.Application, SimState]:
    """The app and its state; run it with handler_cancellation=True to see disconnects at once."""
    state = SimState(options)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = state
    app.router.add_post("/v1/chat/completions", handle_chat)
    app.router.add_get("/v1/models", handle_models)
    app.router.add_get("/health", handle_health)
    if options.profile == "llamacpp":
        app.router.add_get("/slots", handle_slots)
        app.router.add_get("/props", handle_props)
        app.router.add_post("/apply-template", handle_apply_template)
        app.router.add_post("/tokenize", handle_tokenize)
    app.router.add_post("/_sim/inject", handle_inject)
    app.router.add_post("/_sim/options", handle_options)
    app.router.add_get("/_sim/requests", handle_requests)
    app.router.add_post("/_sim/clear", handle_clear)
    return app, state


class SimServer:
    """A running simulated upstream. `url` is the base URL ending in /v1."""

    def __init__(self, state: SimState, runner: web.AppRunner, host: str, port: int) -> None:
        self.state = state
        self.host = host
        self.port = port
        self._runner = runner

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def base_url(self) -> str:
        """Root URL (for /health, /slots, /_sim/...)."""
        return f"http://{self.host}:{self.port}"

    @property
    def options(self) -> SimOptions:
        return self.state.options

    @options.setter
    def options(self, value: SimOptions) -> None:
        self.state.options = value

    @property
    def requests(self) -> list[SimRequestLog]:
        return self.state.requests

    @property
    def quota(self) -> Quota:
        return self.state.quota

    def inject(self, fault: str, count: int = 1, **params: Any) -> None:
        """The next `count` chat requests get `fault` (FIFO after earlier injections)."""
        self.state.inject(fault, count, **params)

    def clear(self) -> None:
        self.state.clear()

    def hold(self) -> asyncio.Event:
        """Chat answers wait before their first byte (after ttft) until the event returned is
        set: a test decides when requests in flight end, instead of guessing with a delay."""
        self.state.hold = asyncio.Event()
        return self.state.hold

    async def close(self) -> None:
        """Stop serving; handlers still running are cancelled after SHUTDOWN_TIMEOUT."""
        self.state.closing = True
        await self._runner.cleanup()

    async def __aenter__(self) -> SimServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def start_sim(options: SimOptions, host: str = "127.0.0.1", port: int = 0) -> SimServer:
    """Bind `host:port` (0 picks a free port) and serve until `close()`."""
    app, state = create_sim_app(options)
    runner = web.AppRunner(
        app, handler_cancellation=True, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
    except BaseException:
        await runner.cleanup()
        raise
    state.loading_origin = time.monotonic()
    return SimServer(state, runner, host, int(bound))


@asynccontextmanager
async def running_sim(
    options: SimOptions, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[SimServer]:
    """`async with running_sim(opts) as sim:` starts a sim and closes it on exit."""
    sim = await start_sim(options, host, port)
    try:
        yield sim
    finally:
        await sim.close()
