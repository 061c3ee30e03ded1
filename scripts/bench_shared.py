#!/usr/bin/env python3
"""Shared state's cost: admission latency with and without Redis, Redis work per request.

Starts its own redis-server on a free 127.0.0.1 port and simulated upstreams, then:
1. admission latency: 3,000 sequential admit + release of one Cerebras call through the gate,
   embedded vs Redis (check-and-reserve Lua script, one round trip), p50/p99;
2. Redis work per request: 300 streamed requests through a gateway (adaptive_cerebras, budget
   on), the commands Redis processed and the Redis CPU they took (INFO), per request; from that,
   how many requests/s one Redis core serves, i.e. how many replicas at a given rate.
Run: `.venv/bin/python scripts/bench_shared.py` (about 20 s). Figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_overhead import relay_rate  # noqa: E402
from benchlib import spawn_gateway, spawn_sim, wait_ready  # noqa: E402

from gateway.config import parse_config  # noqa: E402
from gateway.dev.sim import SimOptions, running_sim  # noqa: E402
from gateway.http.app import create_app  # noqa: E402
from gateway.quota.gate import RateLimitGate  # noqa: E402
from gateway.state import open_store  # noqa: E402

KEY = "csk-bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[max(0, int(len(values) * p / 100) - 1)] * 1e6


def config(tmp: str, local: str, cerebras: str, redis_url: str) -> Any:
    return parse_config(
        {
            "models": {
                "local": {"endpoint": local},
                "cerebras": {"endpoint": cerebras, "api_key": KEY},
            },
            "routing": {"strategy": "adaptive_cerebras"},
            "budget": {"daily_usd": 1000.0},
            "state": {"redis_url": redis_url} if redis_url else {},
            "storage": {"ledger_path": f"{tmp}/l.db", "log_path": f"{tmp}/g.log"},
        },
        env={},
    )


async def admission(cfg: Any, n: int = 3000) -> list[float]:
    from gateway.upstreams import build_upstream

    store = open_store(cfg.state, "bench")
    async with aiohttp.ClientSession() as session:
        ups = {
            name: build_upstream(name, cfg.models[name], session, max_event_bytes=1 << 20)
            for name in cfg.models
        }
        gate = RateLimitGate(cfg, ups, state=store)
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 64}
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            ticket = await gate.admit("cerebras", body)
            times.append(time.perf_counter() - t0)
            ticket.release()  # type: ignore[union-attr]
    await store.close()
    return times


async def main(workers_only: bool = False) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("no redis-server: run scripts/setup_redis.sh")
    port = free_port()
    redis_proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    await asyncio.sleep(0.3)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local_opts = SimOptions(profile="llamacpp", ttft=0.0, tps=5000.0, answer_tokens=20)
            cerebras_opts = SimOptions(
                profile="cerebras", ttft=0.0, tps=5000.0, answer_tokens=20, api_key=KEY
            )
            if workers_only:
                await workers_scaling(Path(tmp), url)
                return
            async with running_sim(local_opts) as local, running_sim(cerebras_opts) as cerebras:
                for name, redis_url in (("embedded", ""), ("redis", url)):
                    times = await admission(config(tmp, local.url, cerebras.url, redis_url))
                    print(
                        f"admission {name:8s}: p50 {pct(times, 50):7.1f} us   "
                        f"p99 {pct(times, 99):7.1f} us"
                    )
                await requests_through_gateway(tmp, local.url, cerebras.url, url)
            await workers_scaling(Path(tmp), url)
    finally:
        redis_proc.kill()
        redis_proc.wait()


async def requests_through_gateway(tmp: str, local: str, cerebras: str, url: str) -> None:
    from aiohttp.test_utils import TestServer

    client = aioredis.Redis.from_url(url)
    app = create_app(config(tmp, local, cerebras, url))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    n = 300
    body = {"model": "x", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with aiohttp.ClientSession() as session:
        before = await client.info()
        for _ in range(n):
            async with session.post(str(server.make_url("/v1/chat/completions")), json=body) as r:
                await r.read()
        await asyncio.sleep(0.2)  # background publications land
        after = await client.info()
    await server.close()
    await client.aclose()
    commands = (after["total_commands_processed"] - before["total_commands_processed"]) / n
    cpu = (
        after["used_cpu_user"] + after["used_cpu_sys"]
        - before["used_cpu_user"] - before["used_cpu_sys"]
    ) / n  # fmt: skip
    print(f"redis commands per request: {commands:.1f}; redis CPU per request: {cpu * 1e6:.0f} us")
    capacity = 1 / cpu if cpu > 0 else float("inf")
    print(
        f"one Redis core: ~{capacity:,.0f} requests/s; at 450 requests/s per replica (one "
        f"gateway core) that is ~{capacity / 450:.0f} replicas"
    )


SHORT = {"model": "x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


async def requests_rate(base: str, concurrency: int = 64, seconds: float = 5.0) -> float:
    """Short non-stream requests per second with `concurrency` of them in flight."""
    done = 0
    # One connection per client task: SO_REUSEPORT spreads connections, not requests.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with s.post(base + "/v1/chat/completions", json=SHORT) as resp:
                    await resp.read()
                    done += resp.status == 200

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


async def workers_scaling(tmp: Path, redis_url: str) -> None:
    sim = spawn_sim("llamacpp", "--ttft", "0", "--tps", "0", "--answer-tokens", "2000")
    cerebras = spawn_sim("cerebras", "--api-key", KEY)
    rates: dict[int, tuple[float, float]] = {}
    try:
        await wait_ready(sim.url + "/health")
        for workers in (1, 2, 1, 2):  # interleaved: other load on the machine hits both alike
            workdir = tmp / f"workers{workers}-{len(rates)}"
            workdir.mkdir()
            gateway = spawn_gateway(
                {
                    "models": {
                        "local": {"endpoint": sim.url + "/v1"},
                        "cerebras": {"endpoint": cerebras.url + "/v1", "api_key": KEY},
                    },
                    "routing": {"strategy": "always_local"},
                    "server": {"workers": workers},
                    "state": {"redis_url": redis_url, "timeout_ms": 500},
                },
                workdir,
            )
            try:
                await wait_ready(gateway.url + "/health")
                async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0)
                ) as session:
                    await relay_rate(session, gateway.url, 4)  # warm-up
                    chunks = max([await relay_rate(session, gateway.url, 16) for _ in range(3)])
                reqs = await requests_rate(gateway.url)
            finally:
                gateway.stop()
            best = rates.get(workers, (0.0, 0.0))
            rates[workers] = (max(best[0], chunks), max(best[1], reqs))
            print(f"workers {workers}: relay {chunks:,.0f} chunks/s, {reqs:,.0f} requests/s")
    finally:
        sim.stop()
        cerebras.stop()
    (c1, r1), (c2, r2) = rates[1], rates[2]
    print(
        f"best of two: 1 worker {c1:,.0f} chunks/s, {r1:,.0f} requests/s; 2 workers "
        f"{c2:,.0f} chunks/s, {r2:,.0f} requests/s; scaling x{c2 / c1:.2f} (relay), "
        f"x{r2 / r1:.2f} (requests) on {os.cpu_count()} cores shared with client, simulator "
        "and Redis"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers-only", action="store_true", help="only part 3 (workers)")
    asyncio.run(main(parser.parse_args().workers_only))
