"""EventStream, the SSE response under every stream: headers, `: ping` keepalives without a task
per response, hung-peer detection; against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from gateway.wire.chunk import read_chunk
from gateway.wire.event_stream import PING, EventStream
from gateway.wire.sinks import StreamSink

EVENT = b'data: {"n":1}\n\n'


async def serve(aiohttp_server: Any, handler: Any) -> str:
    app = web.Application()
    app.router.add_post("/s", handler)
    server = await aiohttp_server(app)
    return str(server.make_url("/s"))


async def fetch(
    aiohttp_server: Any, client: aiohttp.ClientSession, handler: Any
) -> tuple[bytes, Any]:
    """POST to a server running `handler`: the reply's body and headers."""
    async with client.post(await serve(aiohttp_server, handler)) as reply:
        return await reply.read(), reply.headers


async def closed(sink: StreamSink) -> web.StreamResponse:
    """Close `sink`; the response it streamed."""
    await sink.close()
    assert sink.response is not None
    return sink.response


def keeping_alive(stream: EventStream) -> bool:
    """A ping is scheduled or being written: the stream's own timer or task (no public view)."""
    return stream._timer is not None or stream._pinging is not None


def count_writes(request: web.BaseRequest, writes: list[bytes]) -> None:
    """Record each write the response's transport makes (one entry per system call)."""
    transport = request.transport
    assert transport is not None
    write, writelines = transport.write, transport.writelines

    def counted(data: Any) -> None:
        writes.append(bytes(data))
        write(data)

    def counted_lines(chunks: Any) -> None:
        writes.append(b"".join(chunks))
        writelines(chunks)

    transport.write = counted  # type: ignore[method-assign]
    transport.writelines = counted_lines  # type: ignore[method-assign]


async def test_headers_events_and_pings_on_the_wire(
    aiohttp_server: Any, client: aiohttp.ClientSession
) -> None:
    pinged = asyncio.Event()  # the client saw two pings while the stream was idle

    async def handler(request: web.Request) -> web.StreamResponse:
        response = EventStream(headers={"x-request-id": "r1"}, keepalive_interval=0.05)
        await response.prepare(request)
        await response.write(EVENT)
        await asyncio.wait_for(pinged.wait(), 10)
        await response.write(EVENT)
        await response.write_eof()
        assert not keeping_alive(response)
        return response

    started = time.monotonic()
    async with client.post(await serve(aiohttp_server, handler)) as reply:
        raw = b""
        while raw.count(PING) < 2:
            raw += await asyncio.wait_for(reply.content.readuntil(b"\n\n"), 10)
        pinged.set()
        raw += await reply.read()
        headers = reply.headers
    elapsed = time.monotonic() - started
    assert headers["Content-Type"] == "text/event-stream"
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Accel-Buffering"] == "no"
    assert headers["x-request-id"] == "r1"
    assert "Content-Encoding" not in headers
    assert raw.startswith(EVENT) and raw.endswith(EVENT)
    # one ping per 50 ms idle at most: a machine slower than that only sends fewer
    assert 2 <= raw.count(PING) <= elapsed / 0.05 + 1
    assert raw.replace(PING, b"") == EVENT * 2


async def test_no_ping_after_the_stream_ended_or_was_released(
    aiohttp_server: Any, client: aiohttp.ClientSession
) -> None:
    stopped: list[EventStream] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        response = EventStream(headers={}, keepalive_interval=0.05)
        await response.prepare(request)
        assert keeping_alive(response)
        response.stop_keepalive()
        stopped.append(response)
        await response.write(EVENT)
        await asyncio.sleep(0.2)
        await response.write_eof()
        return response

    raw, _ = await fetch(aiohttp_server, client, handler)
    assert raw == EVENT
    assert not keeping_alive(stopped[0])


