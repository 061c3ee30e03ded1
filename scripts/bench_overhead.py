#!/usr/bin/env python3
"""What the gateway costs in latency, throughput and memory, measured against a direct baseline.

Starts a simulated llama.cpp server (no artificial delay) and the gateway (strategy always_local)
as separate processes on 127.0.0.1, then measures, interleaving direct and through-gateway runs
in the same process run:

- added time to first content byte, p50 and p99, at concurrency 1, 16, 64 and 256;
- added latency of non-stream requests, p50 and p99;
- relay throughput: SSE chunks per second through the gateway (pinned to one core) vs direct;
- gateway RSS with 1,000 concurrent open streams, per stream;
- the floor: a bare aiohttp relay on uvloop (`bench_floor.py`), pinned to the gateway's core, and
  the gateway beside it: CPU per Cline-sized streamed request, CPU per relayed chunk, sequential
  added time to first token, and p99 time to first token while 64 other streams flow at 20
  tokens/s, each as a ratio to the relay (`--floor-only` runs just this part).

Run: `.venv/bin/python scripts/bench_overhead.py` (about two minutes on 2 cores; `--quick` for a
smoke run). Figures only: this is not a test and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
from bench_floor import (
    background_streams,
    cline_body,
    cpu_per_chunk,
    cpu_per_request,
    first_content,
    ratio_row,
    spawn_bare_relay,
)
from benchlib import Proc, pct, spawn_gateway, spawn_sim, split_cores, wait_ready

BODY = {
    "model": "bench",
    "messages": [{"role": "user", "content": "Say something."}],
    "stream": True,
}


@dataclass
class Setup:
    sim: Proc
    gateway: Proc
    relay: Proc
    tmp: Path
    cpus: dict[str, set[int]] = field(default_factory=dict)


@contextlib.contextmanager
def processes(loop_impl: str, relay_close: bool = False) -> Iterator[Setup]:
    gateway_cpus, other_cpus = split_cores()
    env = dict(os.environ, GLM_GATEWAY_LOOP=loop_impl)
    env.pop("CEREBRAS_API_KEY", None)
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp_name:
        tmp = Path(tmp_name)
        sim = spawn_sim("llamacpp", "--answer-tokens", "20", cpus=other_cpus, quiet_gc=True)
        config = {
            "models": {
                "local": {"endpoint": sim.url + "/v1", "model": "sim"},
                "cerebras": {"enabled": False, "api_key": ""},
            },
            "routing": {"strategy": "always_local"},
        }
        gateway = spawn_gateway(config, tmp, cpus=gateway_cpus, env=env)
        relay = spawn_bare_relay(sim.url, cpus=gateway_cpus, close=relay_close)
        try:
            yield Setup(sim, gateway, relay, tmp, {"gateway": gateway_cpus or set()})
        finally:
            relay.stop()
            gateway.stop()
            sim.stop()


async def sim_options(session: aiohttp.ClientSession, setup: Setup, **changes: float) -> None:
    async with session.post(setup.sim.url + "/_sim/options", json=changes) as resp:
        resp.raise_for_status()


async def sim_clear(session: aiohttp.ClientSession, setup: Setup) -> None:
    """Empty the simulator's request log, so that its heap (and its GC pauses) stay small."""
    async with session.post(setup.sim.url + "/_sim/clear") as resp:
        resp.raise_for_status()


async def ttft_one(session: aiohttp.ClientSession, base: str) -> float:
    """Seconds from sending the request to the first event carrying answer content."""
    started = time.perf_counter()
    first: float | None = None
    async with session.post(base + "/v1/chat/completions", json=BODY) as resp:
        resp.raise_for_status()
        async for line in resp.content:
            if first is None and line.startswith(b"data: {") and b'"content":"' in line:
                if b'"content":""' not in line:
                    first = time.perf_counter() - started
    assert first is not None
    return first


