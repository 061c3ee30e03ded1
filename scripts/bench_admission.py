#!/usr/bin/env python3
"""Admission cost under a burst: microseconds per `admit` while N calls are in flight.

One gate over a Cerebras upstream whose headers reported a large token window (so every
admission is checked against it, and nothing is refused). A burst admits N calls without
releasing any, so the k-th admission sees k-1 reservations in flight; then all are released.
Printed per N (10, 100, 1000): the mean cost of one admission over the burst, best of several
rounds (on a shared machine the best round is the least disturbed one). The prompt estimate is
memoised per request, as in the app, so the figure is the gate's own work. Embedded state, no
sockets.
Run: `.venv/bin/python scripts/bench_admission.py` (a few seconds). Figures only; asserts nothing.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.accounting.tokens import once  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from gateway.quota.gate import RateLimitGate  # noqa: E402
from gateway.upstreams import build_upstream  # noqa: E402

BURSTS = (10, 100, 1000)
ADMISSIONS_PER_N = 2000  # rounds of each burst size: at least 5, about this many admissions
WINDOW = {
    "x-ratelimit-limit-tokens-minute": "1e12",
    "x-ratelimit-remaining-tokens-minute": "1e12",
    "x-ratelimit-reset-tokens-minute": "60",
}


def config() -> Any:
    return parse_config(
        {
            "models": {
                "local": {"endpoint": "http://127.0.0.1:9/v1"},
                "cerebras": {"endpoint": "http://127.0.0.1:9/v1", "api_key": "csk-bench"},
            },
            "routing": {"strategy": "adaptive_cerebras"},
            "storage": {"ledger_path": "/dev/null", "log_path": "/dev/null"},
        },
        env={},
    )


async def burst_cost(gate: RateLimitGate, n: int) -> float:
    """Mean seconds per admission over a burst of `n` admissions held until the burst ends."""
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 64}
    estimate = once(body)
    tickets = []
    started = time.perf_counter()
    for _ in range(n):
        tickets.append(await gate.admit("cerebras", body, estimate))
    elapsed = time.perf_counter() - started
    for ticket in tickets:
        ticket.release()  # type: ignore[union-attr]
    return elapsed / n


async def main() -> None:
    cfg = config()
    async with aiohttp.ClientSession() as session:
        upstreams = {
            name: build_upstream(name, cfg.models[name], session, max_event_bytes=1 << 20)
            for name in cfg.models
        }
        upstreams["cerebras"].watcher.observe(WINDOW)
        gate = RateLimitGate(cfg, upstreams)
        for n in BURSTS:
            rounds = max(5, ADMISSIONS_PER_N // n)
            best = min([await burst_cost(gate, n) for _ in range(rounds)])
            print(f"burst of {n:5d} in flight: {best * 1e6:8.2f} us per admit")


if __name__ == "__main__":
    asyncio.run(main())
