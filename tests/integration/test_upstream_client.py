"""The one aiohttp client of upstream calls: its connector settings, and who closes it."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.dev.llama_server import free_port
from gateway.upstreams.client import open_session


async def test_a_loopback_connection_is_opened_by_the_event_loop(
    aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One plain TCP address: the loop connects (aiohttp's Python socket path is not taken)."""

    async def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("aiohttp's own connect path was taken")

    monkeypatch.setattr(aiohttp.connector.aiohappyeyeballs, "start_connection", refuse)

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/", ok)
    server = await aiohttp_server(app)
    async with open_session() as session:
        for _ in range(2):  # the second on a new connection too
            async with session.post(server.make_url("/"), headers={"Connection": "close"}) as r:
                assert await r.text() == "ok"


async def test_a_refused_loopback_connection_is_a_connector_error() -> None:
    """The loop's connect failing is reported as aiohttp's would be (the upstream maps it)."""
    port = free_port()
    async with open_session() as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await session.post(f"http://127.0.0.1:{port}/v1/chat/completions", data=b"{}")
    assert caught.value.port == port
