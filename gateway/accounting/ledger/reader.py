"""Reading the ledger: committed rows and events, on a connection of their own.

The reads are synchronous: call them at start-up or from a thread (`asyncio.to_thread`). They
see what has committed, never what is only queued.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

from gateway.accounting.ledger.schema import (
    SELECT_EVENTS,
    SELECT_REQUESTS,
    LedgerError,
    LedgerEvent,
    LedgerRow,
    event_from_db,
    row_from_db,
)


class LedgerReader:
    """The ledger's read side; `_read_conn` is set while the ledger is open."""

    path: str
    _read_conn: sqlite3.Connection | None
    _read_lock: threading.Lock

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._read_lock:
            conn = self._read_conn
            if conn is None:
                raise LedgerError(f"ledger {self.path}: not open")
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise LedgerError(f"ledger {self.path}: read failed: {exc}") from exc

    def _query_one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self._read(sql, params)[0][0]

    def rows(self, since_id: int = 0, limit: int | None = None) -> list[LedgerRow]:
        """Committed request rows with id > since_id, oldest first."""
        sql = SELECT_REQUESTS + " WHERE id > ? ORDER BY id"
        if limit is not None:
            return [row_from_db(v) for v in self._read(sql + " LIMIT ?", (since_id, limit))]
        return [row_from_db(v) for v in self._read(sql, (since_id,))]

    def iter_rows(self, since_id: int = 0, page: int = 5000) -> Iterator[LedgerRow]:
        """All rows with id > since_id, read page by page (bounded memory)."""
        while batch := self.rows(since_id, limit=page):
            yield from batch
            since_id = batch[-1].id

    def events(self, since_id: int = 0, kinds: tuple[str, ...] | None = None) -> list[LedgerEvent]:
        """Committed events with id > since_id (optionally only these kinds), oldest first."""
        sql = SELECT_EVENTS + " WHERE id > ?"
        params: tuple[Any, ...] = (since_id,)
        if kinds:
            sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
            params += tuple(kinds)
        return [event_from_db(v) for v in self._read(sql + " ORDER BY id", params)]

    def latest_event(self, kinds: tuple[str, ...]) -> LedgerEvent | None:
        """The most recent committed event of one of these kinds."""
        sql = SELECT_EVENTS + f" WHERE kind IN ({', '.join('?' * len(kinds))}) ORDER BY id DESC"
        found = self._read(sql + " LIMIT 1", tuple(kinds))
        return event_from_db(found[0]) if found else None

    def cerebras_spend_since(self, unix_ts: float) -> float:
        """Dollars billed by Cerebras for requests started at or after `unix_ts`."""
        return float(
            self._query_one(
                "SELECT COALESCE(SUM(cerebras_cost_usd), 0.0) FROM requests WHERE started_at >= ?",
                (unix_ts,),
            )
        )

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one read-only statement on the read connection (raises LedgerError)."""
        return self._read(sql, params)

    def select_rows(
        self, where: str = "1", params: tuple[Any, ...] = (), *, limit: int | None = None
    ) -> list[LedgerRow]:
        """Request rows matching the SQL condition `where` (values bound from `params`),
        newest first; `where` must be the caller's own constant text, never client input."""
        sql = SELECT_REQUESTS + f" WHERE {where} ORDER BY id DESC"
        if limit is not None:
            sql, params = sql + " LIMIT ?", (*params, limit)
        return [row_from_db(v) for v in self._read(sql, params)]
