#!/usr/bin/env python3
"""What the Responses door costs against the chat door, in the same run.

One simulated llama.cpp server (no artificial delay) and one gateway (always_local, pinned to
one core; the client and the simulator on the other), the two doors taking turns:

- CPU per relayed chunk: one stream of many chunks through each door, the gateway's CPU time
  (all threads, /proc schedstat) divided by the answer's content events;
- CPU per Codex-sized streamed request: the recorded Codex 0.171.0 first turn
  (tests/fixtures/codex_0.171.0.json, 40 KB, 9 tools) through the Responses door, and the chat
  request it decodes into through the chat door, 20 chunks each;
- time to first content (the first event carrying answer text), sequential, p50 and p90 per
  door, and the direct p50 to the simulator; "added" is a door's p50 minus the direct p50.

Each figure is taken in `--rounds` alternating turns (chat first in odd rounds, responses first
in even ones); the table shows the median over rounds and the ratio responses / chat.

Run: `.venv/bin/python scripts/bench_doors_responses.py` (about a minute; `--quick` for a
smoke run). Figures only: this is not a test and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from bench_floor import cpu_ns
from benchlib import ROOT, pct, spawn_local_gateway, spawn_sim, split_cores, wait_ready

sys.path.insert(0, str(ROOT))
from gateway.doors.responses.decode import decode  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "codex_0.171.0.json"
CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
SHORT_CHAT = {
    "model": "bench",
    "messages": [{"role": "user", "content": "Say something."}],
    "stream": True,
    "stream_options": {"include_usage": True},
}
SHORT_RESPONSES = {"model": "bench", "input": "Say something.", "stream": True}


def codex_bodies() -> tuple[dict[str, Any], dict[str, Any]]:
    """The recorded Codex first turn, and the chat request the door decodes it into."""
    fixture = json.loads(FIXTURE.read_text())
    request = fixture["scenarios"]["exec_command"]["exchanges"][0]["request"]
    body = dict(request["body"])
    chat = decode(body, {}).body
    chat.update(stream=True, stream_options={"include_usage": True}, model="bench")
    body["model"] = "bench"
    return chat, body


def is_content(path: str) -> Callable[[bytes], bool]:
    if path == RESPONSES:
        return lambda line: line.startswith(b"event: response.output_text.delta")
    return lambda line: (
        line.startswith(b"data: {") and b'"content":"' in line and b'"content":""' not in line
    )


async def stream(session: aiohttp.ClientSession, url: str, path: str, body: Any) -> int:
    """Stream to the end; the number of content events."""
    content = is_content(path)
    count = 0
    async with session.post(url + path, json=body) as resp:
        resp.raise_for_status()
        async for line in resp.content:
            if content(line):
                count += 1
    return count


async def first_content(session: aiohttp.ClientSession, url: str, path: str, body: Any) -> float:
    content = is_content(path)
    started = time.perf_counter()
    async with session.post(url + path, json=body) as resp:
        resp.raise_for_status()
        async for line in resp.content:
            if content(line):
                elapsed = time.perf_counter() - started
                resp.close()
                return elapsed
    raise RuntimeError("no content")


async def sim_options(session: aiohttp.ClientSession, sim: str, **changes: float) -> None:
    async with session.post(sim + "/_sim/options", json=changes) as resp:
        resp.raise_for_status()
    async with session.post(sim + "/_sim/clear") as resp:
        resp.raise_for_status()


async def run(args: argparse.Namespace) -> None:
    gateway_cpus, other = split_cores()
    chat_codex, responses_codex = codex_bodies()
    doors = {
        "chat": (CHAT, SHORT_CHAT, chat_codex),
        "responses": (RESPONSES, SHORT_RESPONSES, responses_codex),
    }
    chunks = 4_000 if args.quick else 20_000
    requests = 40 if args.quick else 200
    samples = 60 if args.quick else 300
    figures: dict[str, dict[str, list[float]]] = {d: {} for d in doors}
    direct: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-doors-") as tmp:
        sim = spawn_sim("llamacpp", "--answer-tokens", "20", cpus=other)
        gateway = spawn_local_gateway(sim, Path(tmp), cpus=gateway_cpus)
        try:
            await wait_ready(sim.url + "/health")
            await wait_ready(gateway.url + "/health")
            timeout = aiohttp.ClientTimeout(total=None)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                for path, short, codex in doors.values():  # warm both doors
                    for _ in range(5):
                        await stream(session, gateway.url, path, short)
                        await stream(session, gateway.url, path, codex)
                for round_ in range(args.rounds):
                    order = list(doors) if round_ % 2 == 0 else list(reversed(doors))
                    await sim_options(session, sim.url, answer_tokens=chunks)
                    for name in order:
                        path, short, _ = doors[name]
                        before = cpu_ns(gateway.pid)
                        events = await stream(session, gateway.url, path, short)
                        per = (cpu_ns(gateway.pid) - before) / 1e9 / max(1, events)
                        figures[name].setdefault("cpu_per_chunk", []).append(per)
                    await sim_options(session, sim.url, answer_tokens=20)
                    for name in order:
                        path, _, codex = doors[name]
                        before = cpu_ns(gateway.pid)
                        for _ in range(requests):
                            await stream(session, gateway.url, path, codex)
                        per = (cpu_ns(gateway.pid) - before) / 1e9 / requests
                        figures[name].setdefault("cpu_per_request", []).append(per)
                    ttft: dict[str, list[float]] = {name: [] for name in doors}
                    for _ in range(samples):
                        direct.append(await first_content(session, sim.url, CHAT, SHORT_CHAT))
                        for name in order:
                            path, short, _ = doors[name]
                            ttft[name].append(
                                await first_content(session, gateway.url, path, short)
                            )
                    for name in doors:
                        figures[name].setdefault("ttft_p50", []).append(pct(ttft[name], 50))
                        figures[name].setdefault("ttft_p90", []).append(pct(ttft[name], 90))
        finally:
            gateway.stop()
            sim.stop()
    report(figures, direct, args)


def report(figures: dict[str, dict[str, list[float]]], direct: list[float], args: Any) -> None:
    direct_p50 = pct(direct, 50)
    print(f"rounds: {args.rounds}; median over rounds (range); ratio responses / chat")
    print(f"{'figure':<42} {'chat':>16} {'responses':>16} {'ratio':>7}")
    rows = [
        ("CPU per relayed chunk (us)", "cpu_per_chunk", 1e6, 0.0),
        ("CPU per Codex-sized streamed request (ms)", "cpu_per_request", 1e3, 0.0),
        ("time to first content p50 (ms)", "ttft_p50", 1e3, 0.0),
        ("time to first content p90 (ms)", "ttft_p90", 1e3, 0.0),
        ("added to direct, p50 (ms)", "ttft_p50", 1e3, direct_p50),
    ]
    for label, key, scale, minus in rows:
        chat = [(v - minus) * scale for v in figures["chat"][key]]
        resp = [(v - minus) * scale for v in figures["responses"][key]]
        c, r = statistics.median(chat), statistics.median(resp)
        cell = f"{c:7.3f} ({min(chat):.2f}-{max(chat):.2f})"
        cell_r = f"{r:7.3f} ({min(resp):.2f}-{max(resp):.2f})"
        print(f"{label:<42} {cell:>16} {cell_r:>16} {r / c if c else float('nan'):6.2f}x")
    print(f"direct time to first content p50: {direct_p50 * 1e3:.3f} ms")
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
