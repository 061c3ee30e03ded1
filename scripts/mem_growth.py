#!/usr/bin/env python3
"""What grows in the gateway's memory with distinct conversations: tracemalloc across a run.

The gateway runs in this process on 127.0.0.1 (so tracemalloc sees its allocations), in front of
the llama.cpp and Cerebras simulators run as processes. Clients play distinct agent conversations
(scripts/conversations.py: a new ~6 KB system prompt naming its workspace, `--turns` turns each).
After a warm-up the script snapshots the traced memory at a quiet point (no request in flight,
garbage collected, the SQLite writers flushed), runs `--conversations` more conversations in each
of `--rounds` rounds and snapshots again after each. It prints the largest growers between the
first and the last snapshot, attributed to the innermost gateway source line that allocated them,
with bytes per conversation and per request, and the `/stats` memory block at the end.

A structure that is bounded stops growing once it is full: run with more conversations than a
bound (or with small bounds, `--bounds small`) to see it level off.

Run: `.venv/bin/python scripts/mem_growth.py` (about a minute with the defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from benchlib import HOST, free_port, spawn_sim, wait_ready
from conversations import converse

from gateway.config import parse_config
from gateway.http.app import create_app
from gateway.http.services import SERVICES_KEY

CEREBRAS_KEY = "mem-growth-key-not-secret"
GATEWAY_DIR = str(Path(__file__).resolve().parent.parent / "gateway")

# Small bounds, so that a short run fills every structure and shows it level off.
SMALL_BOUNDS: dict[str, Any] = {
    "escalation": {"max_conversations": 300, "max_turns": 600, "fingerprint_cache": 16},
    "learn": {"remember_requests": 600},
}


def where(trace: tracemalloc.Traceback) -> str:
    """The innermost gateway frame of an allocation (else its innermost frame)."""
    for frame in reversed(trace):  # tracemalloc lists the oldest call first
        if frame.filename.startswith(GATEWAY_DIR):
            return f"{frame.filename[len(GATEWAY_DIR) - 7 :]}:{frame.lineno}"
    frame = trace[-1]
    return f"{frame.filename}:{frame.lineno}"


def growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> Counter[str]:
    grown: Counter[str] = Counter()
    for stat in after.compare_to(before, "traceback"):
        if stat.size_diff:
            grown[where(stat.traceback)] += stat.size_diff
    return grown


async def quiet_snapshot(app: web.Application) -> tracemalloc.Snapshot:
    services = app[SERVICES_KEY]
    await services.ledger.flush()
    if services.router is not None:
        await asyncio.to_thread(services.router.flush)
    if services.learning is not None:
        await asyncio.to_thread(services.learning.flush)
    await asyncio.sleep(0.2)
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )


async def drive(
    url: str, first: int, count: int, args: argparse.Namespace, rng: random.Random
) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    ids = iter(range(first, first + count))
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
    ) as session:

        async def client() -> None:
            for conversation in ids:
                for outcome in await converse(
                    session,
                    url,
                    conversation,
                    turns=args.turns,
                    prompt_bytes=args.prompt_bytes,
                    model=args.strategy,
                    rng=rng,
                ):
                    outcomes[outcome] += 1

        await asyncio.gather(*(client() for _ in range(args.clients)))
    return outcomes


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    local = spawn_sim("llamacpp", "--tps", "0", "--answer-tokens", "30")
    cerebras = spawn_sim(
        "cerebras", "--tps", "0", "--answer-tokens", "30", "--api-key", CEREBRAS_KEY
    )
    runner: web.AppRunner | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="mem-growth-") as tmp:
            data: dict[str, Any] = {
                "models": {
                    "local": {"endpoint": local.url + "/v1", "model": "sim-local"},
                    "cerebras": {"endpoint": cerebras.url + "/v1", "api_key": CEREBRAS_KEY},
                },
                "routing": {"strategy": args.strategy},
                "storage": {
                    "ledger_path": str(Path(tmp) / "ledger.db"),
                    "log_path": str(Path(tmp) / "gateway.log"),
                    "log_level": "WARNING",
                },
            }
            if args.bounds == "small":
                data["routing"].update(SMALL_BOUNDS)
            config = parse_config(data, source="<mem_growth>", env={})
            for proc in (local, cerebras):
                await wait_ready(proc.url + "/health")
            tracemalloc.start(args.frames)
            app = create_app(config)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, HOST, port).start()
            url = f"http://{HOST}:{port}"
            started = time.monotonic()
            outcomes = await drive(url, 0, args.warmup, args, rng)
            snapshots = [await quiet_snapshot(app)]
            rss = [rss_mib()]
            first = args.warmup
            for _ in range(args.rounds):
                outcomes += await drive(url, first, args.conversations, args, rng)
                first += args.conversations
                snapshots.append(await quiet_snapshot(app))
                rss.append(rss_mib())
            elapsed = time.monotonic() - started
            conversations = args.conversations * args.rounds
            requests = sum(outcomes.values()) * conversations / (first or 1)
            print(
                f"mem_growth: {first} conversations ({args.warmup} warm-up), "
                f"{sum(outcomes.values())} requests in {elapsed:.0f} s, strategy "
                f"{args.strategy}, {args.clients} clients, {args.turns} turns, "
                f"~{args.prompt_bytes} B system prompts, bounds {args.bounds}"
            )
            print("outcomes:", dict(sorted(outcomes.items())))
            traced = [sum(s.size for s in snap.statistics("filename")) for snap in snapshots]
            print(
                "traced MiB after the warm-up and each round: "
                + ", ".join(f"{t / 2**20:.2f}" for t in traced)
            )
            print(
                "process RSS MiB (tracemalloc's own memory included): "
                + ", ".join(f"{r:.1f}" for r in rss)
            )
            total = traced[-1] - traced[0]
            print(
                f"growth over {conversations} conversations: {total / 1024:.1f} KiB, "
                f"{total / conversations:.0f} B per conversation, "
                f"{total / max(1.0, requests):.0f} B per request"
            )
            grown = growth(snapshots[0], snapshots[-1])
            last_round = growth(snapshots[-2], snapshots[-1]) if args.rounds > 1 else grown
            print(
                f"\ntop {args.top} growers (B per conversation over the run; "
                "last round's share in brackets):"
            )
            for place, size in grown.most_common(args.top):
                if size <= 0:
                    break
                late = last_round.get(place, 0)
                print(
                    f"  {size / conversations:9.1f} B/conv  {size / 1024:9.1f} KiB  "
                    f"[{late / 1024:8.1f} KiB]  {place}"
                )
            async with aiohttp.ClientSession() as session:
                async with session.get(url + "/stats") as resp:
                    stats = await resp.json()
            if "memory" in stats:
                print("\n/stats memory:")
                for name, block in stats["memory"].items():
                    print(f"  {name}: {block}")
    finally:
        if runner is not None:
            await runner.cleanup()
        local.stop()
        cerebras.stop()
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=300, help="conversations before the baseline")
    parser.add_argument("--conversations", type=int, default=600, help="conversations per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--prompt-bytes", type=int, default=6000)
    parser.add_argument("--strategy", default="smart_routing")
    parser.add_argument("--frames", type=int, default=12, help="traceback depth traced")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--bounds", choices=("default", "small"), default="default")
    parser.add_argument("--seed", type=int, default=1)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
