"""The HTTP side of an SSE stream: headers, `: ping` keepalives, and hung-peer detection.

`EventStream` is a plain `web.StreamResponse` with the `text/event-stream` headers. Its keepalive
is one timer handle per stream, not a task: a task is created only when a ping is due, so a
request answered within the keepalive interval costs one `call_later` and its cancellation.

Hung peers: the socket gets `TCP_USER_TIMEOUT` (Linux), so the kernel aborts the connection when
sent bytes stay unacknowledged for `send_timeout`; and when the send buffer has stayed full for
`send_timeout` (a client that acknowledges but stopped reading), the next ping aborts the
transport instead of writing. The option is set on the first response of a connection and left
there (a later response on a kept-alive connection wants the same detection), so no read, no
restore and no second system call.

The headers go out in the same write as the first event: every sink writes its opening events
right after `prepare`, so nothing waits for them, and a stream costs one send less.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import weakref
from collections.abc import Mapping

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_writer import StreamWriter

PING = b": ping\n\n"
_TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", None)
_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",
}
# Transports whose socket already has TCP_USER_TIMEOUT, with the value set.
_LIMITED: weakref.WeakKeyDictionary[asyncio.BaseTransport, int] = weakref.WeakKeyDictionary()


class EventStream(web.StreamResponse):
    """An SSE response; write events with `write`, end with `write_eof` (which stops the pings).

    `keepalive_interval`: seconds between `ping` keepalives (the `: ping` comment unless the
    door gives its own event as `ping`), None for none. `send_timeout`:
    seconds a written byte may stay unacknowledged, or the send buffer full, before the
    connection is aborted; None to wait forever."""

    # aiohttp: the headers are sent with the first write (as for a web.Response), not alone.
    _send_headers_immediately = False

    def __init__(
        self,
        *,
        headers: Mapping[str, str],
        keepalive_interval: float | None = 15.0,
        send_timeout: float | None = 120.0,
        ping: bytes = PING,
    ) -> None:
        super().__init__(headers={**headers, **_HEADERS})
        if keepalive_interval is not None and keepalive_interval <= 0:
            raise ValueError("keepalive_interval must be positive")
        self.keepalive_interval = keepalive_interval
        self.ping = ping
        self.send_timeout = send_timeout
        self._timer: asyncio.TimerHandle | None = None
        self._pinging: asyncio.Task[None] | None = None
        self._stopped = False
        self._drained_at = 0.0

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        self._limit_unacknowledged(request)
        writer = await super().prepare(request)
        self._drained_at = asyncio.get_running_loop().time()
        self._arm()
        return writer

    def stop_keepalive(self) -> None:
        """No more pings; idempotent."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pinging is not None and self._pinging is not asyncio.current_task():
            self._pinging.cancel()
        self._pinging = None

    async def write_eof(self, data: bytes = b"") -> None:
        self.stop_keepalive()
        await super().write_eof(data)

    def _limit_unacknowledged(self, request: web.BaseRequest) -> None:
        transport = request.transport
        if self.send_timeout is None or _TCP_USER_TIMEOUT is None or transport is None:
            return
        millis = int(self.send_timeout * 1000)
        if _LIMITED.get(transport) == millis:
            return
        sock = transport.get_extra_info("socket")
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_USER_TIMEOUT, millis)
            _LIMITED[transport] = millis

    def _arm(self) -> None:
        if self.keepalive_interval is None or self._stopped:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.keepalive_interval, self._due)

    def _due(self) -> None:
        self._timer = None
        if self._stopped:
            return
        if self._stalled_too_long():
            self._abort()
            return
        self._pinging = asyncio.get_running_loop().create_task(self._ping())

    async def _ping(self) -> None:
        writer = self._payload_writer
        try:
            if not isinstance(writer, StreamWriter):
                return
            # drain=False: never waits, so the ping cannot hold a writer's drain hostage;
            # a client that stopped reading is found by _stalled_too_long instead.
            await writer.write(self.ping, drain=False)
        except (ConnectionError, RuntimeError):  # gone, or written after EOF
            return
        finally:
            self._pinging = None
        self._arm()

    def _stalled_too_long(self) -> bool:
        """True when the send buffer has stayed above its high-water mark (the client takes no
        bytes) at every ping for `send_timeout`; sampled at each ping."""
        transport = self._req.transport if self._req is not None else None
        if transport is None or self.send_timeout is None:
            return False
        now = asyncio.get_running_loop().time()
        if transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[1]:
            self._drained_at = now
            return False
        return now - self._drained_at >= self.send_timeout

    def _abort(self) -> None:
        self.stop_keepalive()
        transport = self._req.transport if self._req is not None else None
        if transport is not None:
            transport.abort()
