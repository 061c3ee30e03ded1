"""A lean HTTP/1.1 client for the streamed POSTs to plain-http upstreams (a local llama-server).

aiohttp's client costs about twice the CPU of a bare protocol per streamed call (its request and
response objects, timers and stream reader); on a loopback upstream that is the largest single
item of the gateway's own work. This client keeps only what those calls need:

- pooled keep-alive connections per (host, port) (`LeanPool`); a connection goes back to the pool
  only when its response was read to the end and neither side asked to close it; an idle one is
  closed after KEEPALIVE_S (aiohttp's keep-alive timeout), by a timer when no call comes;
- the response parsed by llhttp (httptools): content-length, chunked and read-until-close bodies;
- the same stale-connection retry and `ConnectionReuse` counting as the aiohttp path
  (gateway.upstreams.client.send_retrying_stale);
- flow control as aiohttp's StreamReader: reading pauses while more than HIGH_WATER bytes wait
  unread and resumes below LOW_WATER, so a slow client never makes the gateway buffer an answer;
- `close()` aborts the connection at once (the upstream stops generating).

Failures raise aiohttp's exception types (see gateway.upstreams.response), so callers handle both
clients alike. TLS, proxies, redirects and compressed bodies are not handled: an https upstream
(Cerebras) or an endpoint with user info keeps aiohttp (`lean_target` returns None).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import aiohttp
import httptools
import yarl
from aiohttp.http import SERVER_SOFTWARE
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.upstreams.client import (
    DNS_CACHE_S,
    Attempt,
    ConnectionReuse,
    send_retrying_stale,
)
from gateway.upstreams.response import ConnectFailed, MalformedResponse

# Seconds an idle pooled connection is kept (aiohttp's default keepalive_timeout).
KEEPALIVE_S = 15.0
# Unread body bytes past which reading pauses, and below which it resumes (aiohttp's
# StreamReader with its default read_bufsize of 64 KiB: high water twice the limit).
LOW_WATER = 2**16
HIGH_WATER = 2**17
# Bytes a response may send in a row without a byte of body: its head (status line, headers,
# any 1xx answers before it) and a chunked body's trailer. llhttp sets no bound, the parser holds
# a header line until it ends and flow control pauses only for body bytes, so an upstream sending
# an endless head or trailer would be buffered whole (aiohttp refuses a line over 8190 bytes).
MAX_HEAD = 2**16
# Statuses whose response has no body whatever its headers say.
_NO_BODY = (204, 304)
# Sent on every request unless the caller set them. No compressed body is asked for: the
# client does not decode one. The user agent is aiohttp's, so the upstream sees no change.
_DEFAULT_HEADERS = {"accept": "*/*", "user-agent": SERVER_SOFTWARE}
_FIXED_HEADERS = "Accept-Encoding: identity\r\n"
_POOL_CLOSED = "the upstream connection pool is closed"


@dataclass(frozen=True, slots=True)
class Target:
    """One endpoint URL, parsed once: where to connect and the start of each request."""

    host: str
    port: int
    literal: bool  # an IP address: connect without resolving
    start: str  # the request line and the Host header

    @property
    def key(self) -> tuple[str, int]:
        return (self.host, self.port)


def lean_target(url: str) -> Target | None:
    """The target of `url` when the lean client can serve it: `http://` with no user info
    (aiohttp turns user info into a Basic authorization); None for anything else. The URL is
    read by yarl, as aiohttp reads it: the path quoted, the host in IDNA, the Host header the
    same."""
    try:
        parsed = yarl.URL(url)
        host, port, netloc = parsed.raw_host, parsed.port, parsed.host_port_subcomponent
    except (ValueError, UnicodeError):
        return None
    if (
        parsed.scheme != "http"
        or not host
        or port is None
        or netloc is None
        or parsed.raw_user is not None
        or parsed.raw_password is not None
    ):
        return None
    try:  # an IPv6 zone as the OS reads it ("%eth0", not "%25eth0")
        ipaddress.ip_address(parsed.host or host)
        literal = True
    except ValueError:
        literal = False  # connected to by its IDNA name, as aiohttp does
    connect_to = (parsed.host or host) if literal else host
    start = f"POST {parsed.raw_path_qs or '/'} HTTP/1.1\r\nHost: {netloc}\r\n"
    return Target(connect_to, port, literal, start)


def request_head(target: Target, headers: Mapping[str, str], length: int) -> tuple[bytes, bool]:
    """The request's head, and whether it asks the server to close the connection after it.
    ValueError for a header that would break the head (as aiohttp raises)."""
    lines = [target.start]
    names = set()
    close = False
    for name, value in headers.items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value or ":" in name:
            raise ValueError(f"invalid HTTP header {name!r}")
        lower = name.lower()
        names.add(lower)
        if lower == "connection" and value.lower() == "close":
            close = True
        lines.append(f"{name}: {value}\r\n")
    for lower, value in _DEFAULT_HEADERS.items():
        if lower not in names:
            lines.append(f"{lower.title()}: {value}\r\n")
    lines.append(f"{_FIXED_HEADERS}Content-Length: {length}\r\n\r\n")
    return "".join(lines).encode("utf-8"), close


def response_headers(pairs: list[tuple[bytes, bytes]]) -> CIMultiDictProxy[str]:
    """Response headers as aiohttp's client gives them (multidict: looked up by any case, a
    repeated header kept as its several values), decoded as its parser decodes them."""
    return CIMultiDictProxy(
        CIMultiDict(
            (name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
            for name, value in pairs
        )
    )


class LeanBody:
    """A response body as it arrives: the `ResponseBody` reads, with flow control."""

    __slots__ = ("_conn", "_buffer", "_size", "_eof", "_exception", "_waiter")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._buffer: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._exception: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    # --- fed by the connection ----------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """The parser's `on_body` (called once per piece of body: kept to one frame)."""
        self._buffer.append(data)
        self._size += len(data)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self._size > HIGH_WATER:
            self._conn.pause()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if not self._eof and self._exception is None:
            self._exception = exc
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # --- read by the stream -------------------------------------------------------------------

    def read_nowait(self, n: int = -1) -> bytes:
        """What arrived (at most `n` bytes when `n` >= 0). What arrived before a failure is
        returned first; the failure is raised once nothing is left."""
        buffer = self._buffer
        if not buffer:
            if self._exception is not None:
                raise self._exception
            return b""
        if n < 0 or n >= self._size:
            data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
            buffer.clear()
        else:
            parts: list[bytes] = []
            wanted = n
            while wanted:
                head = buffer[0]
                if len(head) <= wanted:
                    parts.append(buffer.popleft())
                    wanted -= len(head)
                else:
                    parts.append(head[:wanted])
                    buffer[0] = head[wanted:]
                    wanted = 0
            data = b"".join(parts)
        self._size -= len(data)
        if self._size < LOW_WATER:
            self._conn.resume()
        return data

    async def readany(self) -> bytes:
        while not self._buffer:
            if self._eof:
                return b""
            if self._exception is not None:
                raise self._exception
            waiter = self._new_waiter()  # awaited here: no coroutine of its own per wait
            try:
                await waiter
            finally:
                self._waiter = None
        return self.read_nowait()

    async def read(self, n: int = -1) -> bytes:
        if n < 0:
            parts = []
            while chunk := await self.readany():
                parts.append(chunk)
            return b"".join(parts)
        while not self._buffer and not self._eof and self._exception is None:
            await self._wait()
        return self.read_nowait(n)

    def at_eof(self) -> bool:
        return self._eof and not self._buffer

    async def _wait(self) -> None:
        waiter = self._new_waiter()
        try:
            await waiter
        finally:
            self._waiter = None

    def _new_waiter(self) -> asyncio.Future[None]:
        if self._waiter is not None:
            raise RuntimeError("a response body is read by one reader at a time")
        waiter = self._waiter = self._conn.loop.create_future()
        return waiter


