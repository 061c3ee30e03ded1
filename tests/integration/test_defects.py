"""Defects found in review, each pinned by a test that failed before its fix (real simulators)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from support import chat, eventually, gateway_config, post_stream

from gateway.accounting.records import UpstreamCall
from gateway.config import parse_config
from gateway.dev.sim import SimServer
from gateway.http.app import create_app
from gateway.http.services import GUARD_KEY
from gateway.upstreams import build_upstream
from gateway.wire.chunk import read_chunk
from gateway.wire.sinks import StreamSink


async def test_a_call_cancelled_while_its_error_body_is_read_is_cancelled(
    session: aiohttp.ClientSession, local_sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_sim.inject("slow_error_body")
    config = parse_config({"models": {"local": {"endpoint": local_sim.url}}}, env={})
    upstream = build_upstream("local", config.local, session, max_event_bytes=1 << 20)
    calls: list[UpstreamCall] = []
    reading = asyncio.Event()  # the 500's headers arrived; its body is being read
    read_error = upstream._http_error

    async def reading_error(response: aiohttp.ClientResponse, call: UpstreamCall) -> Any:
        reading.set()
        return await read_error(response, call)

    monkeypatch.setattr(upstream, "_http_error", reading_error)

    async def call() -> None:
        opening = upstream.open_stream({"messages": [{"role": "user", "content": "hi"}]})
        calls.append(opening.call)
        async with opening:
            raise AssertionError("a 500 never opens a stream")

    task = asyncio.create_task(call())
    await asyncio.wait_for(reading.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    [settled] = calls
    assert settled.status == "cancelled"
    assert settled.http_status == 500


async def test_a_client_leaving_before_the_headers_is_a_499_without_an_error_log(
    make_gateway: Any,
    client: aiohttp.ClientSession,
    local_sim: SimServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    local_sim.inject("slow_first_token", delay=0.3)
    gw = await make_gateway("always_local")
    body = chat("hello", stream=True)
    request = asyncio.create_task(client.post(gw.url + "/chat/completions", json=body))
    await eventually(lambda: local_sim.requests, "the upstream call")
    request.cancel()  # the client leaves; the gateway learns it at its first write
    await asyncio.gather(request, return_exceptions=True)
    ledger = gw.services.ledger

    async def rows() -> list[Any]:
        await ledger.flush()
        return ledger.rows()

    for _ in range(300):
        if await rows():
            break
        await asyncio.sleep(0.01)
    [row] = await rows()
    assert (row.outcome, row.http_status) == ("client_disconnected", 499)
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not logged, logged


async def test_a_request_cancelled_by_shutdown_is_not_logged_as_a_client_disconnect(
    aiohttp_server: Any,
    tmp_path: Any,
    client: aiohttp.ClientSession,
    local_sim: SimServer,
    cerebras_sim: SimServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.requests")
    local_sim.inject("slow_first_token", delay=30)
    cfg = gateway_config(tmp_path, local_sim.url, cerebras_sim.url, strategy="always_local")
    server = await aiohttp_server(create_app(cfg), shutdown_timeout=0.1)
    body = chat("hello", stream=True)
    url = f"http://{server.host}:{server.port}/v1/chat/completions"
    request = asyncio.create_task(client.post(url, json=body))
    await eventually(lambda: local_sim.requests, "the upstream call")
    server.app[GUARD_KEY].draining = True  # as the CLI's shutdown does before its grace period
    await server.close()  # the grace period ends with the client still connected
    await asyncio.gather(request, return_exceptions=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.requests"]
    assert any("outcome=error status=503" in line for line in lines), lines
    assert not any("status=499" in line for line in lines), lines


async def test_no_draft_content_by_the_deadline_commits_cerebras_only_once_it_has_content(
    make_gateway: Any, client: aiohttp.ClientSession, local_sim: SimServer, cerebras_sim: SimServer
) -> None:
    # Cerebras accepts after the draft deadline, then fails before any content: local answers.
    local_sim.inject("slow_first_token", delay=0.8)
    cerebras_sim.options.ttft = 0.4
    cerebras_sim.inject("cut", after_chunks=1)  # the role chunk, then the socket closes
    gw = await make_gateway(
        "speculative_decoding", speculative_decoding={"max_draft_tokens": 5, "draft_timeout": 0.1}
    )
    reply = await post_stream(client, gw.url, chat("p", stream=True))
    assert not any("error" in c for c in reply.chunks), reply.chunks
    assert reply.data[-1] == "[DONE]"
    final = reply.chunks[-1]
    assert final["model_used"] == "local"
    assert final["speculative_decoding"]["decided_by"] == "verify_failed"


async def test_a_reset_after_the_role_chunk_keeps_the_model_name_the_client_was_told(
    aiohttp_server: Any, client: aiohttp.ClientSession
) -> None:
    # No strategy resets a stream after its role chunk today (speculation announces, then
    # serves one upstream); the sink must still keep what it told the client.
    async def handler(request: web.Request) -> web.StreamResponse:
        sink = StreamSink(request, response_id="chatcmpl-1", include_usage=False, headers={})
        sink.model_name = "glm-token-saver"
        await sink.begin()
        sink.reset()  # a fallback before any content
        content = {"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}
        await sink.emit(read_chunk({"model": "other-upstream", "choices": [content]}))
        await sink.finish({}, {})
        await sink.close()
        assert sink.response is not None
        return sink.response

    app = web.Application()
    app.router.add_post("/chat/completions", handler)
    server = await aiohttp_server(app)
    reply = await post_stream(client, str(server.make_url("")).rstrip("/"), {})
    assert reply.text == "hi"
    assert {c["model"] for c in reply.chunks} == {"glm-token-saver"}
