"""Refused requests (400/401/413/429/503 before any upstream call) leave bounded ledger rows.

They are counted as refusals in /stats, never as served requests, and the dashboard shows them
only when asked for (`outcome=rejected`).
"""

from __future__ import annotations

from typing import Any

import aiohttp
from support import chat

from gateway.http.services import GUARD_KEY

KEY = "client-key-000001"


AUTH = {"Authorization": f"Bearer {KEY}"}


async def test_refused_requests_are_recorded_and_counted_apart(
    make_gateway: Any, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(
        "always_local", auth={"api_keys": [KEY]}, server={"max_body_bytes": 4096}
    )
    async with client.post(gw.url + "/chat/completions", json=chat("hi")) as resp:
        assert resp.status == 401
    big = chat("x" * 5000)
    async with client.post(gw.url + "/chat/completions", json=big, headers=AUTH) as resp:
        assert resp.status == 413
    async with client.post(gw.url + "/chat/completions", data=b"{", headers=AUTH) as resp:
        assert resp.status == 400
    async with client.post(gw.url + "/chat/completions", json=chat("hi"), headers=AUTH) as resp:
        assert resp.status == 200
    gw.app[GUARD_KEY].draining = True
    async with client.post(gw.url + "/chat/completions", json=chat("hi"), headers=AUTH) as resp:
        assert resp.status == 503
    ledger = gw.services.ledger
    await ledger.flush()
    rows = ledger.rows()
    assert sorted((r.outcome, r.http_status) for r in rows) == [
        ("ok", 200),
        ("rejected", 400),
        ("rejected", 401),
        ("rejected", 413),
        ("rejected", 503),
    ]
    async with client.get(gw.root + "/stats", headers=AUTH) as resp:
        stats = await resp.json()
    assert stats["requests"]["total"] == 1
    assert "rejected" not in stats["requests"]["by_outcome"]
    assert stats["refusals"] == {
        "total": 4,
        "by_status": {"400": 1, "401": 1, "413": 1, "503": 1},
    }
    async with client.get(gw.root + "/dashboard/summary", headers=AUTH) as resp:
        assert (await resp.json())["today"]["requests"] == 1
    async with client.get(gw.root + "/stats/history", headers=AUTH) as resp:
        assert (await resp.json())["totals"]["requests"]["total"] == 1
    async with client.get(gw.root + "/requests", headers=AUTH) as resp:
        assert [r["outcome"] for r in (await resp.json())["data"]] == ["ok"]
    async with client.get(gw.root + "/requests?outcome=rejected", headers=AUTH) as resp:
        assert len((await resp.json())["data"]) == 4


async def test_a_refusals_row_has_the_request_id_the_client_got(
    make_gateway: Any, client: aiohttp.ClientSession
) -> None:
    """No x-request-id sent: the id the gateway made is the one in the client's headers and in
    the ledger row, on each door."""
    gw = await make_gateway("always_local")
    given = []
    for path in ("/v1/chat/completions", "/v1/messages", "/v1/responses"):
        async with client.post(gw.root + path, data=b"{") as resp:
            assert resp.status == 400
            given.append(resp.headers["x-request-id"])
    ledger = gw.services.ledger
    await ledger.flush()
    rows = ledger.rows()
    assert [r.outcome for r in rows] == ["rejected"] * 3
    assert sorted(r.request_id for r in rows) == sorted(given)
