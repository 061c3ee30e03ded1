"""The ledger as one object: open the file, start and stop its writer, read and write it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from gateway.accounting.ledger.reader import LedgerReader
from gateway.accounting.ledger.schema import INSERT_REQUEST, LedgerError, prepare
from gateway.accounting.ledger.writer import LedgerWriter
from gateway.storage.connection import MEMORY, connect
from gateway.storage.writer import WriteBehind, WriterThread


class Ledger(LedgerWriter, LedgerReader):
    """Append-only SQLite ledger of requests and events (see the package docstring).

    `writer`: the writer thread it shares with the other stores (None: a thread of its own)."""

    def __init__(self, path: str | Path, *, writer: WriterThread | None = None) -> None:
        self.path = str(path)
        self._thread = writer
        if self.path != MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = None
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn = None
        self._read_lock = threading.Lock()
        self._rows_at_start = 0

    def open(self) -> None:
        """Open (creating if needed) and check the database; enough for read-only use."""
        if self._write_conn is not None:
            return
        if self.path == MEMORY:
            # One shared connection (and lock): a second ":memory:" connection is another database.
            self._write_conn = self._read_conn = self._connect()
        else:
            self._write_conn = self._connect()
            try:
                self._read_conn = self._connect()
            except LedgerError:
                self._write_conn.close()
                self._write_conn = None
                raise
        self._rows_at_start = self._query_one("SELECT COUNT(*) FROM requests")

    async def start(self) -> None:
        """Open the database (in a thread) and start the writer thread."""
        if self._writer is not None:
            return
        await asyncio.to_thread(self.open)
        assert self._write_conn is not None
        shared = self._write_conn is self._read_conn
        writer = WriteBehind(
            self._write_conn,
            name=f"ledger {self.path}",
            thread_name="ledger-writer",
            error=LedgerError,
            lock=self._read_lock if shared else None,
            thread=self._thread,
            inline=True,
        )
        writer.start()
        self._writer = writer

    async def close(self) -> None:
        """Commit everything queued, stop the writer thread and close the connections."""
        writer, self._writer = self._writer, None
        if writer is not None:
            await asyncio.to_thread(writer.stop)
            self._rows_at_start += writer.committed[INSERT_REQUEST]
        for conn in {id(c): c for c in (self._write_conn, self._read_conn) if c}.values():
            conn.close()
        self._write_conn = self._read_conn = None

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = connect(self.path, timeout=10.0)
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger {self.path}: cannot open: {exc}") from exc
        try:
            prepare(conn, self.path, need_wal=self.path != MEMORY)
        except (sqlite3.Error, LedgerError) as exc:
            conn.close()
            if isinstance(exc, LedgerError):
                raise
            raise LedgerError(
                f"ledger {self.path}: unreadable or not a ledger database: {exc}"
            ) from exc
        return conn
