"""An old ledger opened by this version gains the `door` column (and the cached-token columns)
and keeps its rows, which read as door `chat`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from support import door_record

from gateway.accounting.ledger import Ledger, flatten
from gateway.accounting.ledger.schema import SCHEMA


async def test_old_ledger_gains_the_door_column_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_schema = SCHEMA.split(",\n    door TEXT")[0] + "\n);" + SCHEMA.split("\n);", 1)[1]
    assert "door" not in old_schema and "cached_tokens" not in old_schema
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
        await ledger.submit(
            flatten(door_record("new", "messages"), cost_usd=0.0, counterfactual_usd=0.0)
        )
        rows = ledger.rows()
    finally:
        await ledger.close()
    assert [(r.request_id, r.door) for r in rows] == [("old", "chat"), ("new", "messages")]
    assert [r.local_cached_tokens for r in rows] == [0, 0]
