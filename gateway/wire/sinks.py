"""Where an answer goes: an SSE stream or one JSON body, in the format of docs/wire.md
(tests/integration/test_wire_stream.py pins it).

A sink is handed the committed upstream's normalised chunks (gateway.wire.chunk), whose facts it
reads instead of walking their choices again. It owns everything the client sees:
one response id, the role chunk first, `finish_reason` in its own empty-delta chunk, exactly one
usage chunk (only when asked for), the gateway metadata on the final chunk, one `[DONE]`.

`committed` turns true once answer content reached the client; until then the gateway may still
switch upstreams (`reset()` forgets what was buffered, but never what the client was told: a
stream whose role chunk went out keeps its model name). A non-stream sink commits only at
`close`.

A sink only writes. The end of an answer is two calls: `finish(usage, metadata)` writes everything
up to the end marker, `close()` writes the marker (`[DONE]`, a door's terminal event, or the whole
non-stream body). The caller records the request between the two (gateway.serving.exchange), so
that an answer whose end the client saw is in the ledger.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

import orjson
from aiohttp import web

from gateway.errors import GatewayError
from gateway.wire.assembly import Assembly
from gateway.wire.chunk import Chunk, sent_choices
from gateway.wire.event_stream import PING, EventStream

_DONE_EVENT = b"data: [DONE]\n\n"


class Sink(Protocol):
    @property
    def response(self) -> web.StreamResponse | None: ...

    committed: bool
    # True once the sink has the whole answer before the upstream ended (a door's stop
    # sequence matched): the relay stops reading, which stops the upstream generating.
    satisfied: bool
    model_used: str | None
    first_content_at: float | None

    async def begin(self) -> None: ...

    async def emit(self, chunk: Chunk) -> None: ...

    async def emit_many(self, chunks: list[Chunk]) -> None:
        """`emit` for chunks that arrived together; a stream writes them in one go."""
        ...

    def has_answer(self) -> bool: ...

    def partial_answer(self) -> tuple[str, str | None]:
        """The answer text so far and why it cannot be continued elsewhere (None: it can)."""
        ...

    def reset(self) -> None: ...

    async def finish(self, usage: dict[str, Any], metadata: dict[str, Any]) -> None:
        """Write the end of the answer (usage, metadata) up to, not including, its end marker."""
        ...

    async def close(self) -> None:
        """Write the end marker (a non-stream sink: the whole body); after `finish`."""
        ...

    async def fail(self, error: GatewayError) -> None: ...

    def release(self) -> None:
        """Stop background work tied to the response (keepalive pings); idempotent."""
        ...

    async def quiesce(self) -> None:
        """Start no more background writes, and wait for one in flight (before the handler
        decides whether the response already started)."""
        ...


def _not_continuable(tool_calls: bool, choices: int, text: bool, in_reasoning: bool) -> str | None:
    if tool_calls:
        return "a tool call was partly streamed"
    if choices > 1:
        return "the answer has several choices"
    if in_reasoning or not text:
        return "the answer was still reasoning"
    return None


class StreamSink:
    """Writes the client's SSE stream; headers go out lazily, with the first answer content."""

    satisfied = False

    def __init__(
        self,
        request: web.Request,
        *,
        response_id: str,
        include_usage: bool,
        headers: dict[str, str],
        keepalive_interval: float | None = 15.0,
        keep_text: bool = True,
    ) -> None:
        self.request = request
        self.response_id = response_id
        self.created = int(time.time())
        self.include_usage = include_usage
        self.headers = headers
        self.keepalive_interval = keepalive_interval
        self.response: EventStream | None = None
        self._prepare_lock = asyncio.Lock()
        self.committed = False
        self.model_used: str | None = None
        self.model_name = ""
        self.first_content_at: float | None = None
        self.finish_reasons: dict[int, str] = {}
        self.tool_call_indexes: set[int] = set()
        self.content_choices: set[int] = set()
        # Choices with text or a tool call: reasoning alone is not an answer (Cline rejects it).
        self.answer_choices: set[int] = set()
        # The answer text sent so far (a continuation's prefill) and whether the last delta with
        # content was reasoning; a list of the deltas' own strings, joined only when needed.
        self.text_parts: list[str] = []
        self.in_reasoning = False
        # False (routing.fallback.mid_stream: error): nothing will continue the answer, so its
        # text is not kept; only whether there was some.
        self.keep_text = keep_text
        self.saw_text = False

    @property
    def prepared(self) -> bool:
        return self.response is not None

    async def begin(self) -> None:
        """Send headers and the role chunk now (used when the answer's source is not known yet)."""
        if self.response is None:
            await self._prepare()

    async def _prepare(self, first: bytes = b"") -> None:
        """Send headers and the role chunk, followed in the same write by `first`."""
        async with self._prepare_lock:  # begin() may race the first emit() from another task
            if self.response is None:
                await self._prepare_now(first)
            elif first:
                await self.response.write(first)

    # The keepalive written during long waits (a door may send its own event instead).
    ping: bytes = PING

    async def _prepare_now(self, first: bytes) -> None:
        headers = self.headers
        if self.model_used:
            headers = {**headers, "x-gateway-model-used": self.model_used}
        response = EventStream(
            headers=headers, keepalive_interval=self.keepalive_interval, ping=self.ping
        )
        await response.prepare(self.request)
        self.response = response
        await response.write(self._opening() + first)

    def _opening(self) -> bytes:
        """The events that open the stream, before any content (here: the role chunk)."""
        role = self._envelope(
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ]
        )
        return b"data: " + orjson.dumps(role) + b"\n\n"

    def _envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.response_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model_name,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    async def emit(self, chunk: Chunk) -> None:
        event = self._encode(chunk)
        if event is not None:
            await self._write_content(event)

    async def emit_many(self, chunks: list[Chunk]) -> None:
        events = [e for e in map(self._encode, chunks) if e is not None]
        if events:
            await self._write_content(events[0] if len(events) == 1 else b"".join(events))

    def _encode(self, chunk: Chunk) -> bytes | None:
        """The client event for an upstream chunk, or None when it carries nothing to send
        (role-only deltas; finish_reason is held back for the final chunk)."""
        if chunk.plain_text:
            self._note_text(chunk.text)
        elif not self._note(chunk):
            return None
        data = chunk.data
        if not self.model_name and isinstance(data.get("model"), str):
            self.model_name = data["model"]
        if chunk.rebuild is not None:
            data["choices"] = sent_choices(chunk)
        data["id"] = self.response_id
        data["object"] = "chat.completion.chunk"
        data["created"] = self.created
        data["model"] = self.model_name
        if self.include_usage:
            data["usage"] = None
        return b"data: " + orjson.dumps(data) + b"\n\n"

    def _note_text(self, text: str) -> None:
        """Take note of a plain answer-text chunk of choice 0 (a TextChunk)."""
        if 0 not in self.answer_choices:
            self.answer_choices.add(0)
            self.content_choices.add(0)
        self._keep(text)
        self.in_reasoning = False

    def _note(self, chunk: Chunk) -> bool:
        """Take note of any chunk's facts; False when it shows the client nothing."""
        for index, reason in chunk.finish:
            self.finish_reasons[index] = reason
        if not chunk.shown:
            return False
        self.content_choices.update(chunk.shown)
        self.answer_choices.update(chunk.answer)
        self.tool_call_indexes.update(chunk.tools)
        if chunk.text:
            self._keep(chunk.text)
        self.in_reasoning = chunk.in_reasoning
        return True

    def _keep(self, text: str) -> None:
        self.saw_text = True
        if self.keep_text:
            self.text_parts.append(text)

    async def _write_content(self, data: bytes) -> None:
        if not self.committed:
            self.committed = True
            self.first_content_at = time.monotonic()
        if self.response is None:
            await self._prepare(data)  # headers, role chunk and first content in one write
            return
        await self.response.write(data)

    def has_answer(self) -> bool:
        return bool(self.answer_choices)

    def partial_answer(self) -> tuple[str, str | None]:
        text = "".join(self.text_parts)
        why = _not_continuable(
            bool(self.tool_call_indexes), len(self.content_choices), self.saw_text,
            self.in_reasoning,
        )  # fmt: skip
        if why is None and not self.keep_text:
            why = "the answer's text was not kept (routing.fallback.mid_stream is error)"
        return text, why

    def reset(self) -> None:
        if self.committed:
            raise RuntimeError("cannot reset a stream whose content reached the client")
        self.finish_reasons.clear()
        self.tool_call_indexes.clear()
        self.text_parts.clear()
        self.saw_text = False
        self.in_reasoning = False
        if self.response is None:  # else the role chunk named the model: keep telling the same
            self.model_name = ""

    async def finish(self, usage: dict[str, Any], metadata: dict[str, Any]) -> None:
        if self.response is None:
            await self._prepare()
        assert self.response is not None
        indexes = sorted(self.content_choices | set(self.finish_reasons)) or [0]
        choices = []
        for index in indexes:
            reason = self.finish_reasons.get(index, "stop")
            if index in self.tool_call_indexes and reason == "stop":
                reason = "tool_calls"
            choices.append({"index": index, "delta": {}, "logprobs": None, "finish_reason": reason})
        final = self._envelope(choices)
        events = b""
        if self.include_usage:
            events = b"data: " + orjson.dumps(final) + b"\n\n"
            final = self._envelope([])
            final["usage"] = usage
        final.update(metadata)
        # Events that exist together go out in one write (one system call each way).
        await self.response.write(events + b"data: " + orjson.dumps(final) + b"\n\n")

    async def close(self) -> None:
        await self._close(_DONE_EVENT)

    async def fail(self, error: GatewayError) -> None:
        """After bytes went out: one error event, then close without [DONE]; before: raise."""
        if self.response is None:
            raise error
        await self._close(b"data: " + orjson.dumps(error.body()) + b"\n\n")

    async def _close(self, last: bytes) -> None:
        """Write `last` and the end of the body together, and stop the keepalive."""
        assert self.response is not None
        self.release()
        await self.response.write_eof(last)

    def release(self) -> None:
        if self.response is not None:
            self.response.stop_keepalive()

    async def quiesce(self) -> None:
        return None


