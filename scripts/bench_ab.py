#!/usr/bin/env python3
"""Two trees' gateways side by side: does a change move the per-request figures?

`bench_overhead.py --floor-only` runs one tree at a time, so a change of a few percent drowns in
the machine's drift between runs (on a shared 2-core machine, the relay's own CPU per request moves
by 1.5x between runs). Here the gateway of the tree before a change (`--before`, a checkout such
as `git worktree add` or `git archive | tar -x` made) and the gateway of the tree after it
(`--after`, this checkout by default) run at the same time, beside the bare relay, all three
pinned to the same core in front of the same simulator. They take turns in short blocks, in an
order that alternates, so both meet the same load; each block gives each path:

- CPU per Cline-sized streamed request (`/proc` schedstat of the whole process, as
  `bench_floor.py`), over `--requests` sequential requests;
- time to first content, sequential, median of `--requests` samples.

Printed per figure: the median over blocks for each path, the after/before ratio's median and
quartiles over the blocks, and in how many blocks after was below before (a sign test: with 20
blocks, 15 or more, or 5 or fewer, is beyond chance at p < 0.05). Figures only: asserts nothing.

Run: `.venv/bin/python scripts/bench_ab.py --before /tmp/before [--blocks 20] [--requests 50]
[--strategy smart_routing] [--log-level INFO] [--pasted 10000] [--distinct] [--accented]`
(`--pasted`: the ask also carries that many characters of pasted prose, code and an error trace, as
a user pastes a log or a file; `--distinct`: every request asks something new, where by default
every request repeats the same ask, as the turns of an agent loop do; `--accented`: the ask holds
one letter beyond ASCII, as a name or a word of most languages does).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import math
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from bench_floor import (
    Body,
    cline_body,
    cpu_per_request,
    first_content,
    pasted_text,
    spawn_bare_relay,
)
from benchlib import ROOT, Proc, spawn_local_gateway, spawn_sim, split_cores, wait_ready


def _new_ask(body: dict[str, Any], counter: Iterator[int]) -> dict[str, Any]:
    """`body` with its ask (the last message) ending in a number no request had before."""
    ask = body["messages"][-1]
    numbered = {**ask, "content": f"{ask['content']} (request {next(counter)})"}
    return {**body, "messages": [*body["messages"][:-1], numbered]}


def _sign_p(wins: int, n: int) -> float:
    """Two-sided sign-test p-value for `wins` of `n` blocks."""
    k = min(wins, n - wins)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


async def run(args: argparse.Namespace) -> None:
    path_cpus, other = split_cores()
    env = dict(os.environ)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ab-")))
        sim = spawn_sim("llamacpp", "--answer-tokens", "20", cpus=other, quiet_gc=True)
        stack.callback(sim.stop)
        procs: dict[str, Proc] = {}
        for name, tree in (("before", args.before), ("after", args.after)):
            (tmp / name).mkdir()
            procs[name] = spawn_local_gateway(
                sim,
                tmp / name,
                cpus=path_cpus,
                env=env,
                strategy=args.strategy,
                tree=tree,
                log_level=args.log_level,
            )
            stack.callback(procs[name].stop)
        procs["relay"] = spawn_bare_relay(sim.url, cpus=path_cpus)
        stack.callback(procs["relay"].stop)
        await wait_ready(sim.url + "/health")
        for proc in procs.values():
            await wait_ready(proc.url + "/health")
        body = cline_body()
        ask = body["messages"][-1]
        if args.pasted:  # the user pasted a log or a file into the ask
            ask["content"] = ask["content"] + "\n\n" + pasted_text(args.pasted)
        if args.accented:
            ask["content"] = "Caf\u00e9 app: " + ask["content"]
        sent: Body = body
        if args.distinct:  # every request a new ask: nothing the router analysed is reused
            sent = functools.partial(_new_ask, body, itertools.count())
        cpu: dict[str, list[float]] = {name: [] for name in procs}
        ttft: dict[str, list[float]] = {name: [] for name in procs}
        async with aiohttp.ClientSession() as session:
            for proc in procs.values():  # warm up
                for _ in range(30):
                    await first_content(session, proc.url, sent)
            started = time.monotonic()
            for block in range(args.blocks):
                pair = ["before", "after"] if block % 2 == 0 else ["after", "before"]
                for name in [*pair, "relay"]:
                    proc = procs[name]
                    cpu[name].append(
                        await cpu_per_request(session, proc.url, proc.pid, sent, args.requests)
                    )
                    samples = [
                        await first_content(session, proc.url, sent) for _ in range(args.requests)
                    ]
                    ttft[name].append(statistics.median(samples))
        print(
            f"{args.blocks} blocks of {args.requests} requests, "
            f"{time.monotonic() - started:.0f} s, strategy {args.strategy}, "
            f"log level {args.log_level}"
            f"{', a new ask each request' if args.distinct else ''}"
            f"{', one accented letter in it' if args.accented else ''}; "
            f"before: {args.before}; after: {args.after}"
        )
        for label, data, scale, unit in (
            ("CPU per Cline-sized request", cpu, 1e6, "us"),
            ("time to first content, sequential p50", ttft, 1e6, "us"),
        ):
            ratios = sorted(a / b for a, b in zip(data["after"], data["before"], strict=True))
            wins = sum(1 for r in ratios if r < 1)
            q = statistics.quantiles(ratios, n=4)
            med = {name: statistics.median(values) * scale for name, values in data.items()}
            print(f"\n{label}")
            print(
                f"  median over blocks: before {med['before']:.0f} {unit}, after "
                f"{med['after']:.0f} {unit}, relay {med['relay']:.0f} {unit}"
            )
            print(
                f"  ratio to the relay (medians): before {med['before'] / med['relay']:.2f}x, "
                f"after {med['after'] / med['relay']:.2f}x"
            )
            print(
                f"  after / before per block: median {statistics.median(ratios):.3f} "
                f"(quartiles {q[0]:.3f}-{q[2]:.3f}); after lower in {wins} of {len(ratios)} "
                f"blocks (sign test p = {_sign_p(wins, len(ratios)):.3f})"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the tree before the change")
    parser.add_argument("--after", type=Path, default=ROOT, help="the tree after (this one)")
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--requests", type=int, default=50, help="requests per block and path")
    parser.add_argument("--strategy", default="always_local")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        help="both gateways' level (WARNING: no line per request; INFO is the gateway's default)",
    )
    parser.add_argument(
        "--pasted",
        type=int,
        default=0,
        help="bytes of pasted text (prose and code) the user's ask carries besides its request",
    )
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="a new ask in every request (as a chat, not an agent loop that repeats its task)",
    )
    parser.add_argument(
        "--accented",
        action="store_true",
        help="the ask holds one letter beyond ASCII (an accented e)",
    )
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