async def ttft_round(session: aiohttp.ClientSession, base: str, concurrency: int) -> list[float]:
    return list(await asyncio.gather(*(ttft_one(session, base) for _ in range(concurrency))))


async def nonstream_one(session: aiohttp.ClientSession, base: str) -> float:
    started = time.perf_counter()
    async with session.post(base + "/v1/chat/completions", json={**BODY, "stream": False}) as resp:
        resp.raise_for_status()
        await resp.read()
    return time.perf_counter() - started


async def relay_rate(session: aiohttp.ClientSession, base: str, streams: int) -> float:
    """Content chunks per second received over `streams` concurrent long streams."""

    async def one() -> int:
        count = 0
        async with session.post(base + "/v1/chat/completions", json=BODY) as resp:
            async for line in resp.content:
                if line.startswith(b"data: {"):
                    count += 1
        return count

    started = time.perf_counter()
    counts = await asyncio.gather(*(one() for _ in range(streams)))
    return sum(counts) / (time.perf_counter() - started)


@contextlib.asynccontextmanager
async def open_streams(session: aiohttp.ClientSession, base: str, count: int) -> AsyncIterator[int]:
    """Hold `count` streams open (each has received its first event); yield how many opened."""
    ready = 0
    all_ready = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        nonlocal ready
        async with session.post(base + "/v1/chat/completions", json=BODY) as resp:
            async for line in resp.content:
                if line.startswith(b"data: {"):
                    break
            ready += 1
            if ready == count:
                all_ready.set()
            await release.wait()

    tasks = [asyncio.create_task(hold()) for _ in range(count)]
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_ready.wait(), 120)
        yield ready
    finally:
        release.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:8.3f}"


