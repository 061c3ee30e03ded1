#!/usr/bin/env python3
"""Where a Cline-sized request's CPU goes in the gateway, part by part of the request path.

Starts the llama.cpp simulator and the gateway (strategy `--strategy`), sends Cline-sized streamed
requests back to back (`bench_floor.cline_body`), and:

1. measures the gateway's CPU per request without a profiler (`/proc` schedstat, all threads);
2. records the gateway with py-spy (`--rate` Hz, `--seconds` long) while the requests go on;
3. sorts the event loop's busy samples into the parts of the request path (`PARTS`: each sample
   goes to the first part, in that order, with a frame on its stack) and prints each part's share
   and the µs per request that share is of the measured CPU.

py-spy must be installed (`.venv/bin/pip install py-spy`) and allowed to attach (root, or
`kernel.yama.ptrace_scope=0`). Run: `.venv/bin/python scripts/profile_request.py [--strategy
smart_routing] [--seconds 15] [--raw prof.raw]`; `scripts/profile_summary.py` reads the raw file
for a frame-by-frame view. Figures only; shares from a loaded machine overweight system calls.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from bench_floor import cline_body, cpu_ns, stream_to_end
from benchlib import spawn_local_gateway, spawn_sim, wait_ready
from profile_summary import frames, loop_busy

# (part, a substring of a frame); the first part with a frame on the sample's stack takes it
# (`leaf:`: only as the innermost frame, for time spent in C called from that function).
PARTS = [
    ("body: parse_body (orjson.loads, nesting check)", "parse_body ("),
    ("body: the door's decode and validation", "Door.decode"),
    ("body: the upstream encode (orjson.dumps in _post)", "leaf:._post (gateway/upstreams/base"),
    ("body: building the upstream body", "build_body"),
    ("prompt estimate", "gateway/accounting/tokens.py"),
    ("conversation tracker begin", "ConversationTracker.begin"),
    ("conversation tracker finish", "ConversationTracker.finish"),
    ("router features", "gateway/router/features.py"),
    ("router, other", "gateway/router/"),
    ("recording (Exchange.finalize)", "Exchange.finalize"),
    ("SSE response prepare", "_prepare_now"),
    ("end of stream ([DONE], write_eof)", "StreamSink.finish"),
    ("chunk writes", "StreamSink.emit_many"),
    ("upstream SSE read and parse", "UpstreamStream.batches"),
    ("aiohttp client request", "ClientSession._request"),
    ("upstream call, other", "OpenAICompatibleUpstream.open_stream"),
    ("admission gate", "gateway/quota/"),
    ("relay loop, other", "gateway/serving/relay.py"),
    ("handler, other (routes.serve)", "serve (gateway/http/routes.py"),
    ("middlewares", "gateway/http/"),
    ("aiohttp server", "aiohttp/web_protocol.py"),
    ("aiohttp client protocol", "aiohttp/client_proto.py"),
    ("upstream connection", "gateway/upstreams/client.py"),
]


def _on(key: str, stack_frames: list[str]) -> bool:
    if key.startswith("leaf:"):
        return key[5:] in stack_frames[-1]
    return any(key in f for f in stack_frames)


def parts(raw: Path) -> tuple[Counter[str], int]:
    """Busy samples of the event loop per part, and their total."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        stack_frames = frames(stack)
        if not loop_busy(stack_frames):
            continue
        total += int(n)
        hits = (name for name, key in PARTS if _on(key, stack_frames))
        part = next(hits, "event loop, other")
        counts[part] += int(n)
    return counts, total


async def drive(url: str, pid: int, seconds: float, body: dict[str, object]) -> tuple[int, float]:
    """Requests back to back for `seconds`; (requests, CPU seconds per request)."""
    async with aiohttp.ClientSession() as session:
        before, n = cpu_ns(pid), 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await stream_to_end(session, url, body)
            n += 1
    return n, (cpu_ns(pid) - before) / 1e9 / max(1, n)


async def run(args: argparse.Namespace) -> None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with tempfile.TemporaryDirectory(prefix="profile-request-") as tmp:
        sim = spawn_sim("llamacpp", "--answer-tokens", "20", quiet_gc=True)
        gateway = spawn_local_gateway(sim, Path(tmp), strategy=args.strategy)
        try:
            await wait_ready(sim.url + "/health")
            await wait_ready(gateway.url + "/health")
            body = cline_body()
            await drive(gateway.url, gateway.pid, 2.0, body)  # warm up
            n, cpu = await drive(gateway.url, gateway.pid, args.seconds, body)
            print(f"{args.strategy}: {n} requests, {cpu * 1e6:.0f} us of CPU per request")
            recorder = subprocess.Popen(
                [spy, "record", "-p", str(gateway.pid), "-r", str(args.rate), "--format", "raw"]
                + ["-o", str(args.raw), "-d", str(int(args.seconds))],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            async with aiohttp.ClientSession() as session:
                while recorder.poll() is None:
                    await stream_to_end(session, gateway.url, body)
        finally:
            gateway.stop()
            sim.stop()
    counts, total = parts(args.raw)
    if not total:
        raise SystemExit(f"py-spy recorded no busy samples (exit {recorder.returncode})")
    print(f"{total} busy samples of the event loop\n")
    print(f"{'part of the request path':<50} {'share':>6} {'us/request':>11}")
    for name, count in counts.most_common():
        print(f"{name:<50} {count / total:6.1%} {count / total * cpu * 1e6:11.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategy", default="always_local")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=int, default=997, help="py-spy samples per second")
    parser.add_argument("--raw", type=Path, default=Path("profile_request.raw"))
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
