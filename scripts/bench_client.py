#!/usr/bin/env python3
"""CPU per Cline-sized streamed call to a plain-http upstream: the aiohttp session against the
lean client (`gateway.upstreams.lean`), in this process, against the llama.cpp simulator.

The simulator runs in another process (20-token answers, so 20 streamed chunks plus usage and
`[DONE]`); this one sends a 40 KB Cline-shaped body (`bench_floor.cline_body`) and prints this
thread's CPU time per call (the simulator's is not counted), median of alternating blocks, range
in brackets, and the lean/aiohttp ratio of the medians. Three rows:

- client: the HTTP call alone (POST, read the body to its end, release), kept-alive connections;
- call: the upstream's whole streamed call (`open_stream` and its chunks), kept-alive;
- call, new connection: the same with `Connection: close`, as against a llama-server that
  closes every streamed connection.

Figures only: this is not a test and asserts nothing. About 15 s with the defaults.

Run: `.venv/bin/python scripts/bench_client.py [--blocks 7] [--calls 300]`
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp
import orjson
import uvloop
from bench_floor import cline_body
from benchlib import spawn_sim, wait_ready

from gateway.config import parse_config
from gateway.upstreams import LeanPool, OpenAICompatibleUpstream, build_upstream
from gateway.upstreams.client import open_session, post, request_timeout
from gateway.upstreams.lean import lean_target
from gateway.upstreams.response import UpstreamResponse

Call = Callable[[], Awaitable[None]]


async def drain(response: UpstreamResponse) -> None:
    content = response.content
    while content.read_nowait() or await content.readany():
        pass
    response.release()


def upstream_for(
    url: str, session: aiohttp.ClientSession, pool: LeanPool | None, *, close: bool
) -> OpenAICompatibleUpstream:
    section = {"endpoint": url, "model": "m", "timeouts": {"connect": 2, "first_token": 30}}
    config = parse_config({"models": {"local": section}}, env={}).models["local"]
    upstream = build_upstream("local", config, session, max_event_bytes=1 << 20, pool=pool)
    if close:
        upstream.reuse_connections = False  # every call asks for `Connection: close`
    return upstream


def calls(url: str, session: aiohttp.ClientSession, pool: LeanPool) -> dict[str, Call]:
    client_body = cline_body()
    raw = orjson.dumps({**client_body, "stream": True, "stream_options": {"include_usage": True}})
    chat_url = url + "/chat/completions"
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    target = lean_target(chat_url)
    assert target is not None
    timeout = request_timeout(upstream_for(url, session, None, close=False).config)

    async def aiohttp_client() -> None:
        await drain(await post(session, chat_url, raw, headers, timeout, retry_stale=True))

    async def lean_client() -> None:
        await drain(await pool.post(target, raw, headers, connect_timeout=2, retry_stale=True))

    def whole_call(upstream: OpenAICompatibleUpstream) -> Call:
        async def call() -> None:
            async with upstream.open_stream(client_body) as stream:
                async for _ in stream.batches():
                    pass
            assert stream.saw_done

        return call

    return {
        "client, aiohttp": aiohttp_client,
        "client, lean": lean_client,
        "call, aiohttp": whole_call(upstream_for(url, session, None, close=False)),
        "call, lean": whole_call(upstream_for(url, session, pool, close=False)),
        "call, new connection, aiohttp": whole_call(upstream_for(url, session, None, close=True)),
        "call, new connection, lean": whole_call(upstream_for(url, session, pool, close=True)),
    }


async def block(call: Call, n: int) -> float:
    """This thread's CPU seconds per call over `n` calls."""
    started = time.thread_time()
    for _ in range(n):
        await call()
    return (time.thread_time() - started) / n


async def run(url: str, blocks: int, n: int) -> None:
    await wait_ready(url + "/models", timeout=30)
    pool = LeanPool()
    try:
        async with open_session() as session:
            variants = calls(url, session, pool)
            results: dict[str, list[float]] = {name: [] for name in variants}
            for call in variants.values():
                await block(call, 30)  # warm up
            for _ in range(blocks):
                for name, call in variants.items():
                    results[name].append(await block(call, n))
    finally:
        await pool.close()
    medians = {name: statistics.median(values) for name, values in results.items()}
    for name, values in results.items():
        line = (
            f"{name:<31} {medians[name] * 1e6:6.0f} us per call "
            f"[{min(values) * 1e6:.0f}-{max(values) * 1e6:.0f}]"
        )
        if name.endswith(", lean"):
            base = medians[name.removesuffix(", lean") + ", aiohttp"]
            line += f"  lean/aiohttp {medians[name] / base:.2f}"
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    sim = spawn_sim("llamacpp", "--answer-tokens", "20", quiet_gc=True)
    try:
        uvloop.run(run(sim.url + "/v1", args.blocks, args.calls))
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