async def test_a_streamed_response_starts_no_task_of_its_own(
    aiohttp_server: Any, client: aiohttp.ClientSession
) -> None:
    # aiohttp-sse started a ping task per response; a short answer should cost no task at all.
    started: list[set[asyncio.Task[Any]]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        sink = StreamSink(request, response_id="chatcmpl-1", include_usage=False, headers={})
        before = asyncio.all_tasks()
        await sink.begin()
        started.append(asyncio.all_tasks() - before)
        await sink.finish({}, {})
        return await closed(sink)

    raw, _ = await fetch(aiohttp_server, client, handler)
    assert raw.endswith(b"data: [DONE]\n\n")
    assert started == [set()]


async def test_the_headers_go_out_with_the_opening_events(
    aiohttp_server: Any, client: aiohttp.ClientSession
) -> None:
    # One system call for the status line, the headers, the role chunk and the first content.
    writes: list[bytes] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        count_writes(request, writes)
        sink = StreamSink(request, response_id="chatcmpl-1", include_usage=False, headers={})
        await sink.emit(
            read_chunk({"model": "m", "choices": [{"index": 0, "delta": {"content": "hi"}}]})
        )
        first = len(writes)
        await sink.finish({"prompt_tokens": 1}, {"model_used": "local"})
        await sink.close()
        writes.insert(first, b"<finish>")
        assert sink.response is not None
        return sink.response

    raw, headers = await fetch(aiohttp_server, client, handler)
    assert headers["Content-Type"] == "text/event-stream"
    assert raw.endswith(b"data: [DONE]\n\n")
    opening = writes[: writes.index(b"<finish>")]
    assert len(opening) == 1, opening
    assert opening[0].startswith(b"HTTP/1.1 200")
    assert b'"role":"assistant"' in opening[0] and b'"content":"hi"' in opening[0]


async def test_the_end_of_a_stream_takes_two_writes(
    aiohttp_server: Any, client: aiohttp.ClientSession
) -> None:
    # The final and usage chunks exist together, and so do [DONE] and the end of the body:
    # each pair goes out in one system call, with the ledger's commit (between finish and
    # close) in between.
    writes: list[bytes] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        sink = StreamSink(request, response_id="chatcmpl-1", include_usage=True, headers={})
        await sink.emit(
            read_chunk({"model": "m", "choices": [{"index": 0, "delta": {"content": "hi"}}]})
        )
        count_writes(request, writes)

        await sink.finish({"prompt_tokens": 1}, {"model_used": "local"})
        writes.append(b"<recorded>")
        return await closed(sink)

    raw, _ = await fetch(aiohttp_server, client, handler)
    assert raw.endswith(b"data: [DONE]\n\n")
    assert len(writes) == 3, writes
    assert writes[0].count(b"data: ") == 2 and b'"usage":{"prompt_tokens":1}' in writes[0]
    assert writes[1] == b"<recorded>"
    assert b"data: [DONE]" in writes[2] and writes[2].endswith(b"0\r\n\r\n")


async def test_the_socket_gets_a_send_timeout(
    aiohttp_server: Any, client: aiohttp.ClientSession
) -> None:
    if not hasattr(socket, "TCP_USER_TIMEOUT"):
        pytest.skip("TCP_USER_TIMEOUT is Linux only")
    seen: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        response = EventStream(headers={}, send_timeout=7.5)
        await response.prepare(request)
        assert request.transport is not None
        sock = request.transport.get_extra_info("socket")
        seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT))
        await response.write_eof(EVENT)
        return response

    url = await serve(aiohttp_server, handler)
    for _ in range(2):  # the second response on the kept-alive connection finds it still set
        async with client.post(url) as reply:
            assert await reply.read() == EVENT
    assert seen == [7500, 7500]


async def test_a_client_that_stops_reading_is_dropped_when_a_ping_cannot_go_out(
    aiohttp_server: Any,
) -> None:
    outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = EventStream(headers={}, keepalive_interval=0.05, send_timeout=0.3)
        await response.prepare(request)
        try:
            while True:  # fills the socket buffers, then waits for a drain that never comes
                await response.write(b"data: " + b"x" * 65_536 + b"\n\n")
        finally:  # the abort either fails the write or cancels the handler
            outcome.set_result("dropped")

    url = URL(await serve(aiohttp_server, handler))
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.transport.pause_reading()  # the client reads nothing
    writer.write(f"POST /s HTTP/1.1\r\nHost: {url.host}\r\nContent-Length: 0\r\n\r\n".encode())
    try:
        assert await asyncio.wait_for(outcome, 10) == "dropped"
    finally:
        writer.close()
