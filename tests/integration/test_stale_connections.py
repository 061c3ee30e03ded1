"""Pooled upstream connections that the server closed: retried once for llama.cpp, never after a
byte of the answer arrived, never for Cerebras.

The upstream here is a real HTTP/1.1 server on 127.0.0.1, written on asyncio streams so that it
can treat a kept-alive connection the way llama-server does: it advertises
`Keep-Alive: timeout=5, max=100` and then closes the connection right after a streamed answer, or
(to hit the stale-connection path every time, not only when the close races the next request) it
keeps the connection and drops it when the next request arrives on it.

The calls run through both clients of the upstreams (the `clients` fixture): the aiohttp session
and the lean client of plain-http upstreams (gateway.upstreams.lean); the same cases hold for each.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import orjson
import pytest
from support import chat, gateway_config, post_stream

from gateway.config import ModelConfig, parse_config
from gateway.dev.sim import SimServer
from gateway.errors import UpstreamError
from gateway.http.app import create_app
from gateway.upstreams import LeanPool, OpenAICompatibleUpstream, Upstream, build_upstream
from gateway.upstreams.client import (
    STALE_LIMIT,
    CountingHandler,
    UpstreamConnector,
    open_session,
)

AfterAnswer = Literal["close", "keep"]


OnRequest = Literal["answer", "drop", "reset", "partial"]


TIMEOUTS = {"connect": 2, "first_token": 5, "idle": 5}


def sse_answer(text: str) -> list[bytes]:
    """A llama.cpp-shaped streamed answer, one SSE event per item."""
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}},
    ]
    events = [b"data: " + orjson.dumps({"object": "chat.completion.chunk", **c}) for c in chunks]
    return [e + b"\n\n" for e in [*events, b"data: [DONE]"]]


@dataclass
class KeepAliveDropper:
    """An OpenAI-compatible streaming server that drops kept-alive connections.

    `after_answer`: "close" closes each connection right after the end of a streamed answer (as
    llama-server does); "keep" keeps it open. `on_reuse` is what a request on a connection that
    already served one gets: "answer"; "drop" (the connection is closed once the request was
    read, no byte sent back); "reset" (closed with an RST as soon as the request starts to
    arrive); "partial" (the status line is sent, then the connection is closed). `on_first` is
    the same for the first request on a connection."""

    after_answer: AfterAnswer = "keep"
    on_reuse: OnRequest = "answer"
    on_first: OnRequest = "answer"
    connections: int = 0
    answered: int = 0
    closes_asked: list[bool] = field(default_factory=list)  # `Connection: close` per request
    failed: list[str] = field(default_factory=list)  # what happened to each unanswered request
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                first = await reader.read(1)  # the next request starts to arrive
                if not first:
                    return
                action = self.on_reuse if served else self.on_first
                if action == "reset":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.failed.append("reset")
                    writer.transport.abort()
                    return
                head = await self._read_request(reader, first)
                if head is None:
                    return
                self.closes_asked.append(b"\r\nconnection: close\r\n" in head.lower())
                if action == "drop":
                    self.failed.append("drop")
                    return
                if action == "partial":
                    writer.write(b"HTTP/1.1 200 OK\r\n")
                    await writer.drain()
                    self.failed.append("partial")
                    return
                close = self.closes_asked[-1]
                await self._answer(writer, f"answer {self.answered + 1}", close)
                self.answered += 1
                served += 1
                if self.after_answer == "close" or close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader, first: bytes) -> bytes | None:
        try:
            head = first + await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        return head

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, text: str, close: bool) -> None:
        connection = b"Connection: close" if close else b"Keep-Alive: timeout=5, max=100"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n%s\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" % connection
        )
        for event in sse_answer(text):
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        writer.write(b"0\r\n\r\n")
        await writer.drain()


@contextlib.asynccontextmanager
async def dropper(**options: Any) -> AsyncIterator[KeepAliveDropper]:
    server = KeepAliveDropper(**options)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def model_config(name: str, url: str) -> ModelConfig:
    section = {"endpoint": url, "model": "m", "api_key": "csk-test-key", "timeouts": TIMEOUTS}
    return parse_config({"models": {name: section}}, env={}).models[name]


BODY = {"messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Clients:
    """The session every upstream has, and the lean pool when its calls go through it."""

    session: aiohttp.ClientSession
    pool: LeanPool | None

    def upstream(self, name: str, url: str) -> OpenAICompatibleUpstream:
        upstream = build_upstream(
            name, model_config(name, url), self.session, max_event_bytes=1 << 20, pool=self.pool
        )
        assert (upstream._lean is not None) == (self.pool is not None)
        return upstream


@pytest.fixture(params=["aiohttp", "lean"])
async def clients(request: pytest.FixtureRequest) -> AsyncIterator[Clients]:
    async with open_session() as session:
        pool = LeanPool() if request.param == "lean" else None
        try:
            yield Clients(session, pool)
        finally:
            if pool is not None:
                await pool.close()


async def one_call(clients: Clients, name: str, url: str, upstream: Upstream | None = None) -> str:
    """One streamed call through `upstream` (a new one by default); the text it streamed."""
    if upstream is None:
        upstream = clients.upstream(name, url)
    text = ""
    async with upstream.open_stream(BODY) as stream:
        async for chunk in stream:
            text += chunk.text
    assert stream.saw_done and stream.call.status == "ok"
    return text


async def test_the_session_counts_what_each_connection_received() -> None:
    """The retry's test of staleness rests on aiohttp building connections with our protocol."""
    async with dropper() as server, open_session() as session:
        assert isinstance(session.connector, UpstreamConnector)
        await one_call(Clients(session, None), "local", server.url)
        conns = session.connector._conns  # what aiohttp keeps for reuse
        protocols = [proto for pooled in conns.values() for proto, _ in pooled]
        assert len(protocols) == 1 and isinstance(protocols[0], CountingHandler)
        assert protocols[0].received > 0