class KeepingStreamSink(StreamSink):
    """A StreamSink that also assembles the answer it streams (`kept`), for requests drawn as
    verification samples; a subclass so that other requests pay nothing per chunk."""

    def __init__(self, request: web.Request, **kwargs: Any) -> None:
        super().__init__(request, **kwargs)
        self.kept = Assembly()

    def _encode(self, chunk: Chunk) -> bytes | None:
        self.kept.add_chunk(chunk.data)  # before _encode, which replaces the sent choices
        return super()._encode(chunk)

    def reset(self) -> None:
        super().reset()
        self.kept = Assembly()


class CollectSink:
    """Assembles the answer and answers with one `chat.completion` JSON body at `finish`."""

    satisfied = False

    def __init__(self, *, response_id: str, headers: dict[str, str]) -> None:
        self.response_id = response_id
        self.created = int(time.time())
        self.headers = headers
        self.committed = False
        self.model_used: str | None = None
        self.model_name = ""
        self.first_content_at: float | None = None
        self.assembly = Assembly()
        self.response: web.Response | None = None
        self._body: dict[str, Any] | None = None

    async def begin(self) -> None:
        return None

    async def emit(self, chunk: Chunk) -> None:
        data = chunk.data
        if not self.model_name and isinstance(data.get("model"), str):
            self.model_name = data["model"]
        self.assembly.add_chunk(data)
        if self.first_content_at is None and chunk.answer and self.assembly.has_answer():
            self.first_content_at = time.monotonic()

    async def emit_many(self, chunks: list[Chunk]) -> None:
        for chunk in chunks:
            await self.emit(chunk)

    def has_answer(self) -> bool:
        return self.assembly.has_answer()

    def partial_answer(self) -> tuple[str, str | None]:
        choices = self.assembly.choices
        parts = self.assembly.first()
        text = parts.text
        tools = any(c.tool_calls for c in choices.values())
        return text, _not_continuable(tools, len(choices), bool(text), False)

    def reset(self) -> None:
        self.assembly = Assembly()
        self.model_name = ""
        self.first_content_at = None

    async def finish(self, usage: dict[str, Any], metadata: dict[str, Any]) -> None:
        choices = []
        for index in sorted(self.assembly.choices) or [0]:
            parts = self.assembly.choices.get(index)
            if parts is None:
                continue
            reason = parts.finish_reason or "stop"
            if parts.tool_calls and reason == "stop":
                reason = "tool_calls"
            choice: dict[str, Any] = {
                "index": index,
                "message": parts.message(),
                "logprobs": {"content": parts.logprobs} if parts.logprobs else None,
                "finish_reason": reason,
            }
            choices.append(choice)
        body: dict[str, Any] = {
            "id": self.response_id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model_name,
            "choices": choices,
            "usage": usage,
        }
        body.update(metadata)
        self._body = body

    async def close(self) -> None:
        """Commit to the body `finish` built as the whole answer (sent once the handler
        returns)."""
        assert self._body is not None, "close() comes after finish()"
        headers = dict(self.headers)
        if self.model_used:
            headers["x-gateway-model-used"] = self.model_used
        self.committed = True
        self.response = web.Response(
            body=orjson.dumps(self._body), content_type="application/json", headers=headers
        )

    async def fail(self, error: GatewayError) -> None:
        raise error

    def release(self) -> None:
        return None

    async def quiesce(self) -> None:
        return None
