#!/usr/bin/env python3
"""A burst of 50 concurrent streaming requests against a small Cerebras quota, three ways.

Simulated upstreams on 127.0.0.1: Cerebras with Cerebras' free tier (5 requests
and 30,000 tokens per minute, reservations of prompt + max_completion_tokens, unused tokens
refunded when an answer ends; fast: 0.15 s to first token, 1,000 tokens/s) and a local llama.cpp
(0.3 s to first token, 50 tokens/s). Each scenario starts from a fresh quota and a fresh gateway:

- always_cerebras without fallback (`routing.fallback.to_local: false`): "fails on limit", as
  the original project describes it; it skips predictive admission, so the burst meets the quota
  as 429s;
- reactive fallback: always_cerebras as shipped, falling back to local only after a 429;
- adaptive_cerebras with the plan configured (`rate_limits.cerebras`): predicted from the first
  request on, no call is made that the quota would refuse;
- adaptive_cerebras without a plan, after one warm-up request (not counted) taught it the headers.

Printed per scenario: client-visible 429s, the share of answers Cerebras served, the 429s
Cerebras itself sent (calls wasted), and p50/p95 of the time until each client's response ended.
Run: `.venv/bin/python scripts/bench_ratelimit.py` (about 15 s). Figures only; asserts nothing.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.config import parse_config  # noqa: E402
from gateway.dev.sim import SimOptions, SimServer, running_sim  # noqa: E402
from gateway.http.app import create_app  # noqa: E402

HOST = "127.0.0.1"
BURST = 50
KEY = "csk-bench-not-a-real-key"
PLAN = {"requests_per_minute": 5, "tokens_per_minute": 30_000}


@dataclass(frozen=True)
class Scenario:
    label: str
    strategy: str
    sections: dict[str, Any]
    warm_up: bool = False


SCENARIOS = (
    Scenario(
        "always_cerebras (no fallback)",
        "always_cerebras",
        {"routing": {"fallback": {"to_local": False}}},
    ),
    Scenario("reactive fallback (after a 429)", "always_cerebras", {}),
    Scenario(
        "adaptive_cerebras (plan known)", "adaptive_cerebras", {"rate_limits": {"cerebras": PLAN}}
    ),
    Scenario("adaptive_cerebras (headers only)", "adaptive_cerebras", {}, warm_up=True),
)


@dataclass
class Outcome:
    status: int
    model: str | None
    seconds: float


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


async def one_request(session: aiohttp.ClientSession, url: str, i: int) -> Outcome:
    body = {
        "model": "glm-token-saver",
        "messages": [{"role": "user", "content": f"Question number {i}: what is new?"}],
        "stream": True,
    }
    started = time.perf_counter()
    async with session.post(url, json=body) as resp:
        raw = await resp.read()
    seconds = time.perf_counter() - started
    model = None
    if resp.status == 200:
        events = [e for e in raw.split(b"\n\n") if e.startswith(b"data: {")]
        model = orjson.loads(events[-1][len(b"data: ") :]).get("model_used")
    return Outcome(resp.status, model, seconds)


async def run(scenario: Scenario, tmp: Path) -> dict[str, Any]:
    local_options = SimOptions(profile="llamacpp", ttft=0.3, tps=50, answer_tokens=64)
    cerebras_options = SimOptions(
        profile="cerebras",
        ttft=0.15,
        tps=1000,
        answer_tokens=64,
        api_key=KEY,
        quota_requests_per_minute=PLAN["requests_per_minute"],
        quota_tokens_per_minute=PLAN["tokens_per_minute"],
    )
    async with (
        running_sim(local_options, HOST) as local,
        running_sim(cerebras_options, HOST) as cerebras,
    ):
        data: dict[str, Any] = {
            "models": {
                "local": {"endpoint": local.url, "model": "bench-local"},
                "cerebras": {"endpoint": cerebras.url, "api_key": KEY},
            },
            "routing": {"strategy": scenario.strategy},
            "storage": {
                "ledger_path": str(tmp / f"{scenario.label.split()[0]}-{time.time_ns()}.db"),
                "log_path": str(tmp / "gateway.log"),
            },
        }
        for key, value in scenario.sections.items():
            data[key] = {**data.get(key, {}), **value}
        config = parse_config(data, source="<bench>", env={})
        runner = web.AppRunner(create_app(config), handler_cancellation=True, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0)
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://{HOST}:{port}/v1/chat/completions"
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                if scenario.warm_up:
                    await one_request(session, url, -1)
                sent_before = len(cerebras.requests)
                outcomes = await asyncio.gather(
                    *(one_request(session, url, i) for i in range(BURST))
                )
        finally:
            await runner.cleanup()
        return summarize(outcomes, cerebras, sent_before)


def summarize(outcomes: list[Outcome], cerebras: SimServer, sent_before: int) -> dict[str, Any]:
    calls = cerebras.requests[sent_before:]
    answered = [o for o in outcomes if o.status == 200]
    return {
        "client_429s": sum(o.status == 429 for o in outcomes),
        "other_errors": sum(o.status not in (200, 429) for o in outcomes),
        "cerebras_share": sum(o.model == "cerebras" for o in answered) / len(outcomes),
        "upstream_429s": sum(c.status == 429 for c in calls),
        "p50": percentile([o.seconds for o in outcomes], 50),
        "p95": percentile([o.seconds for o in outcomes], 95),
    }


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    print(
        f"burst of {BURST} concurrent streaming requests; simulated Cerebras quota "
        f"{PLAN['requests_per_minute']} requests/min, {PLAN['tokens_per_minute']:,} tokens/min; "
        "threshold 20 %, completion cap 8192\n"
    )
    header = f"{'scenario':<36}{'client 429s':>12}{'Cerebras share':>16}{'Cerebras 429s':>15}"
    header += f"{'p50 s':>8}{'p95 s':>8}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="bench-ratelimit-") as tmp_name:
        for scenario in SCENARIOS:
            r = await run(scenario, Path(tmp_name))
            errors = f"  ({r['other_errors']} other errors)" if r["other_errors"] else ""
            print(
                f"{scenario.label:<36}{r['client_429s']:>12}{r['cerebras_share']:>16.0%}"
                f"{r['upstream_429s']:>15}{r['p50']:>8.2f}{r['p95']:>8.2f}{errors}"
            )


if __name__ == "__main__":
    asyncio.run(main())
