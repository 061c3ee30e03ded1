"""Defects found in review, each pinned by a test that failed before its fix (real simulators)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from gateway.config import parse_config
from gateway.records import UpstreamCall
from gateway.sim import SimServer
from gateway.upstreams import build_upstream


async def wait_for(predicate: Any, what: str) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_call_cancelled_while_its_error_body_is_read_is_cancelled(
    session: aiohttp.ClientSession, local_sim: SimServer
) -> None:
    local_sim.inject("slow_error_body")
    config = parse_config({"models": {"local": {"endpoint": local_sim.url}}}, env={})
    upstream = build_upstream("local", config.local, session, max_event_bytes=1 << 20)
    calls: list[UpstreamCall] = []

    async def call() -> None:
        async with upstream.open_stream(
            {"messages": [{"role": "user", "content": "hi"}]}, calls=calls
        ):
            raise AssertionError("a 500 never opens a stream")

    task = asyncio.create_task(call())
    await wait_for(lambda: local_sim.requests and local_sim.requests[0].status == 500, "the 500")
    await asyncio.sleep(0.05)  # the gateway is now reading the error body
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    [settled] = calls
    assert settled.status == "cancelled"
    assert settled.http_status == 500
