"""`glm-gateway doctor [--config F] [--json]` (also `glm-gateway --doctor`): check a setup and exit.

Exit status: 0 when nothing failed (warnings alone pass), 1 when an enabled upstream cannot serve
(down, refused, key rejected, still loading after the wait), 2 for an invalid config.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence

from gateway.config import ConfigError, GatewayConfig, command_parser, config_path
from gateway.config_check import load_checked_config
from gateway.dev.demo import DEMO_API_KEY, demo_upstreams
from gateway.doctor.options import LOADING_WAIT_S, PROBE_TIMEOUT_S, DoctorOptions
from gateway.doctor.render import render_json, render_text
from gateway.doctor.report import Report
from gateway.doctor.runner import config_failure, run_checks
from gateway.loop import loop_factory


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "glm-gateway doctor",
        "Check the config and both upstreams (a few tokens each), print a report and exit: 0 "
        "all serving, 1 an enabled upstream cannot serve, 2 invalid config.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="check against the demo's simulated llama.cpp and Cerebras (as --demo serves)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=LOADING_WAIT_S,
        metavar="SECONDS",
        help="how long to wait for a llama-server still loading its model (default %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=PROBE_TIMEOUT_S,
        metavar="SECONDS",
        help="longest wait for any one call (default %(default)s)",
    )
    return parser


def _secrets(config: GatewayConfig | None) -> list[str]:
    """Every key the output must not contain, configured or in the environment."""
    found = [os.environ.get("CEREBRAS_API_KEY", "")]
    found += os.environ.get("GATEWAY_API_KEYS", "").split(",")
    if config is not None:
        found += config.secrets()
    return [s.strip() for s in found if s.strip()]


@contextlib.contextmanager
def _quiet_gateway_logs() -> Iterator[None]:
    """The in-process gateway logs each request; with no logging set up, Python would print
    its warnings to stderr in the middle of the report."""
    logger = logging.getLogger("gateway")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


async def amain(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the checks, print the report to stdout; return the exit status."""
    args = build_parser().parse_args(argv)
    options = DoctorOptions(loading_wait=max(0.0, args.wait), probe_timeout=max(0.1, args.timeout))
    path = config_path(args.config)
    config: GatewayConfig | None = None
    try:
        config = load_checked_config(path)
    except ConfigError as exc:
        report = config_failure(exc, str(path) if path is not None else "<defaults>")
    else:
        with _quiet_gateway_logs():
            report = await _run(config, options, demo=args.demo)
    secrets = _secrets(config) + ([DEMO_API_KEY] if args.demo else [])
    print(render_json(report, secrets) if args.json else render_text(report, secrets), flush=True)
    return report.exit_status


async def _run(config: GatewayConfig, options: DoctorOptions, *, demo: bool) -> Report:
    if not demo:
        return await run_checks(config, options)
    # The demo announces its simulators on stdout, which belongs to the report (and its JSON).
    with contextlib.redirect_stdout(sys.stderr):
        async with demo_upstreams(config) as demo_config:
            return await run_checks(demo_config, options)


def main(argv: Sequence[str] | None = None) -> int:
    """The `glm-gateway doctor` entry point."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(amain(argv))
