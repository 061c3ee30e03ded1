"""Writing the ledger: rows and events queued to its write-behind thread (gateway.storage.writer).

`submit` resolves with the row id only after the transaction holding the row committed (rows
queued together share one commit); `append_row_nowait` and the events commit with the next batch.
A row that cannot be written rejects only its own future.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.accounting.ledger.rows import as_str
from gateway.accounting.ledger.schema import (
    INSERT_EVENT,
    INSERT_REQUEST,
    LedgerError,
    LedgerRow,
    row_params,
)
from gateway.storage.writer import Write, WriteBehind


class LedgerWriter:
    """The ledger's write side; `_writer` is set while the ledger is running."""

    path: str
    _writer: WriteBehind | None
    _rows_at_start: int

    def _put(self, write: Write) -> None:
        writer = self._writer
        if writer is None:
            raise LedgerError(f"ledger {self.path}: not running (call start(); not after close())")
        writer.put(write)

    @property
    def pending(self) -> int:
        """Writes queued but not yet taken by the writer thread (approximate; a request's
        hand-off of writes counts once, and a shared thread's count includes the other files)."""
        return 0 if self._writer is None else self._writer.pending

    @property
    def commits(self) -> int:
        """Transactions committed since start (each holds one or more writes)."""
        return 0 if self._writer is None else self._writer.commits

    @property
    def write_errors(self) -> int:
        """Writes rejected since start."""
        return 0 if self._writer is None else self._writer.errors

    @property
    def row_count(self) -> int:
        """Request rows committed (those present at open plus those written since)."""
        written = 0 if self._writer is None else self._writer.committed[INSERT_REQUEST]
        return self._rows_at_start + written

    def submit(self, row: LedgerRow) -> asyncio.Future[int]:
        """Queue a row now; the returned future resolves with its id once committed."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._put(Write(INSERT_REQUEST, row_params(row), row.request_id, fut))
        return fut

    def append_row_nowait(self, row: LedgerRow) -> None:
        """Queue a row without waiting (any thread); committed with the next batch."""
        self._put(Write(INSERT_REQUEST, row_params(row), row.request_id))

    def append_event(
        self, kind: str, model: str | None = None, *, data: Mapping[str, Any] | None = None
    ) -> None:
        """Queue a standalone event (error, rate_limit, reset, ...); fire-and-forget."""
        blob = None if data is None else orjson.dumps(data, default=str).decode()
        params = (time.time(), str(kind), as_str(model), blob)
        self._put(Write(INSERT_EVENT, params, f"event {kind}"))

    async def flush(self) -> None:
        """Wait until everything queued before this call is committed."""
        writer = self._writer
        if writer is None:
            raise LedgerError(f"ledger {self.path}: not running (call start(); not after close())")
        await writer.flush()
