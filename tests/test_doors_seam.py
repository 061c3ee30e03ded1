"""The door seam: the door each request came through is recorded (ledger, /stats), an old ledger
gains the column, client keys come as Bearer or x-api-key."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from support import chat

from gateway.accounting.ledger import Ledger
from gateway.accounting.ledger.schema import SCHEMA
from gateway.accounting.records import RequestRecord, UpstreamCall

CLIENT_KEY = "client-key-0123456789"


def _record(rid: str, door: str) -> RequestRecord:
    return RequestRecord(
        request_id=rid,
        started_at=1_700_000_000.0,
        strategy="always_local",
        stream=False,
        door=door,
        model_used="local",
        calls=[UpstreamCall("local", prompt_tokens=3, completion_tokens=4)],
    )


async def test_old_ledger_gains_the_door_column_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_schema = SCHEMA.replace(",\n    door TEXT NOT NULL DEFAULT 'chat'", "")
    assert "door" not in old_schema
    with sqlite3.connect(path) as conn:
        conn.executescript(old_schema)
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        columns = [r[1] for r in conn.execute("PRAGMA table_info(requests)")]
        values = {c: 0 for c in columns if c != "id"}
        values.update(request_id="old", strategy="x", outcome="ok", calls="[]")
        conn.execute(
            f"INSERT INTO requests ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
            tuple(values.values()),
        )
    ledger = Ledger(path)
    await ledger.start()
    try:
        await ledger.append(_record("new", "messages"), cost_usd=0.0, counterfactual_usd=0.0)
        rows = ledger.rows()
    finally:
        await ledger.close()
    assert [(r.request_id, r.door) for r in rows] == [("old", "chat"), ("new", "messages")]


async def test_stats_count_requests_by_door(make_gateway, client, local_sim) -> None:
    gw = await make_gateway("always_local")
    async with client.post(gw.url + "/chat/completions", json=chat()) as resp:
        assert resp.status == 200
    await gw.services.stats.record(_record("m1", "messages"))
    async with client.get(gw.root + "/stats") as resp:
        stats = await resp.json()
    assert stats["requests"]["by_door"] == {"chat": 1, "messages": 1}
    rows = gw.services.ledger.rows()
    assert [r.door for r in rows] == ["chat", "messages"]


async def test_client_key_from_x_api_key(make_gateway, client, local_sim) -> None:
    gw = await make_gateway("always_local", auth={"api_keys": [CLIENT_KEY]})
    url = gw.url + "/chat/completions"
    async with client.post(url, json=chat(), headers={"x-api-key": "wrong-key-0000"}) as resp:
        assert resp.status == 401
        assert "x-api-key" in (await resp.json())["error"]["message"]
    async with client.post(url, json=chat(), headers={"x-api-key": CLIENT_KEY}) as resp:
        assert resp.status == 200
    # A wrong Bearer key is not rescued by a right x-api-key only when Bearer is well-formed.
    headers = {"Authorization": "Bearer wrong-key-0000", "x-api-key": CLIENT_KEY}
    async with client.post(url, json=chat(), headers=headers) as resp:
        assert resp.status == 401
