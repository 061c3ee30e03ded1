#!/usr/bin/env python3
"""Instructions per Cline-sized request: the gateway of one or two trees beside the bare relay,
counted by valgrind (callgrind), so a change can be judged on a shared, noisy machine.

CPU time on a machine shared with other work moves by 10-30 % from run to run; the count of
instructions a process executes for the same requests moves by about 1 %. This script starts the
llama.cpp simulator, then each process under `valgrind --tool=callgrind` with counting off (start-up
runs at near full speed), turns counting on, sends `--warm` requests, zeroes the counters, sends
`--requests` Cline-sized streamed requests (`bench_floor.cline_body`) back to back, and reads the
counters. It prints thousands of instructions per request for the relay and each tree, and each
tree's ratio to the relay.

What it counts: user-space instructions of every thread of the process (the event loop, the
writer thread, SQLite, orjson). What it does not: time in the kernel (system calls, the socket
copies), cache misses, waiting. Read it beside `bench_overhead.py --floor-only`, which measures
CPU time; a change that saves system calls shows there and not here.

Needs valgrind (`scripts/setup_valgrind.sh`). Run:
`.venv/bin/python scripts/bench_instructions.py [--before ../old-tree] [--strategy always_local]
[--log-level INFO] [--keep DIR]` (`--keep`: the dumps stay in DIR, one folder a process, for
`callgrind_annotate DIR/gateway-1/callgrind.PID.1`).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
from bench_floor import cline_body, spawn_bare_relay, stream_to_end
from benchlib import ROOT, Proc, spawn_local_gateway, spawn_sim, wait_ready

COUNTED_START_TIMEOUT_S = 300.0  # start-up under valgrind, counting off: seconds, not minutes


def callgrind(out: Path) -> tuple[str, ...]:
    """The command prefix: callgrind with counting off until `callgrind_control -i on`."""
    return (
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--dump-instr=no",
        f"--callgrind-out-file={out}/callgrind.%p",
    )


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def dumped_instructions(out: Path, pid: int) -> int:
    """The instructions in the dumps `callgrind_control -d` wrote for `pid` (parts .1, .2 ...)."""
    total = 0
    for dump in out.glob(f"callgrind.{pid}.*"):
        for line in dump.read_text().splitlines():
            if line.startswith("summary:"):
                total += int(line.split()[1])
                break
    return total


async def count(proc: Proc, out: Path, body: dict[str, object], warm: int, n: int) -> float:
    """Instructions per request of `proc` over `n` requests after `warm` uncounted ones."""
    await wait_ready(proc.url + "/health", COUNTED_START_TIMEOUT_S)
    pid = str(proc.pid)
    _control("-i", "on", pid)
    async with aiohttp.ClientSession() as session:
        for _ in range(warm):
            await stream_to_end(session, proc.url, body)
        _control("-z", pid)
        for _ in range(n):
            await stream_to_end(session, proc.url, body)
    _control("-d", pid)
    return dumped_instructions(out, proc.pid) / n


async def run(args: argparse.Namespace) -> None:
    body = cline_body()
    trees: list[tuple[str, Path | None]] = [("relay", None)]
    if args.before is not None:
        trees.append(("before", args.before.resolve()))
    trees.append(("gateway" if args.before is None else "after", args.after.resolve()))
    sim = spawn_sim("llamacpp", "--answer-tokens", "20", quiet_gc=True)
    figures: dict[str, list[float]] = {name: [] for name, _ in trees}
    try:
        await wait_ready(sim.url + "/health")
        for run in range(args.runs):
            for name, tree in trees:
                with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
                    out = Path(tmp)
                    if args.keep is not None:  # the dumps outlive the run, one folder a process
                        out = args.keep / f"{name}-{run + 1}"
                        out.mkdir(parents=True, exist_ok=True)
                    prefix = callgrind(out)
                    if tree is None:
                        proc = spawn_bare_relay(sim.url, prefix=prefix)
                    else:
                        proc = spawn_local_gateway(
                            sim,
                            out,
                            strategy=args.strategy,
                            tree=tree,
                            prefix=prefix,
                            log_level=args.log_level,
                        )
                    try:
                        figures[name].append(await count(proc, out, body, args.warm, args.requests))
                    finally:
                        proc.stop()
    finally:
        sim.stop()
    relay = min(figures["relay"])
    print(
        f"\ninstructions per Cline-sized streamed request ({args.strategy}, log level "
        f"{args.log_level}, {args.requests} requests, {args.runs} run(s) each; range over runs)"
    )
    print(f"{'process':<10} {'k instructions':>16} {'ratio to relay':>16}")
    for name, values in figures.items():
        low, high = min(values), max(values)
        print(f"{name:<10} {low / 1e3:>8.0f}-{high / 1e3:<7.0f} {low / relay:>15.2f}x")
    if args.before is not None:
        before, after = min(figures["before"]), min(figures["after"])
        print(f"after / before: {after / before:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--after", type=Path, default=ROOT, help="the tree after (this one)")
    parser.add_argument("--before", type=Path, help="a tree before the change, if any")
    parser.add_argument("--strategy", default="always_local")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warm", type=int, default=30)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep each run's callgrind dumps in KEEP/<relay|before|after|gateway>-<run>/, for "
        "callgrind_annotate",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        help="the gateways' storage.log_level (the default INFO writes a line per request)",
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed: run scripts/setup_valgrind.sh", file=sys.stderr)
        return 1
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
