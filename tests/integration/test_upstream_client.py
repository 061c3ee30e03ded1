"""The clients of upstream calls against real servers on 127.0.0.1: the aiohttp session's
connector settings, and the lean client of plain-http upstreams (bodies, pooling, flow control,
cancellation, malformed answers, the request it sends)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.config import parse_config
from gateway.dev.llama_server import free_port
from gateway.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from gateway.upstreams import OpenAICompatibleUpstream, build_upstream, lean
from gateway.upstreams.client import open_session
from gateway.upstreams.lean import HIGH_WATER, LeanPool, LeanResponse, Target, lean_target


async def test_a_loopback_connection_is_opened_by_the_event_loop(
    aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One plain TCP address: the loop connects (aiohttp's Python socket path is not taken)."""

    async def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("aiohttp's own connect path was taken")

    monkeypatch.setattr(aiohttp.connector.aiohappyeyeballs, "start_connection", refuse)

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/", ok)
    server = await aiohttp_server(app)
    async with open_session() as session:
        for _ in range(2):  # the second on a new connection too
            async with session.post(server.make_url("/"), headers={"Connection": "close"}) as r:
                assert await r.text() == "ok"


async def test_a_refused_loopback_connection_is_a_connector_error() -> None:
    """The loop's connect failing is reported as aiohttp's would be (the upstream maps it)."""
    port = free_port()
    async with open_session() as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await session.post(f"http://127.0.0.1:{port}/v1/chat/completions", data=b"{}")
    assert caught.value.port == port


