"""`glm-gateway` / `python -m gateway`: run the gateway (or a self-contained demo)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from . import __version__
from .app import create_app
from .config import ConfigError, GatewayConfig, load_config
from .logs import setup_logging
from .strategies import strategy_names

log = logging.getLogger("gateway.cli")

DEFAULT_CONFIG = Path("conf/gateway.yaml")
DEMO_API_KEY = "demo-key-not-secret"
DEMO_LEDGER = "data/demo_ledger.db"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glm-gateway",
        description="OpenAI-compatible gateway between a local llama.cpp server and Cerebras.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"YAML config (default: {DEFAULT_CONFIG} if present, else built-in)",
    )
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port to bind (default 8000)")
    parser.add_argument(
        "--strategy",
        default=None,
        choices=strategy_names(),
        help="routing strategy (overrides routing.strategy)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="serve with simulated llama.cpp and Cerebras upstreams on loopback",
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING ...")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def resolve_config(args: argparse.Namespace) -> GatewayConfig:
    path = args.config
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    config = load_config(path)
    server = config.server
    if args.host is not None:
        server = replace(server, host=args.host)
    if args.port is not None:
        server = replace(server, port=args.port)
    routing = config.routing
    if args.strategy is not None:
        routing = replace(routing, strategy=args.strategy)
    storage = config.storage
    if args.log_level is not None:
        storage = replace(storage, log_level=args.log_level.upper())
    if args.demo:
        storage = replace(storage, ledger_path=DEMO_LEDGER)
    return replace(config, server=server, routing=routing, storage=storage)


@asynccontextmanager
async def demo_upstreams(config: GatewayConfig) -> AsyncIterator[GatewayConfig]:
    """Start simulated llama.cpp and Cerebras servers; yield the config pointing at them."""
    from .sim import SimOptions, running_sim

    local_opts = SimOptions(profile="llamacpp", ttft=0.2, tps=40.0, answer_tokens=60)
    cerebras_opts = SimOptions(
        profile="cerebras",
        ttft=0.3,
        tps=600.0,
        answer_tokens=80,
        api_key=DEMO_API_KEY,
        quota_requests_per_minute=30,
        quota_tokens_per_minute=200_000,
    )
    async with running_sim(local_opts) as local, running_sim(cerebras_opts) as cerebras:
        models = dict(config.models)
        models["local"] = replace(
            models["local"], enabled=True, endpoint=local.url, model="sim-local"
        )
        models["cerebras"] = replace(
            models["cerebras"], enabled=True, endpoint=cerebras.url, api_key=DEMO_API_KEY
        )
        print(
            f"demo: simulated llama.cpp at {local.url}, simulated Cerebras at {cerebras.url}",
            flush=True,
        )
        yield replace(config, models=models)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(config: GatewayConfig, *, demo: bool) -> None:
    async with AsyncExitStack() as stack:
        if demo:
            config = await stack.enter_async_context(demo_upstreams(config))
        setup_logging(config.storage, [m.api_key for m in config.models.values()])
        app = create_app(config)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        host, port = config.server.host, config.server.port
        site = web.TCPSite(runner, host, port)
        await site.start()
        if not _is_loopback(host):
            log.warning(
                "listening on %s, reachable from other machines: anyone who can reach it can "
                "spend your Cerebras credits",
                host,
            )
        cerebras = config.cerebras
        print(
            f"GLM Token Saver {__version__} listening on http://{host}:{port}/v1 "
            f"(strategy {config.routing.strategy}); local={config.local.endpoint} "
            f"cerebras={cerebras.endpoint} ({'key set' if cerebras.api_key else 'no key'})",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down")


LOOP_ENV = "GLM_GATEWAY_LOOP"


def loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (measurably faster relay on Linux), else asyncio's own loop.

    `GLM_GATEWAY_LOOP=asyncio` forces the standard loop; `uvloop` insists on uvloop."""
    choice = (choice or os.environ.get(LOOP_ENV) or "auto").lower()
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = resolve_config(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(serve(config, demo=args.demo))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
    return 0
