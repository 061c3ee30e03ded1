"""The Anthropic Messages door (`POST /v1/messages`, what Claude Code and the Anthropic SDK
send): decode into the internal chat request, encode the internal stream back as Messages
events or one `message` body, errors in the Anthropic shape."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

from aiohttp import web

from gateway.accounting.tokens import estimate_prompt_tokens
from gateway.doors.anthropic.decode import (
    DecodeOptions,
    MessagesContext,
    conversation_id,
    decode_request,
)
from gateway.doors.anthropic.errors import error_response
from gateway.doors.anthropic.sink import MessagesCollectSink, MessagesStreamSink
from gateway.doors.base import Decoded, SinkOrder
from gateway.errors import GatewayError
from gateway.wire.sinks import Sink

log = logging.getLogger("gateway.doors.anthropic")

ID_PREFIX = "msg_"


class MessagesDoor:
    name: Literal["messages"] = "messages"

    def __init__(self, options: DecodeOptions, *, keepalive_interval: float | None = 15.0) -> None:
        self.options = options
        self.keepalive_interval = keepalive_interval

    def decode(self, body: dict[str, Any], headers: Mapping[str, str]) -> Decoded:
        chat, ctx, thinking = decode_request(body, self.options)
        if ctx.stripped_billing:
            log.debug("anthropic door: billing line dropped from the system prompt")
        return Decoded(
            body=chat,
            stream=bool(chat.get("stream")),
            include_usage=True,
            conversation_id=conversation_id(body, headers),
            model=ctx.model,
            context=ctx,
            thinking=thinking,
        )

    def sink(self, order: SinkOrder) -> Sink:
        ctx: MessagesContext = order.decoded.context
        body = order.decoded.body

        def estimate() -> int:
            return estimate_prompt_tokens(body)

        rid = ID_PREFIX + order.response_id
        headers = {**order.headers, "request-id": order.headers.get("x-request-id", rid)}
        if order.decoded.stream:
            return MessagesStreamSink(
                order.request,
                response_id=rid,
                headers=headers,
                context=ctx,
                estimate=estimate,
                keep_answer=order.keep_answer,
                keep_text=order.keep_text,
                keepalive_interval=self.keepalive_interval,
            )
        return MessagesCollectSink(response_id=rid, headers=headers, context=ctx, estimate=estimate)

    def error_response(self, error: GatewayError, request_id: str) -> web.Response:
        return error_response(error, request_id)