# --- the lean client of plain-http upstreams (gateway.upstreams.lean) ---------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawServer:
    """An HTTP server on 127.0.0.1 written byte by byte: `handler` serves each connection."""

    handler: Handler
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)  # each request's head, as received
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # a client closed a connection
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def request(self, reader: asyncio.StreamReader) -> bool:
        """Read one request (head and body); False when the client closed the connection."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            self.closed.set()
            return False
        self.heads.append(head)
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        await reader.readexactly(int(length.group(1)) if length else 0)
        return True


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[RawServer]:
    server = RawServer(handler)
    server._server = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    try:
        yield server
    finally:
        server._server.close()
        await server._server.wait_closed()


def serving(*answers: bytes, keep: bool = True) -> Callable[[RawServer], Handler]:
    """A handler that answers each request on a connection with the next of `answers` (the last
    one again when they run out), then reads the next request unless `keep` is False."""

    def make(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            served = 0
            while await server.request(reader):
                writer.write(answers[min(served, len(answers) - 1)])
                await writer.drain()
                served += 1
                if not keep:
                    return

        return handle

    return make


@contextlib.asynccontextmanager
async def scripted(make: Callable[[RawServer], Handler]) -> AsyncIterator[RawServer]:
    holder: list[RawServer] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await make(holder[0])(reader, writer)

    async with raw_server(handler) as server:
        holder.append(server)
        yield server


@contextlib.asynccontextmanager
async def lean_pool() -> AsyncIterator[LeanPool]:
    pool = LeanPool()
    try:
        yield pool
    finally:
        await pool.close()


def target_of(server: RawServer) -> Target:
    target = lean_target(server.url + "/chat/completions")
    assert target is not None
    return target


async def post(pool: LeanPool, server: RawServer, **options: Any) -> LeanResponse:
    return await pool.post(
        target_of(server),
        b'{"a": 1}',
        {"Content-Type": "application/json"},
        **options,
        connect_timeout=2,
    )


async def read_all(response: LeanResponse) -> bytes:
    body = b""
    while chunk := await response.content.readany():
        body += chunk
    return body


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
CHUNKED = SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"data: 1\n\n", b"data: 2\n\n")
SIZED = SSE_HEAD + b"Content-Length: 18\r\n\r\ndata: 1\n\ndata: 2\n\n"
UNTIL_CLOSE = SSE_HEAD + b"\r\ndata: 1\n\ndata: 2\n\n"


@pytest.mark.parametrize(
    ("answer", "keep"),
    [(CHUNKED, True), (SIZED, True), (UNTIL_CLOSE, False)],
    ids=["chunked", "content_length", "until_close"],
)
async def test_lean_reads_each_kind_of_body(answer: bytes, keep: bool) -> None:
    """Chunked and sized bodies end where they say and keep the connection for the next call;
    a body without a length ends when the server closes, and that connection is not reused."""
    async with scripted(serving(answer, keep=keep)) as server, lean_pool() as pool:
        for _ in range(2):
            response = await post(pool, server)
            assert response.status == 200
            assert response.headers["content-type"] == "text/event-stream"
            assert response.headers["Content-Type"] == "text/event-stream"
            assert await read_all(response) == b"data: 1\n\ndata: 2\n\n"
            assert response.content.at_eof()
            response.release()
    assert server.connections == (1 if keep else 2)


async def test_lean_does_not_pool_a_connection_the_server_closes() -> None:
    closing = SIZED.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    async with scripted(serving(closing)) as server, lean_pool() as pool:
        for _ in range(2):
            response = await post(pool, server)
            await read_all(response)
            response.release()
    assert server.connections == 2


async def test_lean_does_not_pool_a_connection_whose_body_was_not_read() -> None:
    async with scripted(serving(SIZED)) as server, lean_pool() as pool:
        response = await post(pool, server)
        response.release()  # nothing of the body read
        response = await post(pool, server)
        assert await read_all(response) == b"data: 1\n\ndata: 2\n\n"
        response.release()
    assert server.connections == 2


@pytest.mark.parametrize("lean", [False, True], ids=["aiohttp", "lean"])
async def test_an_answer_that_is_not_http_is_a_protocol_error(lean: bool) -> None:
    """Both clients: a server that answers garbage fails the call cleanly."""
    async with scripted(serving(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")) as server:
        error = await call_error(server, lean)
    assert type(error) is UpstreamProtocolError
    assert error.message.startswith("local: malformed response")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            SSE_HEAD + b"Content-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc",
            "local: malformed response (MalformedResponse)",
        ),
        (
            SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n",
            "local: connection lost mid-stream (ClientPayloadError)",
        ),
    ],
    ids=["compressed_unasked", "garbage_after_the_headers"],
)
async def test_lean_fails_cleanly_on_an_answer_it_cannot_read(answer: bytes, message: str) -> None:
    async with scripted(serving(answer)) as server:
        error = await call_error(server, lean=True)
    assert type(error) is UpstreamProtocolError
    assert error.message == message


async def test_lean_skips_an_interim_response() -> None:
    async with scripted(serving(b"HTTP/1.1 100 Continue\r\n\r\n" + SIZED)) as server:
        async with lean_pool() as pool:
            response = await post(pool, server)
            assert response.status == 200
            assert await read_all(response) == b"data: 1\n\ndata: 2\n\n"
            response.release()


@pytest.mark.parametrize("lean", [False, True], ids=["aiohttp", "lean"])
async def test_a_server_closing_mid_body_fails_the_stream(lean: bool) -> None:
    """The same error from both clients; the events that arrived before the close are read."""
    event = b'data: {"choices": [{"index": 0, "delta": {"content": "Hel"}}]}\n\n'
    cut = SSE_HEAD + b"Content-Length: 1000\r\n\r\n" + event
    async with scripted(serving(cut, keep=False)) as server:
        texts: list[str] = []
        error = await call_error(server, lean, texts)
    assert texts == ["Hel"]
    assert type(error) is UpstreamProtocolError
    assert error.message == "local: connection lost mid-stream (ClientPayloadError)"


async def test_a_refused_connection_reads_the_same_on_both_clients() -> None:
    port = free_port()
    messages = []
    async with open_session() as session, lean_pool() as pool:
        for client_pool in (None, pool):
            upstream = local_upstream(f"http://127.0.0.1:{port}/v1", session, client_pool)
            with pytest.raises(UpstreamConnectError) as caught:
                async with upstream.open_stream(BODY):
                    pass
            messages.append(caught.value.message)
    assert messages[0] == messages[1]
    assert messages[0].startswith("local: cannot connect (")


async def test_lean_buffers_a_bounded_amount_for_a_slow_reader() -> None:
    """The server sends 16 MiB as fast as it can; the reader does not read for a while. The
    connection stops reading past the high-water mark (the rest waits in the kernel, then in
    the server), and every byte still arrives once the reader reads."""
    total = 16 * 1024 * 1024
    block = b"x" * 65536

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server_of[0].request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        for _ in range(total // len(block)):
            writer.write(block)
            await writer.drain()

    server_of: list[RawServer] = []
    async with raw_server(flood) as server, lean_pool() as pool:
        server_of.append(server)
        response = await post(pool, server)
        body = response.content
        for _ in range(50):  # let the server fill every buffer it can
            await asyncio.sleep(0.01)
        buffered = len(body.read_nowait())
        # The high-water mark plus at most one read of the event loop (256 KiB).
        assert buffered <= HIGH_WATER + 256 * 1024
        received = buffered + len(await response.content.read())
        response.release()
    assert received == total


async def test_leaving_a_stream_closes_its_connection_at_once() -> None:
    """A call left mid-answer closes its socket: the server sees the close while it is still
    sending (llama.cpp stops generating)."""
    event = b'data: {"choices": [{"index": 0, "delta": {"content": "x"}}]}\n\n'

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server_of[0].request(reader)
        writer.write(SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            while True:
                writer.write(chunked(event)[:-5])  # one chunk, no terminator
                await writer.drain()
                await asyncio.sleep(0.01)
        finally:
            server_of[0].closed.set()

    server_of: list[RawServer] = []
    async with raw_server(endless) as server, open_session() as session, lean_pool() as pool:
        server_of.append(server)
        upstream = local_upstream(server.url, session, pool)
        opening = upstream.open_stream(BODY)
        async with opening as stream:
            async for _ in stream:
                break
        await asyncio.wait_for(server.closed.wait(), 5)
    assert opening.call.status == "cancelled"
    assert server.connections == 1


async def test_cancelling_a_call_waiting_for_its_headers_closes_the_connection() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server_of[0].request(reader)
        await server_of[0].request(reader)  # returns False once the client closed

    server_of: list[RawServer] = []
    async with raw_server(silent) as server, lean_pool() as pool:
        server_of.append(server)
        task = asyncio.create_task(post(pool, server))
        while not server.heads:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.closed.wait(), 5)


async def test_closing_the_pool_closes_its_idle_connections() -> None:
    async with scripted(serving(SIZED)) as server:
        async with lean_pool() as pool:
            response = await post(pool, server)
            await read_all(response)
            response.release()
            assert not server.closed.is_set()
        await asyncio.wait_for(server.closed.wait(), 5)


async def test_both_clients_send_the_same_request_headers() -> None:
    """The upstream sees the same request from either client, except that the lean one asks for
    no compressed body (it decodes none)."""
    async with scripted(serving(CHUNKED)) as server, open_session() as session:
        host = server.url.split("//")[1].split("/")[0]
        async with lean_pool() as pool:
            for client_pool in (None, pool):
                upstream = local_upstream(server.url, session, client_pool)
                with contextlib.suppress(UpstreamError):  # CHUNKED is no chat answer
                    async with upstream.open_stream(BODY, request_id="r-1") as stream:
                        async for _ in stream:
                            pass
    aiohttp_head, lean_head = (head_fields(head) for head in server.heads)
    assert aiohttp_head.pop("accept-encoding") == "gzip, deflate"
    assert lean_head.pop("accept-encoding") == "identity"
    assert lean_head == aiohttp_head
    assert lean_head["host"] == host
    assert lean_head["x-request-id"] == "r-1"
    assert server.heads[1].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")


def head_fields(head: bytes) -> dict[str, str]:
    lines = head.decode().split("\r\n")[1:]
    fields = [line.split(": ", 1) for line in lines if line]
    return {name.lower(): value for name, value in fields}


def test_lean_serves_plain_http_endpoints_only() -> None:
    assert lean_target("https://api.cerebras.ai/v1/chat/completions") is None
    assert lean_target("http://user:secret@127.0.0.1:8080/v1/chat/completions") is None
    plain = lean_target("http://127.0.0.1:8080/v1/chat/completions")
    assert plain is not None and plain.literal
    assert plain.start == "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    named = lean_target("http://Localhost:80/v1/chat/completions")
    assert named is not None and not named.literal
    assert named.start.endswith("Host: localhost\r\n")
    v6 = lean_target("http://[::1]:8080/v1/chat/completions")
    assert v6 is not None and v6.start.endswith("Host: [::1]:8080\r\n")


async def test_lean_resolves_a_host_name() -> None:
    async with scripted(serving(SIZED)) as server, lean_pool() as pool:
        target = lean_target(server.url.replace("127.0.0.1", "localhost") + "/chat/completions")
        assert target is not None and not target.literal
        response = await pool.post(target, b"{}", {}, connect_timeout=2)
        assert await read_all(response) == b"data: 1\n\ndata: 2\n\n"
        response.release()


BODY = {"messages": [{"role": "user", "content": "hi"}]}


def local_upstream(
    url: str,
    session: aiohttp.ClientSession,
    pool: LeanPool | None,
    timeouts: dict[str, float] | None = None,
) -> OpenAICompatibleUpstream:
    timeouts = timeouts or {"connect": 2, "first_token": 5}
    section = {"endpoint": url, "model": "m", "timeouts": timeouts}
    config = parse_config({"models": {"local": section}}, env={}).models["local"]
    upstream = build_upstream("local", config, session, max_event_bytes=1 << 20, pool=pool)
    assert (upstream._lean is not None) == (pool is not None)
    return upstream


async def call_error(
    server: RawServer, lean: bool, texts: list[str] | None = None
) -> UpstreamError:
    """The error one streamed call to `server` ends with (the texts it streamed before)."""
    async with open_session() as session, lean_pool() as pool:
        upstream = local_upstream(server.url, session, pool if lean else None)
        with pytest.raises(UpstreamError) as caught:
            async with upstream.open_stream(BODY) as stream:
                async for chunk in stream:
                    if texts is not None:
                        texts.append(chunk.text)
    return caught.value


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A port whose connects hang: a listener with a full backlog drops further SYNs."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        for _ in range(4):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        yield port


@pytest.mark.parametrize("lean", [False, True], ids=["aiohttp", "lean"])
async def test_a_connect_that_hangs_ends_at_the_connect_timeout(lean: bool) -> None:
    """`timeouts.connect` bounds the connect, well inside the first-token timeout; the error
    is the one a missing first token gives (as before)."""
    with unanswered_port() as port:
        async with open_session() as session, lean_pool() as pool:
            upstream = local_upstream(
                f"http://127.0.0.1:{port}/v1",
                session,
                pool if lean else None,
                timeouts={"connect": 0.2, "first_token": 60},
            )
            async with asyncio.timeout(30) as outer:
                with pytest.raises(UpstreamTimeout) as caught:
                    async with upstream.open_stream(BODY):
                        pass
            assert not outer.expired()
    assert caught.value.message == "local: no response within 60s"


async def test_lean_closes_a_connection_idle_past_the_keep_alive_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Within the keep-alive time a connection is reused; past it, it is closed, not reused."""
    async with scripted(serving(SIZED)) as server, lean_pool() as pool:
        for keep_alive in (lean.KEEPALIVE_S, lean.KEEPALIVE_S, -1.0):  # -1: expired at once
            monkeypatch.setattr(lean, "KEEPALIVE_S", keep_alive)
            response = await post(pool, server)
            await read_all(response)
            response.release()
        await asyncio.wait_for(server.closed.wait(), 5)  # the expired one was closed
    assert server.connections == 2  # the second call reused the first's, the third did not


