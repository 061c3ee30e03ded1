"""The Anthropic door's endpoints beside `POST /v1/messages` (which the generic handler
serves): `POST /v1/messages/count_tokens`, `GET /v1/models` in the Anthropic shape (when the
request carries `anthropic-version`), and `HEAD /` (a reachability probe).

count_tokens counts exactly when the local llama-server can tokenize (its chat template, then its
tokenizer: `x-gateway-token-count: exact`), else estimates at the local upstream's learned
characters per token (`x-gateway-token-count: estimate`); the log line says which."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.accounting.tokens import once
from gateway.doors.anthropic.decode import DecodeOptions, decode_request
from gateway.doors.anthropic.door import MessagesDoor
from gateway.doors.base import Door
from gateway.errors import GatewayError
from gateway.http.guard import DOOR_PATHS, ERROR_SHAPES_KEY
from gateway.http.services import CONFIG_KEY, SERVICES_KEY, Services
from gateway.responses import json_response, request_id_of
from gateway.wire.validation import check_content_type, parse_body

log = logging.getLogger("gateway.requests")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
COUNT_HEADER = "x-gateway-token-count"
COUNT_TIMEOUT_S = 5.0
VERSION_HEADER = "anthropic-version"
MESSAGES_DOOR_KEY = web.AppKey("messages_door", MessagesDoor)


async def count_tokens(request: web.Request) -> web.Response:
    door = request.app[MESSAGES_DOOR_KEY]
    request_id = request_id_of(request)
    try:
        check_content_type(request.headers.get("Content-Type", ""))
        body, _, _ = decode_request(parse_body(await request.read()), door.options, count_only=True)
    except GatewayError as exc:
        log.info("req=%s count_tokens rejected status=%d %s", request_id, exc.status, exc.message)
        return door.error_response(exc, request_id)
    services: Services = request.app[SERVICES_KEY]
    local = services.upstreams["local"]
    counted = await local.count_tokens(body, COUNT_TIMEOUT_S)
    how = "exact"
    if counted is None:
        how = "estimate"
        counted = local.chars_per_token.estimate(once(body))()
    log.info("req=%s count_tokens input_tokens=%d (%s)", request_id, counted, how)
    headers = {COUNT_HEADER: how, "x-request-id": request_id, "request-id": request_id}
    return json_response({"input_tokens": max(int(counted), 1)}, headers=headers)


def anthropic_models(services: Services, entries: list[tuple[str, str]]) -> web.Response:
    """`GET /v1/models` as the Anthropic API lists models."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(services.started))
    data = [
        {"type": "model", "id": name, "display_name": text, "created_at": created}
        for name, text in entries
    ]
    return json_response(
        {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    )


async def head_root(request: web.Request) -> web.Response:
    """`HEAD /`: 200, so that a client probing the base URL finds the gateway."""
    del request
    return web.Response(status=200)


def setup_messages(app: web.Application, bind: Callable[[Door], Handler]) -> None:
    """Bind the Messages door (`bind`: the generic handler's, gateway.http.routes.bind) and its
    side endpoints; its errors take the Anthropic shape on its paths and for any request that
    carries `anthropic-version`."""
    config = app[CONFIG_KEY]
    door = MessagesDoor(
        DecodeOptions(
            max_messages=config.server.max_messages,
            strip_billing_header=config.doors.anthropic.strip_billing_header,
        )
    )
    app[MESSAGES_DOOR_KEY] = door
    shapes = app[ERROR_SHAPES_KEY]
    handler = bind(door)
    for path in DOOR_PATHS["messages"]:
        app.router.add_post(path, handler)
        shapes.by_path[path] = door
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    shapes.by_path["/v1/messages/count_tokens"] = door
    shapes.by_header[VERSION_HEADER] = door
    app.router.add_route("HEAD", "/", head_root)
