#!/usr/bin/env python3
"""The latency a judged draft adds (`routing.judge_draft`): the draft window on a real llama-server.

Every ask routed local under `judge_draft` waits for its draft window (`max_draft_tokens`,
default 100) before the draft scorer decides and the first byte reaches the client. This
script starts the real llama-server of `scripts/setup_local_model.sh` (Gemma 3 270M Q4_K_M),
streams a window of held-out replay asks (GSM8K rows 660+ and MT-Bench ids 121+) one at a time,
and prints per ask kind: time to the first content token, decode tokens per second, and the
time until the window is full. Then the same window at a stated GLM-4.7-Flash decode rate, as
an estimate (no GLM-4.7-Flash runs here).

Run: `.venv/bin/python scripts/bench_draft_window.py [--asks 6] [--window 100]` (a minute or two
on 2 cores; needs `GLM_VENV=$PWD/.venv scripts/setup_local_model.sh` first). Figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
from bench_replay import default_data_dir, load_gsm8k, load_mt_bench
from benchlib import pct

from gateway.dev.llama_server import LlamaServer, find_binary, find_model, free_port

# A documented GLM-4.7-Flash decode rate on llama.cpp: about 97 tokens/s on an RTX 6000
# Blackwell (promptsicle.com, "GLM-4.7-Flash hits 2000+ tokens/sec on RTX 6000"), and 7.3
# tokens/s at 4K context on a Ryzen 7940HS mini-PC's iGPU (joshgreen-dev.github.io, 2026-06-27).
GLM_FLASH_TPS = {"RTX 6000 Blackwell, llama.cpp": 97.0, "Ryzen 7940HS iGPU, Vulkan": 7.3}


async def window(
    session: aiohttp.ClientSession, url: str, prompt: str, tokens: int
) -> tuple[float, float, int]:
    """(seconds to the first content token, seconds to the end of the window, tokens)."""
    body = {
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "max_tokens": tokens,
        "temperature": 0,
    }
    started = time.perf_counter()
    first: float | None = None
    count = 0
    async with session.post(url + "/chat/completions", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.content:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            chunk = orjson.loads(line[6:])
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    count += 1
                    if first is None:
                        first = time.perf_counter() - started
    end = time.perf_counter() - started
    return (first if first is not None else end), end, count


async def run(args: argparse.Namespace) -> int:
    data = default_data_dir()
    gsm8k = [c[0].prompt for c in load_gsm8k(data, 1) if c[0].split == "held_out"]
    mt = [c[0].prompt for c in load_mt_bench(data) if c[0].split == "held_out"]
    asks = {"GSM8K": gsm8k[: args.asks], "MT-Bench": mt[: args.asks]}
    with tempfile.TemporaryDirectory() as tmp:
        server = LlamaServer(
            find_binary(), find_model(), port=free_port(), log_path=Path(tmp) / "llama.log"
        )
        with server:
            await server.wait_ready_async()
            # llama-server may close a connection after a stream: a new one per request.
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector) as session:
                await window(session, server.url, "warm up", 8)
                print(f"llama-server {server.model_name}, window {args.window} tokens\n")
                for name, prompts in asks.items():
                    ttfts, ends, rates = [], [], []
                    for prompt in prompts:
                        ttft, end, count = await window(session, server.url, prompt, args.window)
                        ttfts.append(ttft)
                        ends.append(end)
                        if count > 1 and end > ttft:
                            rates.append((count - 1) / (end - ttft))
                    print(
                        f"{name} ({len(prompts)} asks): first token p50 {pct(ttfts, 50):.3f} s, "
                        f"p95 {pct(ttfts, 95):.3f} s; decode p50 {pct(rates, 50):.0f} tokens/s; "
                        f"window full p50 {pct(ends, 50):.2f} s, p95 {pct(ends, 95):.2f} s"
                    )
    print("\nEstimate, not measured: the same window on GLM-4.7-Flash (decode time alone)")
    for where, tps in GLM_FLASH_TPS.items():
        print(f"  at {tps:g} tokens/s ({where}): {args.window / tps:.2f} s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--asks", type=int, default=6, help="held-out asks per dataset")
    parser.add_argument("--window", type=int, default=100, help="max_draft_tokens")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
