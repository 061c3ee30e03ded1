"""The OpenAI chat-completions door: the body is already the internal request (validated only),
the sinks are gateway.wire.sinks' own, errors are OpenAI-shaped. Its wire bytes are the
gateway's original ones."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from aiohttp import web

from gateway.doors.base import Decoded, SinkOrder
from gateway.errors import GatewayError
from gateway.responses import error_response
from gateway.wire.sinks import CollectSink, KeepingStreamSink, Sink, StreamSink
from gateway.wire.validation import validate_chat_request

ID_PREFIX = "chatcmpl-"


class ChatDoor:
    name: Literal["chat"] = "chat"

    def __init__(self, *, max_messages: int) -> None:
        self.max_messages = max_messages

    def decode(self, body: dict[str, Any], headers: Mapping[str, str]) -> Decoded:
        validate_chat_request(body, max_messages=self.max_messages)
        stream = bool(body.get("stream"))
        options = body.get("stream_options")
        include_usage = bool(stream and isinstance(options, dict) and options.get("include_usage"))
        model = body.get("model")
        return Decoded(
            body=body,
            stream=stream,
            include_usage=include_usage,
            conversation_id=None,  # learning reads x-conversation-id from the headers itself
            model=model if isinstance(model, str) else "",
        )

    def sink(self, order: SinkOrder) -> Sink:
        rid = ID_PREFIX + order.response_id
        if order.decoded.stream:
            return (KeepingStreamSink if order.keep_answer else StreamSink)(
                order.request,
                response_id=rid,
                include_usage=order.decoded.include_usage,
                headers=order.headers,
                keep_text=order.keep_text,
            )
        return CollectSink(response_id=rid, headers=order.headers)

    def error_response(self, error: GatewayError, request_id: str) -> web.Response:
        return error_response(error, request_id)
