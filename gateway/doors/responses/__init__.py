"""The Responses door: `POST /v1/responses` (OpenAI Responses API, as Codex CLI speaks it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from aiohttp import web

from gateway.doors.base import Decoded, SinkOrder
from gateway.doors.responses.decode import MAX_MESSAGES, ResponsesContext, decode
from gateway.doors.responses.encode import response_id_for
from gateway.doors.responses.errors import error_response
from gateway.doors.responses.sink import (
    KeepingResponsesStreamSink,
    ResponsesCollectSink,
    ResponsesStreamSink,
)
from gateway.errors import GatewayError
from gateway.wire.sinks import Sink


class ResponsesDoor:
    """`max_messages`: the most `input` items a request may hold (`server.max_messages`)."""

    name: Literal["responses"] = "responses"

    def __init__(self, *, max_messages: int = MAX_MESSAGES) -> None:
        self.max_messages = max_messages

    def decode(self, body: dict[str, Any], headers: Mapping[str, str]) -> Decoded:
        return decode(body, headers, max_messages=self.max_messages)

    def sink(self, order: SinkOrder) -> Sink:
        context: ResponsesContext = order.decoded.context
        rid = response_id_for(order.response_id)
        if not order.decoded.stream:
            return ResponsesCollectSink(context=context, response_id=rid, headers=order.headers)
        kind = KeepingResponsesStreamSink if order.keep_answer else ResponsesStreamSink
        return kind(
            order.request,
            context=context,
            response_id=rid,
            include_usage=False,
            headers=order.headers,
            keep_text=order.keep_text,
        )

    def error_response(self, error: GatewayError, request_id: str) -> web.Response:
        return error_response(error, request_id)