class LeanResponse:
    """One response (`UpstreamResponse`); also the parser's callbacks while it arrives."""

    __slots__ = (
        "status",
        "headers",
        "content",
        "done",
        "on_body",
        "parser",
        "_conn",
        "_head",
        "_pairs",
        "_until_close",
        "_interim",
        "_reusable",
        "_head_left",
    )

    def __init__(self, conn: Connection, head: asyncio.Future[None], *, close: bool) -> None:
        self.status = 0
        self.headers: Mapping[str, str] = {}
        self.content = LeanBody(conn)
        self.done = False  # the whole message arrived
        self.on_body = self.content.feed  # read by the parser as it is built
        self.parser = httptools.HttpResponseParser(self)
        self._conn: Connection | None = conn
        self._head = head  # set once the status line and headers arrived
        self._pairs: list[tuple[bytes, bytes]] = []
        self._until_close = False  # the body ends when the server closes the connection
        self._interim = False  # a 1xx response is being skipped
        self._reusable = not close
        self._head_left = MAX_HEAD  # bytes without body that may still come (data_received)

    # --- httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done:  # bytes past the end of the response (a second answer, pipelined)
            raise MalformedResponse("bytes after the end of the response")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._pairs.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            self._pairs = []
            self._interim = True
            return
        self.status = status
        headers = self.headers = response_headers(self._pairs)
        self._pairs = []
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            raise MalformedResponse(f"a body encoded as {encoding!r} was not asked for")
        self._until_close = (
            status not in _NO_BODY
            and "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
        )
        if not self._head.done():
            self._head.set_result(None)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if not self.parser.should_keep_alive():
            self._reusable = False
        self._finish()

    # --- from the connection --------------------------------------------------------------------

    def _finish(self) -> None:
        self.done = True
        self.content.feed_eof()

    def _fail(self, exc: BaseException) -> None:
        """The connection failed: before the headers, the request fails; after, the body."""
        self._reusable = False
        if not self._head.done():
            self._head.set_exception(exc)
        else:
            self.content.fail(exc)

    def _lost(self, exc: BaseException | None) -> None:
        self._reusable = False
        if self.done:
            return
        if self._head.done():
            if self._until_close and exc is None:
                self._finish()
            else:
                self.content.fail(aiohttp.ClientPayloadError("Response payload is not completed"))
        elif isinstance(exc, OSError):
            self._head.set_exception(aiohttp.ClientOSError(*exc.args))
        else:
            self._head.set_exception(aiohttp.ServerDisconnectedError())

    # --- UpstreamResponse -----------------------------------------------------------------------

    def release(self) -> None:
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        if self.done and self._reusable and self.content.at_eof():
            conn.pool.put_back(conn)
        else:
            conn.abort()

    def close(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.abort()


class Connection(asyncio.Protocol):
    """One connection to an upstream; it feeds the response of the request it carries."""

    def __init__(self, pool: LeanPool, key: tuple[str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.response: LeanResponse | None = None
        self.received = 0  # bytes received over the connection's life (the stale check)
        self.lost = False
        self.paused = False
        self.idle_since = 0.0

    def start(self, response: LeanResponse) -> None:
        """Carry `response` next (its own parser: nothing of the previous message is left)."""
        self.response = response

    @property
    def usable(self) -> bool:
        transport = self.transport
        return not self.lost and transport is not None and not transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        response = self.response
        if response is None or response.done:
            self.abort()  # bytes no request asked for: the connection cannot be trusted
            return
        content = response.content
        size = content._size  # no read runs while the parser is fed
        try:
            response.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if not response.done:
                refusal = exc.__context__  # raised by a callback of the response
                if isinstance(refusal, MalformedResponse):
                    detail = str(refusal)
                else:
                    detail = f"{type(exc).__name__}: {exc}"
                if response._head.done():
                    response._fail(aiohttp.ClientPayloadError(f"malformed body ({detail})"))
                else:
                    response._fail(MalformedResponse(detail))
            self.abort()
            return
        if content._size != size or response.done:
            response._head_left = MAX_HEAD
            return
        response._head_left -= len(data)  # none of it body: head, chunk framing or trailer
        if response._head_left < 0:
            if response._head.done():
                response._fail(
                    aiohttp.ClientPayloadError(
                        f"malformed body (over {MAX_HEAD} bytes without body)"
                    )
                )
            else:
                response._fail(MalformedResponse(f"a response head over {MAX_HEAD} bytes"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pool.forget(self)
        response, self.response = self.response, None
        if response is not None:
            response._lost(exc)

    def pause(self) -> None:
        if not self.paused and self.usable:
            self.paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            if self.usable:
                assert self.transport is not None
                self.transport.resume_reading()

    def abort(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()


class LeanPool:
    """The gateway's pooled plain-http connections, for its lifetime; `close()` at shutdown."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[Connection]] = {}
        self._open: set[Connection] = set()
        self._addresses: dict[tuple[str, int], tuple[float, list[tuple[int, str, int]]]] = {}
        # The one timer closing idle connections on a quiet gateway (None: none is idle).
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    async def post(
        self,
        target: Target,
        data: bytes,
        headers: Mapping[str, str],
        *,
        connect_timeout: float | None,
        retry_stale: bool = False,
        reuse: ConnectionReuse | None = None,
    ) -> LeanResponse:
        """POST `data` and return the response once its headers arrived; the stale retry and
        `reuse` as gateway.upstreams.client.post."""

        async def send(headers: Mapping[str, str], attempt: Attempt) -> LeanResponse:
            return await self._send(target, data, headers, connect_timeout, attempt)

        if not retry_stale:
            return await send(headers, Attempt())
        return await send_retrying_stale(send, headers, reuse)

    async def close(self) -> None:
        """Close every connection, idle or carrying a response."""
        self.closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in list(self._open):
            conn.abort()
        self._open.clear()
        self._idle.clear()

    def put_back(self, conn: Connection) -> None:
        """`conn` finished a response the server keeps the connection after: keep it idle."""
        if conn.loop.is_closed():  # released after its loop ended: nothing can use it again
            conn.lost = True
            return
        if self.closed or not conn.usable:
            conn.abort()
            return
        conn.response = None
        conn.resume()
        conn.idle_since = conn.loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        sweep = self._sweep
        if sweep is None or sweep.cancelled() or self._sweep_loop is not conn.loop:
            if sweep is not None:  # a timer of a loop that ended (a pool outliving its loop)
                sweep.cancel()
            self._sweep_loop = conn.loop
            self._sweep = conn.loop.call_at(conn.idle_since + KEEPALIVE_S, self._close_expired)

    def _close_expired(self) -> None:
        """The sweep timer: close the connections idle for KEEPALIVE_S, and wait for the next
        one to expire while any is idle (one timer for the pool, not one per connection)."""
        self._sweep = None
        loop = asyncio.get_running_loop()
        expired = loop.time() - KEEPALIVE_S
        next_due: float | None = None
        for key, idle in list(self._idle.items()):
            while idle and idle[0].idle_since <= expired:  # in the order they came back
                idle.pop(0).abort()
            if idle:
                due = idle[0].idle_since + KEEPALIVE_S
                next_due = due if next_due is None else min(next_due, due)
            else:
                del self._idle[key]
        if next_due is not None and not self.closed:
            self._sweep = loop.call_at(next_due, self._close_expired)

    def forget(self, conn: Connection) -> None:
        """`conn` is closed."""
        self._open.discard(conn)
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    async def _send(
        self,
        target: Target,
        data: bytes,
        headers: Mapping[str, str],
        connect_timeout: float | None,
        attempt: Attempt,
    ) -> LeanResponse:
        if self.closed:
            raise aiohttp.ClientConnectionError(_POOL_CLOSED)
        head, close = request_head(target, headers, len(data))
        conn = self._take(target.key, fresh=attempt.fresh)
        if conn is None:
            conn = await self._connect(target, connect_timeout)
        attempt.protocol = conn
        attempt.received_before = conn.received
        response = LeanResponse(conn, conn.loop.create_future(), close=close)
        conn.start(response)
        if conn.lost:  # closed before the response was attached: nothing would settle it
            response._lost(None)
        try:
            assert conn.transport is not None
            conn.transport.writelines((head, data))
            await response._head
        except BaseException:
            response.close()  # cancelled or failed: the connection is not reused
            raise
        return response

    def _take(self, key: tuple[str, int], *, fresh: bool) -> Connection | None:
        """A pooled connection that is still open, else None. `fresh`: none is taken, and the
        idle ones are closed (the server most likely dropped them all)."""
        idle = self._idle.get(key)
        if not idle:
            return None
        expired = asyncio.get_running_loop().time() - KEEPALIVE_S
        # The list is in the order the connections came back: the expired ones are at its
        # start, under the ones still in use (which are taken first and would keep them open).
        while idle and idle[0].idle_since < expired:
            idle.pop(0).abort()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be closed
            if fresh or not conn.usable or conn.idle_since < expired:
                conn.abort()
                continue
            return conn
        return None

    async def _connect(self, target: Target, timeout: float | None) -> Connection:
        """A new connection, opened by the event loop; ConnectFailed when none can be."""
        loop = asyncio.get_running_loop()
        last: OSError | None = None
        try:
            async with asyncio.timeout(timeout):
                for family, host, port in await self._resolve(target):
                    try:
                        _, conn = await loop.create_connection(
                            lambda: Connection(self, target.key), host, port, family=family
                        )
                    except OSError as exc:  # ETIMEDOUT from the OS too: a failed connect
                        last = exc
                        continue
                    if self.closed:
                        conn.abort()
                        raise aiohttp.ClientConnectionError(_POOL_CLOSED)
                    self._open.add(conn)
                    return conn
        except OSError as exc:
            if exc.errno is None and isinstance(exc, TimeoutError):
                raise  # timeouts.connect ran out (as aiohttp's connector tells them apart)
            last = exc  # the name did not resolve
        assert last is not None
        raise ConnectFailed(target.host, target.port, last)

    async def _resolve(self, target: Target) -> list[tuple[int, str, int]]:
        """(family, address, port) to try in turn; a host name's are kept DNS_CACHE_S."""
        if target.literal:
            return [(0, target.host, target.port)]
        loop = asyncio.get_running_loop()
        cached = self._addresses.get(target.key)
        if cached is not None and cached[0] > loop.time():
            return cached[1]
        infos = await loop.getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        addresses = [(int(family), str(addr[0]), int(addr[1])) for family, _, _, _, addr in infos]
        if not addresses:
            raise OSError(f"{target.host} resolved to no address")
        self._addresses[target.key] = (loop.time() + DNS_CACHE_S, addresses)
        return addresses
