"""Durable embedded ledger: one SQLite row per client request, plus standalone events.

Durability contract: the database runs in WAL mode with `synchronous=NORMAL`. A row whose
`submit()` future has resolved is committed to the WAL file, so killing the process (even
`kill -9`) loses none of it. Rows written together share one commit (group commit),
and each waiter is woken only after its own transaction committed. Power loss or an OS crash may
lose the last few commits (WAL is not fsynced on every commit with NORMAL); that is out of scope
by design, in exchange for cheap commits.

Layout: `schema` (tables, row types, opening older ledgers), `rows` (record -> row, coercing bad
values), `writer` (queued writes on the thread of `gateway.storage.writer` it shares with
`router.db` and `learning.db`), `reader` (synchronous reads on their own connection), `store` (the
`Ledger` that joins them).
"""

from gateway.accounting.ledger.rows import flatten, new_request_id
from gateway.accounting.ledger.schema import SCHEMA_VERSION, LedgerError, LedgerEvent, LedgerRow
from gateway.accounting.ledger.store import Ledger
from gateway.storage.connection import MEMORY

__all__ = [
    "MEMORY",
    "SCHEMA_VERSION",
    "Ledger",
    "LedgerError",
    "LedgerEvent",
    "LedgerRow",
    "flatten",
    "new_request_id",
]