async def run_floor(
    session: aiohttp.ClientSession, setup: Setup, quick: bool
) -> dict[str, dict[str, float]]:
    """The gateway beside the bare relay, same simulator, same core; ratios gateway / relay."""
    direct, gateway, relay = setup.sim.url, setup.gateway.url, setup.relay.url
    paths = {"gateway": (gateway, setup.gateway.pid), "relay": (relay, setup.relay.pid)}
    cline = cline_body()
    out: dict[str, dict[str, float]] = {name: {} for name in paths}
    await sim_clear(session, setup)
    await sim_options(session, setup, answer_tokens=20, tps=0.0)
    for base, _ in paths.values():  # warm up, Cline-sized
        for _ in range(20):
            await first_content(session, base, cline)
    n = 300 if not quick else 40
    for name, (base, pid) in paths.items():
        out[name]["cpu_per_request"] = await cpu_per_request(session, base, pid, cline, n)

    chunks = 20_000 if not quick else 4_000
    await sim_options(session, setup, answer_tokens=chunks)
    for name, (base, pid) in paths.items():
        out[name]["cpu_per_chunk"] = await cpu_per_chunk(session, base, pid, BODY)

    await sim_options(session, setup, answer_tokens=20)
    # Each round measures the simulator alone and then both paths, in an order that alternates
    # (whichever goes first after the direct request meets a different state of the core).
    # Besides the difference of the medians, each path's addition is also read per round, as
    # the median of (path - direct) over rounds: the three samples of a round meet the same
    # moment of the machine, so the slow drift of a shared machine cancels out of it.
    samples: dict[str, list[float]] = {"direct": [], "gateway": [], "relay": []}
    order = list(paths.items())
    for round_ in range(300 if not quick else 40):
        samples["direct"].append(await first_content(session, direct, cline))
        for name, (base, _) in order if round_ % 2 == 0 else order[::-1]:
            samples[name].append(await first_content(session, base, cline))
    for name in paths:
        out[name]["ttft_added_p50"] = pct(samples[name], 50) - pct(samples["direct"], 50)
        out[name]["ttft_added_paired_p50"] = statistics.median(
            path - alone for path, alone in zip(samples[name], samples["direct"], strict=True)
        )

    # 2,000 tokens at 20/s outlast the measurement; each measured stream is dropped
    # after its first content event, so the long answer does not slow the loop.
    # The paths take turns of 50 samples, each turn with its own 64 background streams and
    # the simulator's request log cleared first: the simulator keeps every parsed request body,
    # and once it holds a thousand Cline bodies its full garbage collections stall it for 100
    # to 500 ms, hitting whichever path is measured then (the relay, when it went second).
    await sim_options(session, setup, answer_tokens=2_000, tps=20.0)
    loaded: dict[str, list[float]] = {"direct": [], **{name: [] for name in paths}}
    turns = {"direct": direct, **{name: base for name, (base, _) in paths.items()}}
    for _ in range(4 if not quick else 1):
        for name, base in turns.items():
            await sim_clear(session, setup)
            async with background_streams(session, base, 64, BODY):
                for _ in range(50 if not quick else 30):
                    loaded[name].append(await first_content(session, base, cline))
    for name in paths:
        out[name]["ttft_p99_64"] = pct(loaded[name], 99)
    direct_p99 = pct(loaded["direct"], 99)
    await sim_options(session, setup, answer_tokens=20, tps=0.0)

    g, r = out["gateway"], out["relay"]
    print("\nthe floor: gateway beside a bare aiohttp relay on uvloop (same core, same simulator)")
    print(f"{'figure':<44} {'gateway':>9} {'relay':>9} {'':<3} {'ratio':>7}")
    rows = [
        ("CPU per Cline-sized streamed request", "cpu_per_request", 1e3, "ms"),
        ("CPU per relayed chunk", "cpu_per_chunk", 1e6, "us"),
        ("added TTFT p50, sequential (Cline body)", "ttft_added_p50", 1e3, "ms"),
        ("  the same, median of per-round differences", "ttft_added_paired_p50", 1e3, "ms"),
        ("TTFT p99 while 64 streams flow at 20 tok/s", "ttft_p99_64", 1e3, "ms"),
    ]
    for label, key, scale, unit in rows:
        print(ratio_row(label, g[key], r[key], scale, unit))
    print(f"{'  (direct to the simulator, same load)':<44} {direct_p99 * 1e3:9.3f} {'':>9} ms")
    out["direct"] = {"ttft_p99_64": direct_p99}
    out["ratio"] = {key: g[key] / r[key] if r[key] else float("nan") for _, key, _, _ in rows}
    return out


