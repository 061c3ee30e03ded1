"""Row limits of a store's tables: expired rows go by TTL, rows over the cap go by age.

A store states one `TableLimit` per bounded table and runs `Retention.start` once when it opens
its connection, then `Retention.after_batch` from its writer's `after_batch` hook (inside each
batch's transaction, on the writer thread). Costs stay small under load:

- the cap: the row count is read once at start, then grows by the rows the batch inserted
  (an upsert counts as an insert, so it is an upper bound); only when that bound passes the cap
  is the table counted again and its oldest rows deleted, an index walk of the excess only;
- the TTL: one range delete on the table's age index and a fresh count, at most every
  `ttl_every` seconds.

`usage()` gives each table's row count (exact at the last count, an upper bound in between) and
cap for `/stats`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gateway.storage.writer import Write


@dataclass(frozen=True, slots=True)
class TableLimit:
    """`table` keeps its newest `max_rows` rows by `order` (an indexed column that grows with
    age: a Unix time or an increasing id); rows whose `ttl_column` (Unix time, indexed) is older
    than `ttl_seconds` go (None: no TTL). `inserts`: the statements that add a row to it.
    `name` labels it in `usage()` (default: the table's name)."""

    table: str
    order: str
    max_rows: int
    inserts: frozenset[str]
    ttl_column: str | None = None
    ttl_seconds: float | None = None
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or self.table


class Retention:
    """Applies `TableLimit`s to one connection (see the module docstring)."""

    def __init__(
        self,
        limits: Iterable[TableLimit],
        *,
        ttl_every: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limits = list(limits)
        self.ttl_every = ttl_every
        self.clock = clock
        self.rows: dict[str, int] = {limit.table: 0 for limit in self.limits}
        self.deleted: dict[str, int] = {limit.table: 0 for limit in self.limits}
        self._ttl_due = 0.0
        # Each insert statement's table, so that a batch's rows are counted in one pass.
        self._table_of: dict[str | None, str] = {
            sql: limit.table for limit in self.limits for sql in limit.inserts
        }

    def start(self, conn: sqlite3.Connection) -> None:
        """Apply every limit now and count the rows (when the store opens)."""
        self._expire(conn)

    def after_batch(self, conn: sqlite3.Connection, writes: list[Write]) -> None:
        table_of, rows = self._table_of, self.rows
        for write in writes:
            table = table_of.get(write.sql)
            if table is not None:
                rows[table] += 1
        if self.clock() >= self._ttl_due:
            self._expire(conn)
            return
        for limit in self.limits:
            if self.rows[limit.table] > limit.max_rows:
                self._cap(conn, limit)

    def _expire(self, conn: sqlite3.Connection) -> None:
        """Delete expired rows, then count every table afresh (upserts overestimate)."""
        now = self.clock()
        self._ttl_due = now + self.ttl_every
        for limit in self.limits:
            if limit.ttl_seconds is not None and limit.ttl_column is not None:
                cursor = conn.execute(
                    f"DELETE FROM {limit.table} WHERE {limit.ttl_column} < ?",
                    (now - limit.ttl_seconds,),
                )
                self.deleted[limit.table] += max(0, cursor.rowcount)
            self._cap(conn, limit)

    def _cap(self, conn: sqlite3.Connection, limit: TableLimit) -> None:
        (count,) = conn.execute(f"SELECT COUNT(*) FROM {limit.table}").fetchone()
        excess = int(count) - limit.max_rows
        if excess > 0:
            conn.execute(
                f"DELETE FROM {limit.table} WHERE rowid IN (SELECT rowid FROM {limit.table} "
                f"ORDER BY {limit.order} LIMIT ?)",
                (excess,),
            )
            self.deleted[limit.table] += excess
        self.rows[limit.table] = min(int(count), limit.max_rows)

    def usage(self) -> dict[str, dict[str, Any]]:
        """Per table (by its label): `{"size": rows, "bound": max_rows, "deleted": n}`."""
        return {
            limit.label: {
                "size": self.rows[limit.table],
                "bound": limit.max_rows,
                "deleted": self.deleted[limit.table],
            }
            for limit in self.limits
        }
