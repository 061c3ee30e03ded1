#!/usr/bin/env python3
"""CPU per upstream call on a new loopback connection: aiohttp's connect path against the event
loop's own (`gateway.upstreams.client.UpstreamConnector`), as a local llama-server that closes
every streamed connection makes the gateway pay it on each call.

An aiohttp server in another process answers POSTs; this process sends them with
`Connection: close` through two sessions that differ only in the connect path, alternating blocks
of requests, and prints the median CPU time of this process per request, all its threads
counted (a name lookup in a thread pool would count too), range in brackets.
Figures only: this is not a test and asserts nothing. About 20 s.

Run: `.venv/bin/python scripts/bench_connect.py [--blocks 7] [--requests 300]`
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

import aiohttp
import uvloop
from aiohttp import web
from benchlib import HOST, free_port, wait_ready

from gateway.upstreams.client import UpstreamConnector


def serve(port: int) -> None:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"data: {}\n\n", content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    web.run_app(
        app, host=HOST, port=port, print=None, access_log=None, loop=uvloop.new_event_loop()
    )


class AiohttpConnect(UpstreamConnector):
    """The gateway's connector with aiohttp's own connect path."""

    _wrap_create_connection = aiohttp.TCPConnector._wrap_create_connection  # type: ignore[assignment]


async def block(session: aiohttp.ClientSession, url: str, n: int, body: bytes) -> float:
    """Process CPU seconds per request over `n` requests, each on a new connection."""
    headers = {"Connection": "close", "Content-Type": "application/json"}
    started = time.process_time()
    for _ in range(n):
        async with session.post(url, data=body, headers=headers) as resp:
            await resp.read()
    return (time.process_time() - started) / n


async def run(port: int, blocks: int, requests: int) -> None:
    await wait_ready(f"http://{HOST}:{port}/", timeout=30)
    url = f"http://{HOST}:{port}/v1/chat/completions"
    body = b'{"messages": []}' * 100
    results: dict[str, list[float]] = {"aiohttp's connect": [], "the loop's connect": []}
    async with (
        aiohttp.ClientSession(connector=AiohttpConnect(limit=0)) as default,
        aiohttp.ClientSession(connector=UpstreamConnector(limit=0)) as loop_connect,
    ):
        sessions = dict(zip(results, (default, loop_connect), strict=True))
        for session in sessions.values():
            await block(session, url, 50, body)  # warm up
        for _ in range(blocks):
            for name, session in sessions.items():
                results[name].append(await block(session, url, requests, body))
    for name, values in results.items():
        print(
            f"{name:<20} {statistics.median(values) * 1e6:6.0f} us per request "
            f"[{min(values) * 1e6:.0f}-{max(values) * 1e6:.0f}]"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    port = free_port()
    server = multiprocessing.Process(target=serve, args=(port,), daemon=True)
    server.start()
    try:
        uvloop.run(run(port, args.blocks, args.requests))
    finally:
        server.terminate()
        server.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