async def test_a_kept_connection_is_reused(clients: Clients) -> None:
    async with dropper() as server:
        texts = [await one_call(clients, "local", server.url) for _ in range(5)]
    assert texts == [f"answer {i}" for i in range(1, 6)]
    assert server.connections == 1


@pytest.mark.parametrize("drop", ["drop", "reset"])
async def test_a_stale_llamacpp_connection_is_retried_on_a_new_one(
    drop: OnRequest, clients: Clients
) -> None:
    """Every reuse meets a connection the server dropped (after reading the request, or with an
    RST as it arrives): each call is sent once more, on a new connection, and succeeds."""
    async with dropper(on_reuse=drop) as server:
        texts = [await one_call(clients, "local", server.url) for _ in range(4)]
    assert texts == [f"answer {i}" for i in range(1, 5)]
    assert server.failed == [drop] * 3
    assert server.connections == 4  # each retry's new connection serves the next call's reuse


async def test_llama_server_closing_after_each_answer_loses_no_call(clients: Clients) -> None:
    """As llama-server: the connection is closed right after each streamed answer, back to back
    and eight at a time."""
    async with dropper(after_answer="close") as server:
        texts = [await one_call(clients, "local", server.url) for _ in range(10)]
        texts += await asyncio.gather(*(one_call(clients, "local", server.url) for _ in range(8)))
        texts += [await one_call(clients, "local", server.url) for _ in range(4)]
    assert len(texts) == 22 and server.answered == 22


async def test_a_server_that_keeps_no_connection_is_no_longer_offered_one(clients: Clients) -> None:
    """A server that drops every reused connection makes pooling a loss (a failed write, then
    a new connection anyway): after STALE_LIMIT such calls the upstream asks for
    `Connection: close` and stops meeting closed connections."""
    calls = STALE_LIMIT + 4
    async with dropper(on_reuse="drop") as server:
        upstream = clients.upstream("local", server.url)
        for _ in range(calls):
            await one_call(clients, "local", server.url, upstream)
    assert server.answered == calls
    assert server.failed == ["drop"] * STALE_LIMIT
    # The stale calls' retries and every later call ask for a connection of their own.
    assert server.closes_asked[-(calls - STALE_LIMIT) :] == [True] * (calls - STALE_LIMIT)
    assert not any(server.closes_asked[: STALE_LIMIT + 1])


async def test_a_server_that_answers_on_reused_connections_keeps_the_pool(clients: Clients) -> None:
    """One stale hit (the server dropped an idle connection) does not stop pooling when reused
    connections were answered on before."""
    async with dropper() as server:
        upstream = clients.upstream("local", server.url)
        for _ in range(3):
            await one_call(clients, "local", server.url, upstream)
        server.on_reuse = "drop"
        for _ in range(STALE_LIMIT + 1):
            await one_call(clients, "local", server.url, upstream)
    assert server.failed == ["drop"] * (STALE_LIMIT + 1)
    assert not any(server.closes_asked)


async def test_no_retry_once_a_byte_of_the_answer_arrived(clients: Clients) -> None:
    """The server began to answer (a status line) and then closed: that is the server's own
    failure, not a stale connection, so the call fails without a second request."""
    async with dropper(on_reuse="partial") as server:
        await one_call(clients, "local", server.url)
        with pytest.raises(UpstreamError):
            await one_call(clients, "local", server.url)
    assert server.failed == ["partial"]
    assert server.connections == 1


async def test_no_retry_when_a_new_connection_fails(clients: Clients) -> None:
    """A new connection that closes with nothing read is the server failing, not staleness."""
    async with dropper(on_first="drop") as server:
        with pytest.raises(UpstreamError):
            await one_call(clients, "local", server.url)
    assert server.failed == ["drop"]
    assert server.connections == 1


async def test_a_cerebras_call_on_a_stale_connection_is_not_repeated(clients: Clients) -> None:
    """Cerebras is paid: a request it may have read is never sent twice by the client."""
    async with dropper(on_reuse="drop") as server:
        await one_call(clients, "cerebras", server.url)
        with pytest.raises(UpstreamError):
            await one_call(clients, "cerebras", server.url)
    assert server.failed == ["drop"]
    assert server.connections == 1


async def test_the_gateway_serves_every_turn_locally_over_dropped_connections(
    aiohttp_server: Any, tmp_path: Path, cerebras_sim: SimServer
) -> None:
    """Through the gateway: turns back to back and concurrent over a llama.cpp upstream that
    drops every reused connection are all served locally; none reaches the paid fallback."""
    async with dropper(on_reuse="reset") as server:
        config = gateway_config(tmp_path, server.url, cerebras_sim.url, timeouts=TIMEOUTS)
        gw = await aiohttp_server(create_app(config))
        url = str(gw.make_url("/v1"))
        async with aiohttp.ClientSession() as client:
            replies = [await post_stream(client, url, chat(stream=True)) for _ in range(4)]
            replies += await asyncio.gather(
                *(post_stream(client, url, chat(stream=True)) for _ in range(4))
            )
    assert [r.status for r in replies] == [200] * 8
    assert {r.headers["x-gateway-model-used"] for r in replies} == {"local"}
    assert server.answered == 8
    assert not cerebras_sim.requests
