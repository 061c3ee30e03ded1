"""The door seam: a client protocol's decoder and encoder around the one internal chat path.

A door decodes its request into the ONE internal request (an OpenAI chat-completions body that
passes `validate_chat_request`) and encodes the internal normalised chunk stream
(gateway.wire.chunk) back into its own events or body through a sink (gateway.wire.sinks.Sink).
Strategies, the router, speculation, continuation, fallbacks, quota, budgets, the ledger,
`/stats`, `/metrics` and the dashboard never see which door a request came through, except as
the `door` its record names.

Contracts:
- `decode(body, headers)` raises gateway.errors.BadRequest with a clear message; the handler
  renders it with `error_response`.
- `sink(order)` gets a bare 32-hex `order.response_id`; the door adds its own prefix
  (`chatcmpl-`, `msg_`, `resp_`). `order.keep_answer`: the request was drawn as a verification
  sample, so a stream sink must keep the answer it streams
  (gateway.speculation.verify_sample.kept_answer).
- `error_response(error, request_id)`: the error in the door's own shape and status, with the
  error's headers and `x-request-id`.
- A sink's `fail(error)` after the stream started writes the door's own error event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aiohttp import web

from gateway.config import ThinkingMode
from gateway.errors import GatewayError
from gateway.wire.sinks import Sink

DoorName = Literal["chat", "messages", "responses"]
DOOR_NAMES: tuple[DoorName, ...] = ("chat", "messages", "responses")


@dataclass(slots=True)
class Decoded:
    """A door's request, decoded.

    `body`: the internal OpenAI chat body (passes validate_chat_request). `include_usage`:
    whether the internal stream's usage is wanted (doors other than chat always want it).
    `conversation_id`: the agent's own session id, handed to learning as `x-conversation-id`
    (None: learning reads the request's headers as it does for the chat door). `model`: the
    model name the client asked for (echoed back, and read by the routing hints). `context`:
    whatever the door's encoder needs. `thinking`: the client's own thinking wish when it
    overrides the gateway's (`off` for an explicit "do not think"), None to leave it to routing.
    """

    body: dict[str, Any]
    stream: bool
    include_usage: bool
    conversation_id: str | None
    model: str
    context: Any = None
    thinking: ThinkingMode | None = None


@dataclass(frozen=True, slots=True)
class SinkOrder:
    """What a door builds its sink from. `headers`: the gateway's response headers.
    `keep_text`: a stream keeps the answer text it sent, for a continuation's prefill (only
    worth its memory when `routing.fallback.mid_stream` may continue)."""

    request: web.Request
    decoded: Decoded
    response_id: str
    headers: dict[str, str]
    keep_answer: bool
    keep_text: bool = True


class Door(Protocol):
    @property
    def name(self) -> DoorName:
        """The door's name, recorded with each request (`RequestRecord.door`)."""
        ...

    def decode(self, body: dict[str, Any], headers: Mapping[str, str]) -> Decoded:
        """The internal request; raise BadRequest naming what is wrong."""
        ...

    def sink(self, order: SinkOrder) -> Sink:
        """Where the answer goes: stream -> the door's events; non-stream -> one JSON body."""
        ...

    def error_response(self, error: GatewayError, request_id: str) -> web.Response:
        """The error in the door's own shape and status."""
        ...
