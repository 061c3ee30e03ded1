"""Run every check against one config: the config itself, both upstreams side by side, then the
original project's test prompts through an in-process gateway."""

from __future__ import annotations

import asyncio
import re

from gateway.config import ConfigError, GatewayConfig, mask_url
from gateway.doctor.cerebras import CerebrasDoctor
from gateway.doctor.local import LocalDoctor
from gateway.doctor.options import DoctorOptions
from gateway.doctor.prompts import check_prompts, skipped_prompts
from gateway.doctor.report import Check, Report, fail, ok
from gateway.upstreams import build_upstream
from gateway.upstreams.client import open_session

# ConfigError wording: "<file>: <dotted.key>: <why>".
_KEYED = re.compile(r"^(?P<source>.+?): (?P<key>[A-Za-z_][\w.]*): ")


def config_failure(error: ConfigError, source: str) -> Report:
    """The report of an invalid config: one failed check naming the key."""
    message = str(error)
    match = _KEYED.match(message)
    fix = (
        f"correct {match['key']} in {match['source']}"
        if match
        else "correct the config file (see the message), or pass another with --config"
    )
    return Report(source, [fail("config", message, fix)], config_error=True)


def config_ok(config: GatewayConfig) -> Check:
    states = ", ".join(
        f"{name} {'at ' + mask_url(m.endpoint) if m.enabled else 'disabled'}"
        for name, m in config.models.items()
    )
    return ok(
        "config",
        f"{config.source} is valid: strategy {config.routing.strategy}; {states}",
        strategy=config.routing.strategy,
    )


async def run_checks(config: GatewayConfig, options: DoctorOptions | None = None) -> Report:
    """Every check against a validated `config`; never raises for an upstream's failure."""
    options = options or DoctorOptions()
    report = Report(config.source, [config_ok(config)])
    # A fresh connection per probe: llama-server closes a connection after a streamed answer
    # although it advertises keep-alive, and a reused one would fail the next probe.
    async with open_session(pooled=False) as session:
        events = config.server.max_event_bytes
        local = LocalDoctor(
            build_upstream("local", config.local, session, max_event_bytes=events),
            config,
            options,
        )
        cerebras = CerebrasDoctor(
            build_upstream("cerebras", config.cerebras, session, max_event_bytes=events),
            config,
            options,
        )
        local_checks, cerebras_checks = await asyncio.gather(local.run(), cerebras.run())
    report.checks += local_checks + cerebras_checks
    if local.serving or cerebras.serving:
        report.checks += await check_prompts(config, options)
    else:
        report.checks += skipped_prompts("no upstream can serve")
    return report
