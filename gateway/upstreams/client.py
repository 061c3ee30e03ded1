"""The one aiohttp client of the upstream calls: its session, connector settings and timeouts.

The gateway opens one pooled session for its lifetime (`open_session`) and closes it at shutdown.
Its connector counts the bytes each connection has received, so that a call may tell a stale
pooled connection (the server closed it while it sat in the pool: the request fails on the write,
or the connection closes before any byte of a response) from a failure of the server itself;
`post` retries only the former, once, on a fresh connection, and only when the caller asks
(an upstream whose server drops kept-alive connections, see gateway.upstreams.llamacpp). The
retry itself (`send_retrying_stale`) is shared with the lean client of plain-http upstreams
(gateway.upstreams.lean), whose connections count their bytes the same way.

A server may also drop every connection after a streamed answer (llama-server does): then pooling
saves nothing and each stale hit costs a failed write. `ConnectionReuse` counts both outcomes so
that the caller can stop pooling for such a server (it then asks for `Connection: close`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar, cast

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.connector import Connection

from gateway.config import ModelConfig

# Seconds a resolved upstream host name is kept (the endpoints are fixed by config).
DNS_CACHE_S = 300


_data_received = ResponseHandler.data_received  # called directly: cheaper than super() per read


class CountingHandler(ResponseHandler):
    """aiohttp's response protocol, counting the bytes its connection has received."""

    received = 0

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        _data_received(self, data)


class Counted(Protocol):
    """A connection's protocol that counts the bytes it has received."""

    received: int


class Attempt:
    """One request's connection, as the client handed it out (set by `post`)."""

    __slots__ = ("protocol", "received_before", "fresh")

    def __init__(self, *, fresh: bool = False) -> None:
        self.protocol: Counted | None = None
        self.received_before = 0
        # True: a pooled connection is not taken; a new one is opened.
        self.fresh = fresh

    @property
    def stale(self) -> bool:
        """The request went out on a reused connection and no byte of its response arrived:
        the server had closed that connection before it read the request."""
        protocol = self.protocol
        return (
            protocol is not None
            and self.received_before > 0
            and protocol.received == self.received_before
        )


# Stale hits with no reused connection ever answering, after which pooling is given up.
STALE_LIMIT = 3


class ConnectionReuse:
    """How one upstream's server treats kept-alive connections, as `post` saw it."""

    __slots__ = ("answered", "stale")

    def __init__(self) -> None:
        self.answered = 0  # calls answered on a reused connection
        self.stale = 0  # calls that met a connection the server had closed

    @property
    def worth_pooling(self) -> bool:
        """False once the server dropped STALE_LIMIT pooled connections and never answered on a
        reused one: it closes every connection, so each call may as well ask for a new one."""
        return self.answered > 0 or self.stale < STALE_LIMIT


# The keyword arguments aiohttp passes for a plain TCP connection (see _wrap_create_connection).
_PLAIN_KWARGS = frozenset({"ssl", "server_hostname"})

_ATTEMPT: ContextVar[Attempt | None] = ContextVar("upstream_attempt", default=None)


