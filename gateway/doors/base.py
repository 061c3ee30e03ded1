"""The door seam: what every client protocol decodes into and what its encoder is handed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aiohttp import web

from gateway.errors import GatewayError
from gateway.wire.sinks import Sink

DoorName = Literal["chat", "messages", "responses"]


@dataclass(slots=True)
class Decoded:
    """A door's request as the internal chat request (an OpenAI chat body that passes
    validate_chat_request), with what the door's encoder needs in `context`."""

    body: dict[str, Any]
    stream: bool
    include_usage: bool
    conversation_id: str | None
    model: str
    context: Any


class Door(Protocol):
    name: DoorName

    def decode(self, body: dict[str, Any], headers: Mapping[str, str]) -> Decoded:
        """The internal request; raise BadRequest with a clear message."""
        ...

    def sink(
        self,
        request: web.Request,
        decoded: Decoded,
        *,
        response_id: str,
        headers: dict[str, str],
        keep_answer: bool,
    ) -> Sink: ...

    def error_response(self, error: GatewayError, request_id: str) -> web.Response: ...
