"""`glm-gateway` / `python -m gateway`: run the gateway (or a self-contained demo)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import ipaddress
import logging
import signal
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from gateway import __version__
from gateway.config import (
    LOG_LEVELS,
    URL_MASK,
    ConfigError,
    GatewayConfig,
    check_names,
    command_parser,
    config_path,
    load_config,
    mask_url,
    redact,
)
from gateway.config.own_address import check_not_own_address
from gateway.config_check import main as config_check_main
from gateway.dashboard.demo_traffic import DemoTraffic, dashboard_url
from gateway.dev.demo import (
    DEMO_LEDGER,
    DEMO_UPSTREAMS_FLAG,
    demo_upstreams,
    with_demo_upstreams,
)
from gateway.dev.llama_server import LocalModelError
from gateway.dev.local_model import local_model_upstreams
from gateway.http.app import create_app
from gateway.http.guard import Guard
from gateway.http.services import GUARD_KEY
from gateway.logs import setup_logging
from gateway.loop import loop_factory
from gateway.strategies import known_names, strategy_names

log = logging.getLogger("gateway.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "glm-gateway",
        "OpenAI-compatible gateway between a local llama.cpp server and Cerebras.",
        epilog="glm-gateway doctor [--config F] [--json] (or --doctor): check the config and "
        "both upstreams with a few tokens each, then exit (doctor --help for more). "
        "glm-gateway config check [--config F]: validate the config and print the effective "
        "values, secrets masked.",
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
    parser.add_argument(
        "--demo-traffic",
        action="store_true",
        help="with --demo (implied): send a slow, varied stream of simulated requests, so the "
        "dashboard at /dashboard shows a living page",
    )
    parser.add_argument(
        "--local-model",
        action="store_true",
        help="start a real llama-server with a small model on 127.0.0.1:41447 (see "
        "scripts/setup_local_model.sh) and serve with it; Cerebras simulated without a key",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes serving one port (SO_REUSEPORT; overrides server.workers); more than "
        "one needs shared state (state.redis_url or GATEWAY_REDIS_URL)",
    )
    parser.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(DEMO_UPSTREAMS_FLAG, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        default=None,
        help="DEBUG, INFO, WARNING ...",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def resolve_config(args: argparse.Namespace) -> GatewayConfig:
    """The config file with the flags applied. Its names are checked as the file gives them;
    its upstreams against the address the gateway will listen on, so once --host and --port
    apply, and not for --demo or --local-model, which replace them (create_app checks those)."""
    config = load_config(config_path(args.config))
    check_names(config, known_names())
    server = config.server
    if args.host is not None:
        server = replace(server, host=args.host)
    if args.port is not None:
        server = replace(server, port=args.port)
    if args.workers is not None:
        server = replace(server, workers=args.workers)
    routing = config.routing
    if args.strategy is not None:
        routing = replace(routing, strategy=args.strategy)
    storage = config.storage
    if args.log_level is not None:
        storage = replace(storage, log_level=args.log_level)
    if args.demo:
        storage = replace(storage, ledger_path=DEMO_LEDGER)
    if args.worker_index:  # each worker keeps its own ledger (SQLite has one writer)
        ledger = Path(storage.ledger_path)
        ledger = ledger.with_name(f"{ledger.stem}.worker{args.worker_index}{ledger.suffix}")
        storage = replace(storage, ledger_path=str(ledger))
    resolved = replace(config, server=server, routing=routing, storage=storage)
    if not (args.demo or args.local_model):
        check_not_own_address(resolved)
    return resolved


def check_workers(config: GatewayConfig, *, demo: bool = False) -> str | None:
    """Why `config` cannot run its workers, or None. The demo brings its own redis-server."""
    if config.server.workers > 1 and not config.state.redis_url and not demo:
        return (
            f"server.workers is {config.server.workers}: more than one worker needs shared state "
            "(set state.redis_url or GATEWAY_REDIS_URL, e.g. redis://127.0.0.1:6379/0); "
            "without it each worker would admit Cerebras calls and spend budget on its own"
        )
    return None


def _run_demo_workers(words: list[str], config: GatewayConfig) -> int:
    from gateway.dev.demo_fleet import DemoFleetError, run_demo_workers

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(
                run_demo_workers(words, config.server.workers, config.state.redis_url)
            )
    except DemoFleetError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, has_client_keys: bool) -> str | None:
    """A warning when the gateway is reachable from other machines without client keys."""
    if _is_loopback(host) or has_client_keys:
        return None
    return (
        f"listening on {host} without client API keys: anyone who can reach this port can "
        "spend your Cerebras credits (set auth.api_keys or GATEWAY_API_KEYS)"
    )


async def serve(
    config: GatewayConfig,
    *,
    demo: bool,
    local_model: bool = False,
    demo_traffic: bool = False,
    demo_endpoints: str | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM. `demo_endpoints` ("local,cerebras" URLs): a demo worker,
    whose simulators the parent process runs."""
    async with AsyncExitStack() as stack:
        if demo and demo_endpoints:
            local_url, _, cerebras_url = demo_endpoints.partition(",")
            config = with_demo_upstreams(config, local_url, cerebras_url)
        elif demo:
            config = await stack.enter_async_context(demo_upstreams(config))
        elif local_model:
            config = await stack.enter_async_context(local_model_upstreams(config))
        setup_logging(config.storage, config.secrets())
        app = create_app(config)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        # What start-up built (modules, config, the router's weights, the stores) lives as long
        # as the process: kept out of the full collections, which stall every stream in flight
        # (about 4 ms then, against 40-50 ms with a Cline-sized load; docs/bench/hot_path.md).
        gc.collect()
        gc.freeze()
        host, port = config.server.host, config.server.port
        # Workers share the port; the kernel spreads connections among them.
        site = web.TCPSite(runner, host, port, reuse_port=config.server.workers > 1 or None)
        await site.start()
        warning = exposure_warning(host, bool(config.auth.api_keys))
        if warning:
            log.warning("%s", warning)
            print(f"WARNING: {warning}", file=sys.stderr, flush=True)
        cerebras = config.cerebras
        banner = (
            f"GLM Token Saver {__version__} listening on http://{host}:{port}/v1 "
            f"(strategy {config.routing.strategy}); local={mask_url(config.local.endpoint)} "
            f"cerebras={mask_url(cerebras.endpoint)} "
            f"({'key set' if cerebras.api_key else 'no key'})"
        )
        # A key written into an endpoint (as its user name, say) is no URL password.
        print(redact(banner, config.secrets(), URL_MASK), flush=True)
        print(f"dashboard: {dashboard_url(host, port)}", flush=True)
        if demo_traffic:
            traffic = DemoTraffic(
                dashboard_url(host, port).removesuffix("/dashboard") + "/v1",
                api_key=config.auth.api_keys[0] if config.auth.api_keys else None,
            )
            traffic_task = asyncio.create_task(traffic.run())
            stack.push_async_callback(_cancel, traffic_task)
            print("demo traffic: one simulated request every 1.5-4 s", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        stop.clear()
        await drain(app[GUARD_KEY], config.server.shutdown_grace_seconds, stop)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def drain(guard: Guard, grace: float, again: asyncio.Event) -> None:
    """Refuse new requests, give in-flight ones up to `grace` seconds (a second signal cuts it
    short); the ledger is flushed when the app's cleanup closes it."""
    guard.draining = True
    guard.drain_retry_after = max(1, int(grace))
    log.info("draining: %d request(s) in flight, up to %.0fs", guard.in_flight, grace)
    deadline = asyncio.get_running_loop().time() + grace
    while guard.in_flight and not again.is_set():
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            log.warning("grace period over with %d request(s) still in flight", guard.in_flight)
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(again.wait(), min(0.05, remaining))
    log.info("shutting down")


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["doctor"] or "--doctor" in words:
        from gateway.doctor import main as doctor_main

        return doctor_main(
            words[1:] if words[:1] == ["doctor"] else [w for w in words if w != "--doctor"]
        )
    if words[:2] == ["config", "check"]:
        return config_check_main(words[2:])
    parser = build_parser()
    args = parser.parse_args(words)
    args.demo = args.demo or args.demo_traffic  # simulated traffic only ever goes to simulators
    if args.demo and args.local_model:
        parser.error("--demo and --local-model exclude each other")
    try:
        config = resolve_config(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.local_model and config.server.workers > 1 and args.worker_index is None:
        print(
            "config error: --workers with --local-model: each worker would start its own "
            "llama-server on the same port; start llama-server once (scripts/"
            "setup_local_model.sh), point models.local.endpoint at it, and run --workers N "
            "without --local-model",
            file=sys.stderr,
        )
        return 2
    problem = check_workers(config, demo=args.demo)
    if problem is not None:
        print(f"config error: {problem}", file=sys.stderr)
        return 2
    if config.server.workers > 1 and args.worker_index is None:
        if args.demo:
            return _run_demo_workers(words, config)
        from gateway.workers import run_workers

        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(run_workers(words, config.server.workers))
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(
                serve(
                    config,
                    demo=args.demo,
                    local_model=args.local_model,
                    # one worker of a demo fleet sends the simulated traffic, not each
                    demo_traffic=args.demo_traffic and not args.worker_index,
                    demo_endpoints=args.demo_upstreams,
                )
            )
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except LocalModelError as exc:
        print(f"local model: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
    return 0
