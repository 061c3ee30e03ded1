"""The one aiohttp client of upstream calls: its connector settings, and who closes it."""

from __future__ import annotations

import aiohttp

from gateway.config import parse_config
from gateway.upstreams.client import open_session, request_timeout


async def test_the_gateway_session_pools_without_a_connection_limit() -> None:
    session = open_session()
    connector = session.connector
    try:
        assert isinstance(connector, aiohttp.TCPConnector)
        assert connector.limit == 0 and not connector.force_close
    finally:
        await session.close()
    assert session.closed and connector.closed


async def test_a_probe_session_opens_a_fresh_connection_per_request() -> None:
    async with open_session(pooled=False) as session:
        connector = session.connector
        assert isinstance(connector, aiohttp.TCPConnector) and connector.force_close


def test_only_the_connect_is_timed_by_aiohttp() -> None:
    config = parse_config({"models": {"local": {"timeouts": {"connect": 3}}}}, env={})
    timeout = request_timeout(config.models["local"])
    assert (timeout.total, timeout.sock_read, timeout.sock_connect) == (None, None, 3)
