"""What an upstream call's response offers its readers, whichever HTTP client fetched it.

Both clients satisfy `UpstreamResponse`: aiohttp's `ClientResponse` (https upstreams, and any
session without the lean pool) and `gateway.upstreams.lean.LeanResponse` (plain-http upstreams).
The stream, the error reading and the call's settlement use only this interface.

Failures raise aiohttp's exception types in both clients (`ServerDisconnectedError`,
`ClientOSError`, `ClientPayloadError`), so that the callers' handling and the gateway's error
messages do not depend on the client; the two below are the lean client's own, mapped by
gateway.upstreams.errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import aiohttp


class ResponseBody(Protocol):
    """The body as it arrives (aiohttp's `StreamReader` reads)."""

    def read_nowait(self, n: int = -1) -> bytes:
        """What arrived and was not read yet (at most `n` bytes when `n` >= 0); b"" if none."""
        ...

    async def readany(self) -> bytes:
        """The next bytes to arrive; b"" once the body ended."""
        ...

    async def read(self, n: int = -1) -> bytes:
        """With `n` >= 0: at most `n` bytes, as soon as any arrived (b"" at the end)."""
        ...

    def at_eof(self) -> bool:
        """The body ended and every byte of it was read."""
        ...


class UpstreamResponse(Protocol):
    """A response whose status line and headers arrived; its body is read from `content`."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> ResponseBody: ...

    def release(self) -> object:
        """Done with it: the connection is kept for another call when the body was read to
        its end and the server keeps it, else closed."""
        ...

    def close(self) -> None:
        """Close the connection at once (an upstream that is still sending stops)."""
        ...


class ConnectFailed(aiohttp.ClientConnectionError):
    """No connection to the upstream could be opened; `os_error` is the OS's reason."""

    def __init__(self, host: str, port: int, os_error: OSError) -> None:
        super().__init__(f"cannot connect to {host}:{port} ({os_error.strerror or os_error})")
        self.os_error = os_error


class MalformedResponse(aiohttp.ClientError):
    """The upstream's answer is not an HTTP/1.1 response the gateway can read."""
