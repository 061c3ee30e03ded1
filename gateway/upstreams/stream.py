"""Reading one upstream's SSE stream into normalised chunks, with its timeouts.

Each event is parsed and walked once (gateway.wire.chunk.read_chunk); the stream keeps what the
call is billed from (usage, the tally of streamed content) and how it ended.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from gateway.accounting.records import UpstreamCall, UpstreamName
from gateway.accounting.tokens import PromptMemo
from gateway.errors import (
    CONTEXT_LENGTH_EXCEEDED,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStreamError,
    UpstreamTimeout,
)
from gateway.upstreams.billing import Tally, bill
from gateway.wire.chunk import Chunk, MalformedChunk, read_chunk
from gateway.wire.sse import DONE, EventTooLarge, SSEDecoder

if TYPE_CHECKING:
    from gateway.upstreams.base import OpenAICompatibleUpstream
    from gateway.upstreams.response import UpstreamResponse

# How long to wait for the end of the HTTP body after `[DONE]` before closing the connection.
_TAIL_WAIT_S = 0.05
# Event-loop turns a call left early spends taking in what already arrived (collect_arrived).
COLLECT_TURNS = 4


class ChunkStream(ABC):
    """Iterating yields the chunks of `batches()` one by one."""

    @abstractmethod
    def batches(self) -> AsyncIterator[list[Chunk]]:
        """The chunks of each network read together."""

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[Chunk]:
        async for batch in self.batches():
            for chunk in batch:
                yield chunk


class UpstreamStream(ChunkStream):
    """An open streamed call. Iterating yields normalised chunks (usage chunks excluded).

    After iteration, `usage`, `finish_reasons` and `saw_done` tell how it ended, and `call` holds
    what the call was billed for (estimated when no usage arrived).
    """

    def __init__(
        self,
        upstream: OpenAICompatibleUpstream,
        response: UpstreamResponse,
        call: UpstreamCall,
        prompt_tokens: PromptMemo,
        first_deadline: float,
    ) -> None:
        self.upstream = upstream
        self.response = response
        self.call = call
        self.usage: dict[str, Any] | None = None
        self.finish_reasons: dict[int, str] = {}
        self.saw_done = False
        self.tally = Tally()
        self.first_event_at: float | None = None
        self.extras: dict[str, Any] = {}
        self._prompt_tokens = prompt_tokens
        self._first_deadline = first_deadline
        self._decoder = SSEDecoder(upstream.max_event_bytes)

    @property
    def name(self) -> UpstreamName:
        return self.upstream.name

    @property
    def headers(self) -> Mapping[str, str]:
        """The upstream's response headers (its own account of its rate limits)."""
        return self.response.headers

    async def batches(self) -> AsyncIterator[list[Chunk]]:
        """The chunks of each network read together, so a relay can write them in one go.

        Chunks parsed before a broken event of the same read are still delivered first."""
        upstream = self.upstream
        decoder = self._decoder
        content = self.response.content
        idle = upstream.config.timeouts.idle
        deadline: float | None = self._first_deadline
        loop = asyncio.get_running_loop()
        while True:
            try:
                # What already arrived needs no timer; only a read that waits gets one.
                data = content.read_nowait()
                if not data:
                    async with asyncio.timeout_at(deadline):
                        data = await content.readany()
            except TimeoutError:
                if self.first_event_at is None:
                    raise UpstreamTimeout(
                        upstream.name,
                        f"{upstream.name}: no first token within "
                        f"{upstream.config.timeouts.first_token:g}s",
                    ) from None
                raise UpstreamTimeout(
                    upstream.name, f"{upstream.name}: stream idle for more than {idle:g}s"
                ) from None
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError) as exc:
                raise UpstreamProtocolError(
                    upstream.name,
                    f"{upstream.name}: connection lost mid-stream ({type(exc).__name__})",
                ) from None
            try:
                payloads = decoder.feed(data) if data else decoder.close()
            except EventTooLarge as exc:
                raise UpstreamProtocolError(upstream.name, f"{upstream.name}: {exc}") from None
            batch: list[Chunk] = []
            failure: UpstreamError | None = None
            for payload in payloads:
                if payload == DONE:
                    self.saw_done = True
                    break
                try:
                    chunk = self._parse(payload)
                except UpstreamError as exc:
                    failure = exc
                    break
                if self.first_event_at is None:
                    self.first_event_at = time.monotonic()
                if chunk is not None:
                    batch.append(chunk)
            if batch:
                yield batch
            if failure is not None:
                raise failure
            if self.saw_done:
                await self._read_tail()
                return
            if not data:
                if self.finish_reasons:
                    return  # complete answer; only the [DONE] marker is missing
                raise UpstreamProtocolError(
                    upstream.name, f"{upstream.name}: stream ended before the answer was complete"
                )
            if self.first_event_at is not None:
                deadline = loop.time() + idle

    async def _read_tail(self) -> None:
        """Read what follows `[DONE]` (the chunked terminator), briefly.

        Only a body read to its end can go back to the pool (a keep-alive connection to Cerebras
        saves a TLS handshake on the next request); if the tail does not come at once, the caller
        closes the connection instead.
        """
        content = self.response.content
        try:
            while not content.at_eof() and content.read_nowait():
                pass  # the tail usually came with [DONE]: no timer for it
            if content.at_eof():
                return
            async with asyncio.timeout(_TAIL_WAIT_S):
                while not content.at_eof() and await content.readany():
                    pass
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass

    @property
    def finished(self) -> bool:
        """The upstream ended the answer (`[DONE]` or a finish_reason)."""
        return self.saw_done or bool(self.finish_reasons)

    @property
    def fully_read(self) -> bool:
        """Whether the HTTP body was read to its end (the connection may then be reused)."""
        return self.response.content.at_eof()

    def _parse(self, payload: bytes) -> Chunk | None:
        name = self.upstream.name
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(name, f"{name}: malformed JSON event in stream") from None
        if not isinstance(data, dict):
            raise UpstreamProtocolError(name, f"{name}: stream event is not a JSON object")
        error = data.get("error")
        if error is not None:
            error = error if isinstance(error, dict) else {"message": str(error)}
            exc = UpstreamStreamError(name, error)
            if self.upstream.context_overflow(error):
                exc.condition = CONTEXT_LENGTH_EXCEEDED
            raise exc
        usage = data.pop("usage", None)
        if isinstance(usage, dict):
            self.usage = usage
        self.upstream.normalize_chunk(data, self)
        choices = data.get("choices")
        if not isinstance(choices, list):
            if usage is not None:
                return None
            raise UpstreamProtocolError(name, f"{name}: stream event without choices")
        if not choices:
            return None
        try:
            chunk = read_chunk(data)
        except MalformedChunk as exc:
            raise UpstreamProtocolError(name, f"{name}: {exc}") from None
        self.tally.add(chunk)
        if chunk.finish:
            self.finish_reasons.update(chunk.finish)
        return chunk

    def _read_arrived(self) -> bool:
        """Parse the events that arrived but were never read: a call left early is billed for
        them too, and the upstream's usage may be among them. Best effort; True once the end
        (`[DONE]`) or an error was read, when nothing more can come."""
        try:
            for payload in self._decoder.feed(self.response.content.read_nowait()):
                if payload == DONE:
                    self.saw_done = True
                    return True
                self._parse(payload)
        except (UpstreamError, EventTooLarge, aiohttp.ClientError, OSError, RuntimeError):
            return True
        return self.response.content.at_eof()

    async def collect_arrived(self) -> None:
        """Before a call left early is closed: take in what already reached this host.

        The upstream kept sending while the gateway decided; those events sit in the socket
        (and, past aiohttp's buffer limit, unread in the kernel). A few turns of the event loop
        move them into the buffer without waiting for the network, so the bill counts them:
        the upstream generated and bills them. No timer: nothing here waits for new data."""
        for _ in range(COLLECT_TURNS):
            if self._read_arrived():
                return
            await asyncio.sleep(0)

    def settle(self, status: str) -> UpstreamCall:
        """Fill `call` with billed tokens: reported usage, or an estimate of what was streamed
        (and had arrived when the call was left)."""
        if status == "cancelled" and self.usage is None:
            self._read_arrived()
        return bill(
            self.call,
            status,
            self.usage,
            self.tally,
            self._prompt_tokens,
            self.upstream.chars_per_token,
        )
