"""The Anthropic Messages door against the chat door, in the same run, on the same gateway.

One gateway process (always_local, pinned to one core) in front of the llama.cpp simulator; the
client sends a Claude Code-shaped request through /v1/messages and its decoded twin (the exact
internal chat body the door makes of it) through /v1/chat/completions, interleaved, so both doors
relay the same upstream answer at the same moment of the run. Printed:

- CPU per relayed chunk: the gateway's CPU time (kernel per-thread run time) over one long
  streamed answer, divided by the upstream's content chunks; median of the rounds.
- time to first content: request sent -> first event with answer text; median and p90, and the
  door's added time (messages - chat).

`--tps` paces the upstream (0: as fast as it can write, so chunks arrive batched; a pace makes
each chunk its own read and write, as a real model's do).

Usage: .venv/bin/python scripts/bench_doors.py [--rounds 15] [--answer-tokens 2000] [--tps 0]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from bench_floor import cpu_ns
from benchlib import Proc, pct, spawn_local_gateway, spawn_sim, split_cores, wait_ready

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.doors.anthropic.decode import DecodeOptions  # noqa: E402
from gateway.doors.anthropic.door import MessagesDoor  # noqa: E402


def claude_code_body(answer_tokens: int) -> dict[str, Any]:
    """A Claude Code-shaped streamed Messages request (3 system blocks, 12 tools, ~30 KB)."""
    tools = [
        {
            "name": name,
            "description": f"{name}: a Claude Code tool. " + "Use it when the task needs it. " * 40,
            "input_schema": {
                "type": "object",
                "properties": {
                    "file_path": {"type": "string", "description": "An absolute path."},
                    "content": {"type": "string", "description": "The content."},
                },
                "required": ["file_path"],
                "additionalProperties": False,
            },
        }
        for name in (
            "Bash Edit Read Write Agent Glob Grep TodoWrite WebFetch NotebookEdit Task Skill"
        ).split()
    ]
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": answer_tokens + 100,
        "stream": True,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332.573;"},
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {"type": "text", "text": "You are an interactive agent. " * 200},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>context</system-reminder>"},
                    {"type": "text", "text": "Explain the repository layout."},
                ],
            }
        ],
        "tools": tools,
    }


async def stream(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> float:
    """Read one streamed answer to its end; seconds to the first answer text."""
    started = time.perf_counter()
    first: float | None = None
    async with session.post(url, json=body) as resp:
        resp.raise_for_status()
        async for line in resp.content:
            if first is None and (
                b'"text_delta","text":"' in line
                or (line.startswith(b"data: {") and b'"content":"' in line and b'""' not in line)
            ):
                first = time.perf_counter() - started
    if first is None:
        raise RuntimeError(f"{url}: no answer text")
    return first


async def measure(gateway: Proc, sim: Proc, rounds: int, answer_tokens: int, tps: float) -> None:
    messages = claude_code_body(answer_tokens)
    chat = MessagesDoor(DecodeOptions()).decode(messages, {}).body
    chat["stream_options"] = {"include_usage": True}
    doors = {
        "chat": (gateway.url + "/v1/chat/completions", chat),
        "messages": (gateway.url + "/v1/messages", messages),
    }
    cpu: dict[str, list[float]] = {name: [] for name in doors}
    ttfb: dict[str, list[float]] = {name: [] for name in doors}
    long_answer = {"answer_tokens": answer_tokens, "tps": tps}
    short_answer = {"answer_tokens": 8, "tps": 0}
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for url, body in doors.values():  # warm up both paths
            await stream(session, url, body)
        for i in range(rounds):
            order = list(doors) if i % 2 == 0 else list(reversed(doors))
            for name in order:
                url, body = doors[name]
                await post_options(session, sim, long_answer)
                before = cpu_ns(gateway.pid)
                await stream(session, url, body)
                cpu[name].append((cpu_ns(gateway.pid) - before) / 1e9 / answer_tokens)
                await post_options(session, sim, short_answer)
                for _ in range(4):
                    ttfb[name].append(await stream(session, url, body))
            async with session.post(sim.url + "/_sim/clear") as resp:
                resp.raise_for_status()
    chat_cpu, door_cpu = statistics.median(cpu["chat"]), statistics.median(cpu["messages"])
    pace = f"{tps:g} tokens/s" if tps else "unpaced"
    print(f"rounds {rounds}, answer {answer_tokens} chunks ({pace}), gateway pinned to one core")
    print(f"{'':34} {'chat':>10} {'messages':>10} {'ratio':>7}")
    print(
        f"{'CPU per relayed chunk (us, median)':34} {chat_cpu * 1e6:10.2f} "
        f"{door_cpu * 1e6:10.2f} {door_cpu / chat_cpu:6.2f}x"
    )
    for q in (50, 90):
        c, m = pct(ttfb["chat"], q), pct(ttfb["messages"], q)
        print(
            f"{f'time to first content p{q} (ms)':34} {c * 1e3:10.2f} {m * 1e3:10.2f} "
            f"{m / c:6.2f}x  (+{(m - c) * 1e3:.2f} ms)"
        )


async def post_options(session: aiohttp.ClientSession, sim: Proc, options: dict[str, Any]) -> None:
    async with session.post(sim.url + "/_sim/options", json=options) as resp:
        resp.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--answer-tokens", type=int, default=2000)
    parser.add_argument("--tps", type=float, default=0.0)
    args = parser.parse_args()
    gateway_cpus, other_cpus = split_cores()
    with tempfile.TemporaryDirectory(prefix="bench-doors-") as tmp:
        sim = spawn_sim("llamacpp", "--answer-tokens", "8", cpus=other_cpus)
        gateway = spawn_local_gateway(sim, Path(tmp), cpus=gateway_cpus)
        try:
            asyncio.run(wait_ready(sim.url + "/health"))
            asyncio.run(wait_ready(gateway.url + "/health"))
            asyncio.run(measure(gateway, sim, args.rounds, args.answer_tokens, args.tps))
        finally:
            gateway.stop()
            sim.stop()


if __name__ == "__main__":
    main()
