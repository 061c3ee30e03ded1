#!/usr/bin/env python3
"""Soak: many concurrent streaming clients through the gateway, with faults injected upstream.

Starts a simulated llama.cpp and a simulated Cerebras server and the gateway as processes on
127.0.0.1, then runs `--clients` concurrent clients for `--duration` seconds over every registered
strategy (streamed and non-streamed requests), while a fault injector keeps breaking the
upstreams (cuts, stalls, malformed events, 429s, 500s, slow first tokens ...). It prints requests
served, outcomes by kind, and the gateway's RSS and open file descriptors at start and end.

Expected outcomes are complete answers, one error event after content was sent, and OpenAI-shaped
HTTP errors; anything else (a stream ending without [DONE] or error event, a non-JSON error, a
connection reset, a client timeout) counts as unexpected. Targets: zero unexpected outcomes, RSS
growth under 10 %, file descriptors back to their baseline.

`--mode distinct` plays distinct agent conversations instead (scripts/conversations.py): every
client starts conversation after conversation, each with a new ~6 KB system prompt naming its own
workspace and `--turns` turns, through `smart_routing` (or `--strategies`), as a team's Cline and
Claude Code workspaces do. Every per-conversation structure must then stay within its bound: the
script prints the `/stats` memory block at the end and the estimated memory per remembered
conversation.

Run: `.venv/bin/python scripts/soak.py` (10 minutes by default; `--duration 60` for a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from benchlib import Proc, spawn_gateway, spawn_sim, wait_ready
from conversations import converse

CEREBRAS_KEY = "soak-test-key-not-secret"
# (fault, params, which upstream may show it): llama.cpp never answers 429, Cerebras never loads.
FAULTS: list[tuple[str, dict[str, object], str]] = [
    ("http_500", {}, "any"),
    ("http_429", {"reset_seconds": 2}, "cerebras"),
    ("http_429_bare", {}, "cerebras"),
    ("http_503_loading", {}, "local"),
    ("drop", {}, "any"),
    ("slow_first_token", {"delay": 8.0}, "any"),
    ("stall", {"after_chunks": 4, "seconds": 8.0}, "any"),
    ("cut", {"after_chunks": 4}, "any"),
    ("malformed_event", {"after_chunks": 3}, "any"),
    ("garbage", {"after_chunks": 3}, "any"),
    ("huge_event", {"size": 1_200_000}, "any"),
    ("error_event", {"after_chunks": 3}, "any"),
]


# `--bounds small` fills every per-conversation structure within a short warm-up, so that the
# run shows whether memory stays flat once the bounds hold (the defaults take ~30,000 requests).
BOUNDS: dict[str, dict[str, Any]] = {
    "default": {},
    "small": {
        "escalation": {"max_conversations": 1000, "max_turns": 3000, "fingerprint_cache": 64},
        "learn": {"remember_requests": 1000},
    },
}


async def one_request(
    session: aiohttp.ClientSession, url: str, strategy: str, stream: bool, n: int
) -> str:
    """Send one request and classify how it ended."""
    body = {
        "model": strategy,
        "messages": [{"role": "user", "content": f"Soak question {n}: explain step {n % 7}."}],
        "stream": stream,
        "stream_options": {"include_usage": True} if stream else None,
        "max_tokens": 60,
    }
    body = {k: v for k, v in body.items() if v is not None}
    try:
        async with session.post(url + "/v1/chat/completions", json=body) as resp:
            raw = await resp.read()
            if resp.status != 200:
                error = orjson.loads(raw).get("error", {})
                if {"message", "type", "param", "code"} <= set(error):
                    return f"http_{resp.status}"
                return f"unexpected: HTTP {resp.status} without OpenAI error body"
            if not stream:
                return (
                    "ok"
                    if orjson.loads(raw).get("object") == "chat.completion"
                    else ("unexpected: non-stream body")
                )
            events = [e for e in raw.split(b"\n\n") if e and not e.startswith(b":")]
            if not events:
                return "unexpected: empty stream"
            last = events[-1]
            if last == b"data: [DONE]":
                return "ok"
            if last.startswith(b"data: {") and b'"error"' in last:
                return "error_event"
            return "unexpected: stream ended without [DONE] or error event"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"unexpected: {type(exc).__name__}"
    except orjson.JSONDecodeError:
        return "unexpected: invalid JSON"


async def injector(
    session: aiohttp.ClientSession, sims: dict[str, Proc], stop: asyncio.Event, rng: random.Random
) -> Counter[str]:
    injected: Counter[str] = Counter()
    while not stop.is_set():
        name, params, where = rng.choice(FAULTS)
        sim = sims[where] if where != "any" else rng.choice(list(sims.values()))
        async with session.post(sim.url + "/_sim/inject", json={"fault": name, **params}) as resp:
            if resp.status == 200:
                injected[name] += 1
        try:
            await asyncio.wait_for(stop.wait(), 0.25)
        except TimeoutError:
            pass
    return injected


async def _no_faults() -> Counter[str]:
    return Counter()


LoadResult = tuple[Counter[str], Counter[str], Counter[str], float, list[int]]


async def load(
    session: aiohttp.ClientSession,
    gateway: Proc,
    sims: dict[str, Proc],
    strategies: list[str],
    args: argparse.Namespace,
    duration: float,
    rng: random.Random,
) -> LoadResult:
    """`args.clients` clients and the fault injector for `duration` seconds."""
    outcomes: Counter[str] = Counter()
    by_strategy: Counter[str] = Counter()
    rss_series: list[int] = []
    stop = asyncio.Event()
    deadline = time.monotonic() + duration
    counter = iter(range(10**9))

    async def client() -> None:
        while time.monotonic() < deadline:
            strategy = rng.choice(strategies)
            if args.mode == "distinct":
                for outcome in await converse(
                    session,
                    gateway.url,
                    next(args.conversation_ids),  # one series over warm-up and run
                    turns=args.turns,
                    prompt_bytes=args.prompt_bytes,
                    model=strategy,
                    rng=rng,
                ):
                    outcomes[outcome] += 1
                    by_strategy[strategy] += 1
                continue
            stream = rng.random() < 0.8
            outcome = await one_request(session, gateway.url, strategy, stream, next(counter))
            outcomes[outcome] += 1
            by_strategy[strategy] += 1

    async def sample_rss() -> None:
        while not stop.is_set():
            rss_series.append(gateway.rss_kib())
            try:
                await asyncio.wait_for(stop.wait(), 60)
            except TimeoutError:
                pass

    started = time.monotonic()
    inject_task = asyncio.create_task(
        injector(session, sims, stop, rng) if args.faults else _no_faults()
    )
    sampler = asyncio.create_task(sample_rss())
    await asyncio.gather(*(client() for _ in range(args.clients)))
    stop.set()
    injected = await inject_task
    await sampler
    return outcomes, by_strategy, injected, time.monotonic() - started, rss_series


async def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    args.conversation_ids = itertools.count()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        local = spawn_sim("llamacpp", "--tps", "300", "--answer-tokens", "40")
        cerebras = spawn_sim(
            "cerebras", "--tps", "2000", "--answer-tokens", "40", "--api-key", CEREBRAS_KEY
        )
        config = {
            "models": {
                "local": {"endpoint": local.url + "/v1", "model": "sim-local"},
                "cerebras": {"endpoint": cerebras.url + "/v1", "api_key": CEREBRAS_KEY},
            },
            "routing": {"strategy": "smart_routing", **BOUNDS[args.bounds]},
            "timeouts": {"connect": 2, "first_token": 3, "idle": 3},
            "limits": {"max_concurrent_requests": 1024},
            "storage": {"log_level": "INFO", **({"log_path": args.log} if args.log else {})},
        }
        gateway = spawn_gateway(config, Path(tmp))
        try:
            for proc in (local, cerebras, gateway):
                await wait_ready(proc.url + "/health")
            timeout = aiohttp.ClientTimeout(total=60)

            def new_session() -> aiohttp.ClientSession:
                return aiohttp.ClientSession(
                    timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
                )

            async with new_session() as session:
                async with session.get(gateway.url + "/v1/models") as resp:
                    models = (await resp.json())["data"]
            strategies = [m["id"] for m in models if m["id"] != "glm-token-saver"]
            if args.mode == "distinct" and not args.strategies:
                strategies = ["smart_routing"]
            if args.strategies:
                strategies = [s for s in strategies if s in args.strategies.split(",")]
            sims = {"local": local, "cerebras": cerebras}
            rss_cold, fds_cold = gateway.rss_kib(), gateway.open_fds()
            # Warm-up under the same load, so that the baseline includes the working set of
            # `--clients` concurrent streams and growth after it means a leak, not a warm cache.
            async with new_session() as session:
                await load(session, gateway, sims, strategies, args, args.warmup, rng)
                warmed = args.warmup
                # --fill: warm up until every bounded structure is full (the steady state of a
                # gateway that has run a while), a minute at a time.
                seen: dict[str, int] = {}
                while (
                    args.fill and warmed < args.fill_max and not await full(session, gateway, seen)
                ):
                    await load(session, gateway, sims, strategies, args, 60.0, rng)
                    warmed += 60.0
            print(f"warm-up: {warmed:.0f} s")
            await asyncio.sleep(args.settle)
            rss_start, fds_start = gateway.rss_kib(), gateway.open_fds()
            async with new_session() as session:
                result = await load(session, gateway, sims, strategies, args, args.duration, rng)
            # Idle pooled keep-alive connections close 15-30 s after their last use.
            await asyncio.sleep(args.settle)
            rss_end, fds_end = gateway.rss_kib(), gateway.open_fds()
            async with new_session() as session:
                async with session.get(gateway.url + "/stats") as resp:
                    memory = (await resp.json()).get("memory", {})
        finally:
            gateway.stop()
            local.stop()
            cerebras.stop()

    outcomes, by_strategy, injected, elapsed, rss_series = result
    total = sum(outcomes.values())
    unexpected = sum(v for k, v in outcomes.items() if k.startswith("unexpected"))
    growth = (rss_end - rss_start) / rss_start * 100 if rss_start else float("nan")
    print(
        f"soak ({args.mode}, bounds {args.bounds}): {args.clients} clients for {elapsed:.0f} s, "
        f"{total} requests ({total / elapsed:.1f}/s)"
    )
    print("outcomes:", dict(sorted(outcomes.items())))
    print("by strategy:", dict(sorted(by_strategy.items())))
    print("faults injected:", dict(sorted(injected.items())))
    print(
        f"gateway RSS: {rss_start / 1024:.1f} MiB at start, {rss_end / 1024:.1f} MiB at end "
        f"({growth:+.1f} %)"
    )
    print(
        f"gateway RSS before the {warmed:.0f} s warm-up: {rss_cold / 1024:.1f} MiB; "
        "every minute of the run (MiB): " + ", ".join(f"{kib / 1024:.1f}" for kib in rss_series)
    )
    print(
        f"gateway open file descriptors: {fds_start} at start, {fds_end} at end "
        f"({fds_cold} before the warm-up)"
    )
    if memory:
        print("gateway /stats memory at the end (size/bound, estimated bytes):")
        for name, block in memory.items():
            held = f", {block['bytes'] / 1024:.0f} KiB" if block.get("bytes") is not None else ""
            print(f"  {name}: {block['size']}/{block['bound']}{held}")
        print_per_conversation(memory, args.turns)
    ok = unexpected == 0 and growth < 10 and fds_end <= fds_start
    print(
        f"targets (0 unexpected, RSS growth < 10 %, fds back to baseline): "
        f"{'met' if ok else 'NOT met'}"
    )
    return 0 if ok else 1


async def full(session: aiohttp.ClientSession, gateway: Proc, seen: dict[str, int]) -> bool:
    """Whether every structure that evicts (an LRU) holds as many entries as its bound, or no
    more than at the previous call (`seen`: the sizes then; a mode may never fill one)."""
    async with session.get(gateway.url + "/stats") as resp:
        memory = (await resp.json()).get("memory", {})
    lrus = {name: b for name, b in memory.items() if "evicted" in b}
    done = all(b["size"] >= b["bound"] or b["size"] <= seen.get(n, -1) for n, b in lrus.items())
    seen.update({name: b["size"] for name, b in lrus.items()})
    return bool(lrus) and done


def print_per_conversation(memory: dict[str, dict[str, Any]], turns: int) -> None:
    """Estimated bytes per entry of each per-conversation structure, and per conversation
    remembered with `turns` answers: its row, its cached system prompt state, and per answer
    the turn row and the router's remembered features."""
    per: dict[str, float] = {}
    for name in ("conversations", "fingerprint_cache", "turns", "router_remembered"):
        block = memory.get(name, {})
        if block.get("size") and block.get("bytes") is not None:
            per[name] = block["bytes"] / block["size"]
    if len(per) < 4:
        return
    print("estimated bytes per entry: " + ", ".join(f"{k} {v:.0f}" for k, v in per.items()))
    whole = (
        per["conversations"]
        + per["fingerprint_cache"]
        + turns * (per["turns"] + per["router_remembered"])
    )
    print(f"memory per remembered conversation of {turns} turns (estimated): {whole:.0f} B")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--clients", type=int, default=128)
    parser.add_argument(
        "--warmup",
        type=float,
        default=60.0,
        help="seconds of the same load before the baseline is read",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--settle",
        type=float,
        default=35.0,
        help="seconds to wait after the load before reading RSS and fds",
    )
    parser.add_argument("--strategies", help="comma-separated subset (default: all registered)")
    parser.add_argument("--log", help="write the gateway's log here (INFO)")
    parser.add_argument(
        "--mode",
        choices=("mixed", "distinct"),
        default="mixed",
        help="mixed: single requests over every strategy; distinct: distinct conversations",
    )
    parser.add_argument("--turns", type=int, default=3, help="turns per conversation (distinct)")
    parser.add_argument(
        "--prompt-bytes", type=int, default=6000, help="system prompt size (distinct)"
    )
    parser.add_argument(
        "--bounds",
        choices=sorted(BOUNDS),
        default="default",
        help="the gateway's memory bounds: its defaults, or small ones a warm-up fills",
    )
    parser.add_argument(
        "--fill",
        action="store_true",
        help="extend the warm-up until every bounded structure is full (see /stats memory)",
    )
    parser.add_argument("--fill-max", type=float, default=900.0, help="seconds (with --fill)")
    parser.add_argument(
        "--no-faults", dest="faults", action="store_false", help="inject no upstream faults"
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
