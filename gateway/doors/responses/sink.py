"""Sinks of the Responses door: the stream as Responses events, or one `response` object.

They are the chat sinks with another encoding: the bookkeeping a strategy and the relay rely on
(`committed`, `has_answer`, `partial_answer`, `reset`, the lazy headers, the keepalive, the
answer kept for verification samples) is inherited unchanged; only what the client reads
differs. The ledger row is committed before the final event (`response.completed` /
`response.incomplete`), as the chat stream commits it before `[DONE]`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.doors.responses.decode import ResponsesContext
from gateway.doors.responses.encode import (
    ResponseEvents,
    output_of,
    response_object,
    status_of,
    usage_of,
)
from gateway.doors.responses.errors import failed_error
from gateway.errors import GatewayError
from gateway.wire.chunk import Chunk
from gateway.wire.sinks import CollectSink, KeepingStreamSink, StreamSink


class ResponsesStreamSink(StreamSink):
    """Writes the Responses event stream; headers and `response.created` go out with the first
    answer content (or at `begin`)."""

    def __init__(self, request: web.Request, *, context: ResponsesContext, **kwargs: Any) -> None:
        super().__init__(request, **kwargs)
        self.events = ResponseEvents(self.response_id, context)
        self.model_name = context.model
        self._end: tuple[dict[str, Any], dict[str, Any]] | None = None

    def _opening(self) -> bytes:
        return self.events.start()

    def _encode(self, chunk: Chunk) -> bytes | None:
        if chunk.plain_text:
            self._note_text(chunk.text)
            return self.events.text(chunk.text)
        if not self._note(chunk) or 0 not in chunk.shown:
            return None  # a Responses answer has one choice: index 0
        for choice in chunk.data["choices"]:
            if isinstance(choice, dict) and choice.get("index") == 0:
                delta = choice.get("delta")
                return self.events.delta(delta) if isinstance(delta, dict) else None
        return None

    def reset(self) -> None:
        super().reset()
        self.model_name = self.events.context.model

    async def finish(self, usage: dict[str, Any], metadata: dict[str, Any]) -> None:
        if self.response is None:
            await self._prepare()
        assert self.response is not None
        closing = self.events.finish()
        if closing:
            await self.response.write(closing)
        self._end = (usage, metadata)

    async def close(self) -> None:
        """`response.completed` (or `response.incomplete`), which carries the usage."""
        assert self._end is not None, "close() comes after finish()"
        usage, metadata = self._end
        await self._close(self.events.completed(usage, self.finish_reasons.get(0), metadata))

    async def fail(self, error: GatewayError) -> None:
        """After bytes went out: `response.failed`, then close; before: raise."""
        if self.response is None:
            raise error
        await self._close(self.events.failed(failed_error(error)))


class KeepingResponsesStreamSink(KeepingStreamSink, ResponsesStreamSink):
    """A ResponsesStreamSink that keeps the answer it streams, for verification samples."""


class ResponsesCollectSink(CollectSink):
    """Assembles the answer and answers with one `response` object at `finish`."""

    def __init__(self, *, context: ResponsesContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.context = context

    async def finish(self, usage: dict[str, Any], metadata: dict[str, Any]) -> None:
        parts = self.assembly.first()
        calls = [parts.tool_calls[i].as_dict() for i in sorted(parts.tool_calls)]
        tag = self.response_id.removeprefix("resp_")[:24]
        output = output_of("".join(parts.reasoning), parts.text, calls, tag)
        status, incomplete = status_of(parts.finish_reason)
        body = response_object(
            self.response_id,
            self.created,
            self.context,
            status=status,
            output=output,
            usage=usage_of(usage),
            incomplete=incomplete,
        )
        for key, value in metadata.items():
            body.setdefault(key, value)
        self._body = body
