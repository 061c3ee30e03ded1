"""The Anthropic door's sinks: the chat sinks' bookkeeping (commit, fallback reset, the partial
answer a continuation resumes from, keepalive) with Anthropic events or one message body.

`satisfied` turns true once a stop sequence matched: the answer is complete, and the relay stops
reading the upstream (which then stops generating and billing)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.doors.anthropic.decode import MessagesContext
from gateway.doors.anthropic.encode import (
    MESSAGE_STOP,
    PING_EVENT,
    SIGNATURE,
    StreamEncoder,
    message_start,
    parse_input,
    stop_reason,
    usage_of,
)
from gateway.doors.anthropic.errors import error_event
from gateway.doors.anthropic.stop import StopMatcher
from gateway.errors import GatewayError
from gateway.wire.assembly import Assembly
from gateway.wire.chunk import Chunk
from gateway.wire.sinks import CollectSink, StreamSink

Estimate = Callable[[], int]


class MessagesStreamSink(StreamSink):
    """Writes the Anthropic event stream; headers and `message_start` go out with the first
    content (or at `begin`), so a failure before it still gets a real HTTP status. A wait longer
    than the keepalive interval for the first content (a long prompt on the local model, a
    queue) sends them anyway, and `event: ping` from then on, as the Anthropic API does: an
    upstream may still be switched (nothing was committed), but a failure is then told as an
    `event: error`."""

    def __init__(
        self,
        request: web.Request,
        *,
        response_id: str,
        headers: dict[str, str],
        context: MessagesContext,
        estimate: Estimate,
        keep_answer: bool = False,
        keep_text: bool = True,
        keepalive_interval: float | None = 15.0,
    ) -> None:
        super().__init__(
            request,
            response_id=response_id,
            include_usage=True,
            headers=headers,
            keepalive_interval=keepalive_interval,
            keep_text=keep_text,
        )
        self.context = context
        self.estimate = estimate
        self.encoder = StreamEncoder(context)
        self.kept: Assembly | None = Assembly() if keep_answer else None
        self.satisfied = False
        self._estimated: int | None = None
        self._announcing: asyncio.Task[None] | None = None
        self._announce_timer: asyncio.TimerHandle | None = None
        if keepalive_interval is not None:
            self._announce_timer = asyncio.get_running_loop().call_later(
                keepalive_interval, self._announce_due
            )

    def _announce_due(self) -> None:
        self._announce_timer = None
        if self.response is None:
            self._announcing = asyncio.get_running_loop().create_task(self._announce())

    async def _announce(self) -> None:
        try:
            await self.begin()
        except (ConnectionError, RuntimeError):  # the client left; the handler finds out
            return
        finally:
            self._announcing = None

    def release(self) -> None:
        if self._announce_timer is not None:
            self._announce_timer.cancel()
            self._announce_timer = None
        announcing = self._announcing
        # One already writing the headers finishes (quiesce waits for it); cut short, it would
        # leave half a response on the connection.
        if announcing is not None and not self._prepare_lock.locked():
            announcing.cancel()
            self._announcing = None
        super().release()

    async def quiesce(self) -> None:
        """No announcement from now on, and one in flight has finished."""
        if self._announce_timer is not None:
            self._announce_timer.cancel()
            self._announce_timer = None
        announcing = self._announcing
        if announcing is not None and announcing is not asyncio.current_task():
            await asyncio.wait([announcing])

    def input_estimate(self) -> int:
        if self._estimated is None:
            self._estimated = max(self.estimate(), 1)
        return self._estimated

    ping = PING_EVENT

    def _opening(self) -> bytes:
        return message_start(self.response_id, self.context.model, self.input_estimate())

    def _encode(self, chunk: Chunk) -> bytes | None:
        if self.kept is not None:
            self.kept.add_chunk(chunk.data)
        if chunk.plain_text:
            self._note_text(chunk.text)  # the chat sink's facts: continuation reads them
            out = self.encoder.text(chunk.text) if not self.encoder.ended else b""
        elif not self._note(chunk):
            return None
        else:
            out = b""
            for choice in chunk.data.get("choices") or ():
                if isinstance(choice, dict) and choice.get("index") == 0:
                    delta = choice.get("delta")
                    if isinstance(delta, dict):
                        out += self.encoder.delta(delta)
        if self.encoder.ended:
            self.satisfied = True
        return out or None

    def reset(self) -> None:
        super().reset()
        self.encoder = StreamEncoder(self.context)
        self.satisfied = False
        if self.kept is not None:
            self.kept = Assembly()

    async def finish(self, usage: dict[str, Any], metadata: dict[str, Any]) -> None:
        del metadata  # the gateway's metadata goes out as headers; the body keeps the API's shape
        if self.response is None:
            await self._prepare()
        assert self.response is not None
        reason = self.finish_reasons.get(0)
        if 0 in self.tool_call_indexes and reason in (None, "stop"):
            reason = "tool_calls"
        events = self.encoder.finish(reason, usage, self.input_estimate())
        await self.response.write(events)

    async def close(self) -> None:
        await self._close(MESSAGE_STOP)

    async def fail(self, error: GatewayError) -> None:
        """After bytes went out: one `event: error`, then the end; before: raise."""
        if self.response is None:
            raise error
        await self._close(error_event(error))


class MessagesCollectSink(CollectSink):
    """Assembles the answer and answers with one Anthropic `message` body at `finish`."""

    def __init__(
        self,
        *,
        response_id: str,
        headers: dict[str, str],
        context: MessagesContext,
        estimate: Estimate,
    ) -> None:
        super().__init__(response_id=response_id, headers=headers)
        self.context = context
        self.estimate = estimate
        self.satisfied = False
        self.stop = StopMatcher(context.stop_sequences) if context.stop_sequences else None
        self.sent_text: list[str] = []

    async def emit(self, chunk: Chunk) -> None:
        if self.satisfied:
            return
        await super().emit(chunk)
        if self.stop is not None and chunk.text:
            self.sent_text.append(self.stop.feed(chunk.text))
            self.satisfied = self.stop.matched is not None

    def reset(self) -> None:
        super().reset()
        self.satisfied = False
        self.sent_text = []
        if self.stop is not None:
            self.stop = StopMatcher(self.context.stop_sequences)

    def body(self, usage: dict[str, Any]) -> dict[str, Any]:
        """The `message` object of the assembled answer (choice 0)."""
        parts = self.assembly.first()
        content: list[dict[str, Any]] = []
        reasoning = "".join(parts.reasoning)
        if reasoning and not self.context.thinking_off:
            thinking = reasoning if self.context.thinking_shown else ""
            content.append({"type": "thinking", "thinking": thinking, "signature": SIGNATURE})
        matched = None
        if self.stop is not None:
            text = "".join(self.sent_text) + self.stop.flush()
            matched = self.stop.matched
        else:
            text = parts.text
        if text:
            content.append({"type": "text", "text": text})
        tool_used = False
        if matched is None:
            for index in sorted(parts.tool_calls):
                call = parts.tool_calls[index]
                tool_used = True
                content.append(
                    {
                        "type": "tool_use",
                        "id": call.id or f"toolu_{self.response_id[-24:]}{index}",
                        "name": call.name,
                        "input": parse_input("".join(call.arguments), call.name),
                    }
                )
        reason, sequence = stop_reason(parts.finish_reason, tool_used, matched)
        return {
            "id": self.response_id,
            "type": "message",
            "role": "assistant",
            "model": self.context.model,
            "content": content,
            "stop_reason": reason,
            "stop_sequence": sequence,
            "usage": usage_of(usage, max(self.estimate(), 1)),
        }

    async def finish(self, usage: dict[str, Any], metadata: dict[str, Any]) -> None:
        del metadata
        self._body = self.body(usage)