class UpstreamConnector(aiohttp.TCPConnector):
    """A TCPConnector whose connections count received bytes and that tells `post` which
    connection a request went out on."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # aiohttp builds each connection's protocol with this factory (an attribute since 3.0;
        # tests/integration/test_upstream_client.py checks that it is still used).
        self._factory = cast(
            "functools.partial[ResponseHandler]",
            functools.partial(CountingHandler, loop=self._loop),
        )

    async def _wrap_create_connection(
        self,
        *args: Any,
        addr_infos: list[Any],
        req: aiohttp.ClientRequest,
        timeout: aiohttp.ClientTimeout,
        client_error: type[Exception] = aiohttp.ClientConnectorError,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, ResponseHandler]:
        """A plain TCP connection to one address (a local llama-server on 127.0.0.1) is opened
        by the event loop itself: aiohttp's default builds and connects the socket in Python
        (aiohappyeyeballs), which costs about a third more CPU per connection. Anything else
        (TLS, several addresses, a local address, arguments this version does not know) takes
        aiohttp's own path. (A private aiohttp hook: if a version renames it, the default runs.)"""
        if (
            len(addr_infos) != 1
            or kwargs.keys() - _PLAIN_KWARGS
            or kwargs.get("ssl")
            or kwargs.get("server_hostname") is not None
            or getattr(self, "_local_addr_infos", None)
        ):
            return await super()._wrap_create_connection(
                *args,
                addr_infos=addr_infos,
                req=req,
                timeout=timeout,
                client_error=client_error,
                **kwargs,
            )
        family, _, proto, _, address = addr_infos[0]
        factory: Callable[[], ResponseHandler] = args[0]
        host: str = address[0]
        port: int = address[1]
        try:
            async with asyncio.timeout(timeout.sock_connect):
                transport, protocol = await self._loop.create_connection(
                    factory, host, port, family=family, proto=proto
                )
                return transport, protocol
        except OSError as exc:
            if exc.errno is None and isinstance(exc, TimeoutError):
                raise
            raise client_error(req.connection_key, exc) from exc

    async def connect(
        self, req: aiohttp.ClientRequest, traces: list[Any], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        conn = await super().connect(req, traces, timeout)
        attempt = _ATTEMPT.get()
        if attempt is None:
            return conn
        protocol = conn.protocol
        while attempt.fresh and isinstance(protocol, CountingHandler) and protocol.received:
            # A pooled connection, when the retry wants a new one: its idle siblings were most
            # likely dropped by the same server, so it is closed rather than put back.
            conn.close()
            conn = await super().connect(req, traces, timeout)
            protocol = conn.protocol
        if isinstance(protocol, CountingHandler):
            attempt.protocol = protocol
            attempt.received_before = protocol.received
        return conn


def open_session(*, pooled: bool = True) -> aiohttp.ClientSession:
    """A client session for upstream calls; the caller closes it (`await session.close()`).

    Pooled: no limit on connections (the gate and the upstreams' own limits bound them) and
    closed TLS transports cleaned up. Not pooled: a fresh connection per request (the doctor's
    probes, one-off checks)."""
    connector: aiohttp.TCPConnector
    if pooled:
        connector = UpstreamConnector(
            limit=0, ttl_dns_cache=DNS_CACHE_S, enable_cleanup_closed=True
        )
    else:
        connector = aiohttp.TCPConnector(force_close=True)
    return aiohttp.ClientSession(connector=connector)


R = TypeVar("R")


async def send_retrying_stale(
    send: Callable[[Mapping[str, str], Attempt], Awaitable[R]],
    headers: Mapping[str, str],
    reuse: ConnectionReuse | None,
) -> R:
    """`send(headers, attempt)` once, and once more on a new connection when the first went out
    on a pooled connection that the server had already closed (`attempt.stale`). `send` sets
    `attempt.protocol` and `received_before` when it takes a connection, and opens a new one
    for an attempt that is `fresh` (closing the idle ones it passes over). `reuse` counts what
    the stale check saw; once pooling is not worth it the retry asks for `Connection: close`."""
    attempt = Attempt()
    try:
        response = await send(headers, attempt)
    except TimeoutError:
        raise
    except (aiohttp.ClientConnectionError, OSError):
        if not attempt.stale:
            raise
    else:
        if reuse is not None and attempt.received_before:
            reuse.answered += 1
        return response
    if reuse is not None:
        reuse.stale += 1
        if not reuse.worth_pooling:  # this one's connection is not kept either
            headers = {**headers, "Connection": "close"}
    return await send(headers, Attempt(fresh=True))


async def post(
    session: aiohttp.ClientSession,
    url: str,
    data: bytes,
    headers: Mapping[str, str],
    timeout: aiohttp.ClientTimeout,
    *,
    retry_stale: bool = False,
    reuse: ConnectionReuse | None = None,
) -> aiohttp.ClientResponse:
    """POST `data` and return the response once its headers arrived.

    `retry_stale`: when the request went out on a pooled connection that the server had already
    closed (the write fails, or the connection closes before any byte of a response), send it
    once more on a new connection. The server never answered the first, so at most it spent the
    work of reading it; a failure after any response byte, or on a new connection, is raised.
    Only a session from `open_session` can tell; with another the call is never repeated.
    `reuse` counts what the stale check saw (with `retry_stale` only)."""
    if not retry_stale:
        return await session.post(url, data=data, headers=headers, timeout=timeout)

    async def send(headers: Mapping[str, str], attempt: Attempt) -> aiohttp.ClientResponse:
        token = _ATTEMPT.set(attempt)  # read by UpstreamConnector.connect
        try:
            return await session.post(url, data=data, headers=headers, timeout=timeout)
        finally:
            _ATTEMPT.reset(token)

    return await send_retrying_stale(send, headers, reuse)


def request_timeout(config: ModelConfig) -> aiohttp.ClientTimeout:
    """Only the connect is timed by aiohttp; first token and idle gaps are timed by the stream,
    which knows which of them it is waiting for."""
    return aiohttp.ClientTimeout(total=None, sock_connect=config.timeouts.connect, sock_read=None)