# --- review findings ----------------------------------------------------------------------------


async def test_lean_bytes_after_the_response_in_the_same_read_are_not_read_into_it() -> None:
    """A server that sends a second response right behind the first (in one write): the first
    response keeps its status, headers and body; the extra bytes are not read as its body and
    the connection is not reused."""
    second = b"HTTP/1.1 500 Oops\r\nX-Extra: 1\r\nContent-Length: 5\r\n\r\nextra"
    async with scripted(serving(SIZED + second)) as server, lean_pool() as pool:
        response = await post(pool, server)
        await asyncio.sleep(0.05)  # the whole write has arrived
        assert await read_all(response) == b"data: 1\n\ndata: 2\n\n"
        assert response.status == 200
        assert "x-extra" not in response.headers
        response.release()
        response = await post(pool, server)
        assert await read_all(response) == b"data: 1\n\ndata: 2\n\n"
        response.release()
    assert server.connections == 2


@pytest.mark.parametrize("lean", [False, True], ids=["aiohttp", "lean"])
@pytest.mark.parametrize("shape", ["one_long_line", "many_headers"])
async def test_a_response_head_without_bound_is_a_protocol_error(lean: bool, shape: str) -> None:
    """A head of megabytes (a broken or hostile upstream) is refused on both clients, as
    aiohttp refuses a header line over 8190 bytes, rather than buffered whole: the lean client
    has no flow control before the body, so an endless head would grow without bound until
    the first-token timeout."""
    if shape == "one_long_line":
        extra = b"X-Big: " + b"a" * (4 << 20) + b"\r\n"
    else:
        extra = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(40_000))
    answer = SSE_HEAD + extra + b"Content-Length: 0\r\n\r\n"
    async with scripted(serving(answer)) as server:
        error = await call_error(server, lean)
    assert type(error) is UpstreamProtocolError
    assert error.message.startswith("local: malformed response")