async def run(args: argparse.Namespace) -> dict[str, object]:
    results: dict[str, object] = {}
    if args.floor_only:
        with processes(args.loop, args.relay_close) as setup:
            connector = aiohttp.TCPConnector(limit=0)
            timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                for proc in (setup.sim, setup.gateway, setup.relay):
                    await wait_ready(proc.url + "/health")
                results["floor"] = await run_floor(session, setup, args.quick)
        return results
    levels = [1, 16, 64, 256] if not args.quick else [1, 16]
    rounds = {1: 300, 16: 40, 64: 12, 256: 4} if not args.quick else {1: 40, 16: 4}
    with processes(args.loop, args.relay_close) as setup:
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await wait_ready(setup.sim.url + "/health")
            await wait_ready(setup.gateway.url + "/health")
            direct, gateway = setup.sim.url, setup.gateway.url
            for _ in range(20):  # warm up both paths and their connection pools
                await ttft_one(session, direct)
                await ttft_one(session, gateway)

            print(
                f"event loop in the gateway: {args.loop}; gateway pinned to cpus "
                f"{sorted(setup.cpus['gateway']) or 'any'}"
            )
            print("\nadded time to first content byte (ms), streaming, always_local")
            print(
                f"{'streams':>8} {'direct p50':>11} {'gw p50':>9} {'added p50':>10} "
                f"{'direct p99':>11} {'gw p99':>9} {'added p99':>10}  samples"
            )
            ttft: dict[int, dict[str, float]] = {}
            for level in levels:
                d: list[float] = []
                g: list[float] = []
                for _ in range(rounds[level]):
                    d += await ttft_round(session, direct, level)
                    g += await ttft_round(session, gateway, level)
                row = {
                    "direct_p50": pct(d, 50),
                    "gateway_p50": pct(g, 50),
                    "direct_p99": pct(d, 99),
                    "gateway_p99": pct(g, 99),
                }
                row["added_p50"] = row["gateway_p50"] - row["direct_p50"]
                row["added_p99"] = row["gateway_p99"] - row["direct_p99"]
                ttft[level] = row
                print(
                    f"{level:>8} {fmt_ms(row['direct_p50']):>11} {fmt_ms(row['gateway_p50']):>9}"
                    f" {fmt_ms(row['added_p50']):>10} {fmt_ms(row['direct_p99']):>11}"
                    f" {fmt_ms(row['gateway_p99']):>9} {fmt_ms(row['added_p99']):>10}"
                    f"  {len(g)}"
                )
            results["ttft"] = ttft

            n = 300 if not args.quick else 40
            d, g = [], []
            for _ in range(n):
                d.append(await nonstream_one(session, direct))
                g.append(await nonstream_one(session, gateway))
            nonstream = {
                "added_p50": pct(g, 50) - pct(d, 50),
                "added_p99": pct(g, 99) - pct(d, 99),
                "direct_p50": pct(d, 50),
                "gateway_p50": pct(g, 50),
            }
            results["nonstream"] = nonstream
            print(
                f"\nnon-stream, sequential: direct p50 {fmt_ms(nonstream['direct_p50'])} ms, "
                f"gateway p50 {fmt_ms(nonstream['gateway_p50'])} ms, added p50 "
                f"{fmt_ms(nonstream['added_p50'])} ms, added p99 "
                f"{fmt_ms(nonstream['added_p99'])} ms"
            )

            tokens = 20_000 if not args.quick else 4_000
            await sim_options(session, setup, answer_tokens=tokens)
            relay: dict[str, float] = {}
            for streams in (1, 4):
                rd = await relay_rate(session, direct, streams)
                rg = await relay_rate(session, gateway, streams)
                relay[f"direct_{streams}"] = rd
                relay[f"gateway_{streams}"] = rg
                print(
                    f"\nrelay, {streams} stream(s) of {tokens} chunks: direct {rd:,.0f} chunks/s, "
                    f"through the gateway {rg:,.0f} chunks/s (ratio {rg / rd:.2f})"
                )
            results["relay"] = relay

            count = 1000 if not args.quick else 100
            await sim_options(session, setup, answer_tokens=100, tps=0.2)
            await asyncio.sleep(0.5)
            before = setup.gateway.rss_kib()
            async with open_streams(session, gateway, count) as opened:
                await asyncio.sleep(1.0)
                during = setup.gateway.rss_kib()
            per_stream = (during - before) / max(1, opened)
            results["memory"] = {
                "streams": opened,
                "rss_before_kib": before,
                "rss_during_kib": during,
                "per_stream_kib": per_stream,
            }
            print(
                f"\nmemory: gateway RSS {before / 1024:.1f} MiB idle, {during / 1024:.1f} MiB "
                f"with {opened} open streams: {per_stream:.1f} KiB per stream"
            )
            await sim_options(session, setup, answer_tokens=20, tps=0.0)
            await wait_ready(setup.relay.url + "/health")
            results["floor"] = await run_floor(session, setup, args.quick)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="event loop of the gateway process (auto: uvloop when installed)",
    )
    parser.add_argument(
        "--floor-only", action="store_true", help="only the gateway beside the bare relay"
    )
    parser.add_argument(
        "--relay-close",
        action="store_true",
        help="the bare relay sends Connection: close upstream, as the gateway does to llama.cpp",
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    started = time.monotonic()
    results = asyncio.run(run(args))
    print(f"\nfinished in {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_bytes(
            orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
