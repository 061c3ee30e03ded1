"""The Responses door: `POST /v1/responses` (OpenAI Responses API, as Codex CLI speaks it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from aiohttp import web

from gateway.doors.base import Decoded
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

    def sink(
        self,
        request: web.Request,
        decoded: Decoded,
        *,
        response_id: str,
        headers: dict[str, str],
        keep_answer: bool,
        keep_text: bool = True,
    ) -> Sink:
        context: ResponsesContext = decoded.context
        rid = response_id_for(response_id)
        if not decoded.stream:
            return ResponsesCollectSink(context=context, response_id=rid, headers=headers)
        kind = KeepingResponsesStreamSink if keep_answer else ResponsesStreamSink
        return kind(
            request,
            context=context,
            response_id=rid,
            include_usage=False,
            headers=headers,
            keep_text=keep_text,
        )

    def error_response(self, error: GatewayError, request_id: str) -> web.Response:
        return error_response(error, request_id)