async def test_lean_bounds_the_trailer_of_a_chunked_body() -> None:
    """After the last chunk, trailer lines are held by the parser until they end: an upstream
    sending a trailer of megabytes (and no end) fails the body instead of being buffered whole
    (no body byte arrives, so flow control never pauses the connection)."""
    endless = SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"7\r\ndata: 1\r\n0\r\nX-T: "

    def make(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.request(reader)
            writer.write(endless)
            for _ in range(64):  # 4 MiB of one trailer line
                writer.write(b"t" * (1 << 16))
                await writer.drain()
            await reader.read()  # until the client closes

        return handle

    async with scripted(make) as server, lean_pool() as pool:
        response = await post(pool, server)
        assert await response.content.readany() == b"data: 1"
        async with asyncio.timeout(5):
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.content.readany()
        response.close()


async def test_lean_closes_every_connection_idle_past_the_keep_alive_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two connections pooled; calls keep coming on one of them (the most recently used is
    taken first): the other, idle past KEEPALIVE_S, is closed too, not kept open under it."""
    monkeypatch.setattr(lean, "KEEPALIVE_S", 0.2)
    closed = 0

    def make(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal closed
            while await server.request(reader):
                writer.write(SIZED)
                await writer.drain()
            closed += 1

        return handle

    async with scripted(make) as server, lean_pool() as pool:
        first, second = await asyncio.gather(post(pool, server), post(pool, server))
        for response in (first, second):
            await read_all(response)
            response.release()
        for _ in range(6):  # one connection in use every 0.1 s, for 0.6 s
            await asyncio.sleep(0.1)
            response = await post(pool, server)
            await read_all(response)
            response.release()
        await asyncio.sleep(0.05)
        assert server.connections == 2
        assert closed == 1


async def test_lean_closes_idle_connections_when_no_call_comes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a quiet gateway nothing takes from the pool, yet the connections idle past
    KEEPALIVE_S are closed (by the pool's timer), as aiohttp's connector closes its own; one
    returned later is closed in its turn, and a closed pool leaves no timer behind."""
    monkeypatch.setattr(lean, "KEEPALIVE_S", 0.3)
    closed: list[float] = []

    def make(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await server.request(reader):
                writer.write(SIZED)
                await writer.drain()
            closed.append(asyncio.get_running_loop().time())

        return handle

    async with scripted(make) as server, lean_pool() as pool:
        started = asyncio.get_running_loop().time()
        first, second = await asyncio.gather(post(pool, server), post(pool, server))
        await read_all(first)
        first.release()
        await asyncio.sleep(0.15)
        await read_all(second)
        second.release()
        assert server.connections == 2 and not closed
        async with asyncio.timeout(5):
            while len(closed) < 2:
                await asyncio.sleep(0.02)
        assert closed[0] - started >= 0.3  # not before its keep-alive time
        assert closed[1] - closed[0] >= 0.1  # each at its own time, not both at the first
        assert pool._sweep is None  # nothing idle: no timer left running
        response = await post(pool, server)  # a call after the sweep opens a new connection
        await read_all(response)
        response.release()
        assert server.connections == 3 and pool._sweep is not None
    assert pool._sweep is None


@pytest.mark.parametrize(
    "path", ["/v 1", "/v\u00e9", "/v1?x=a b"], ids=["space", "non_ascii", "query"]
)
async def test_both_clients_send_the_same_request_line(path: str) -> None:
    """An endpoint path that needs quoting (a config typo, a non-ASCII segment): the lean client
    quotes it as aiohttp does (yarl), not as raw bytes that break the request line."""
    async with scripted(serving(CHUNKED)) as server, open_session() as session:
        url = server.url.removesuffix("/v1") + path
        async with lean_pool() as pool:
            for client_pool in (None, pool):
                upstream = local_upstream(url, session, client_pool)
                with contextlib.suppress(UpstreamError):
                    async with upstream.open_stream(BODY) as stream:
                        async for _ in stream:
                            pass
    aiohttp_line, lean_line = (head.split(b"\r\n", 1)[0] for head in server.heads)
    assert lean_line == aiohttp_line
    assert b" " not in lean_line.removeprefix(b"POST ").removesuffix(b" HTTP/1.1")


def test_lean_targets_the_port_the_endpoint_names() -> None:
    """Port 0 is the port given, not the default 80 (`port or 80`); a host name is sent as
    aiohttp sends it (IDNA)."""
    zero = lean_target("http://127.0.0.1:0/v1/chat/completions")
    assert zero is not None and zero.port == 0
    idn = lean_target("http://b\u00fccher.example:8080/v1/chat/completions")
    assert idn is not None and idn.start.endswith("Host: xn--bcher-kva.example:8080\r\n")


async def test_lean_a_new_connection_lost_before_its_request_fails_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection the server dropped between the connect and the request being attached
    fails the call as a lost connection, not after the first-token timeout (nothing else would
    settle the response: its connection_lost already ran)."""
    real_connect = LeanPool._connect

    async def connect_then_lose(self: LeanPool, target: Target, timeout: float | None) -> Any:
        conn = await real_connect(self, target, timeout)
        conn.connection_lost(None)  # as if the server's close arrived first
        return conn

    monkeypatch.setattr(LeanPool, "_connect", connect_then_lose)
    async with scripted(serving(SIZED)) as server, lean_pool() as pool:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await asyncio.wait_for(post(pool, server), timeout=5)


def test_lean_pool_outliving_its_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool used on one loop and then another (an embedding program, a test runner): a
    response released after its loop ended raises nothing, and the sweep timer left on the
    ended loop does not stop the idle connections of the next loop from being closed."""
    monkeypatch.setattr(lean, "KEEPALIVE_S", 0.2)
    pool = LeanPool()

    async def calls() -> LeanResponse:
        async with scripted(serving(SIZED)) as server:
            kept, released = await asyncio.gather(post(pool, server), post(pool, server))
            for response in (kept, released):
                await read_all(response)
            released.release()  # pooled: the sweep timer is armed on this loop
            return kept

    asyncio.run(calls()).release()  # its loop is closed by now, the timer never ran

    async def call_and_wait() -> int:
        async with scripted(serving(SIZED)) as server:
            response = await post(pool, server)
            await read_all(response)
            response.release()
            await asyncio.wait_for(server.closed.wait(), 5)  # closed by the pool's sweep
            return sum(len(idle) for idle in pool._idle.values())

    assert asyncio.run(call_and_wait()) == 0
    asyncio.run(pool.close())
