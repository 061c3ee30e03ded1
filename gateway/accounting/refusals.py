"""Ledger rows for requests refused before any upstream call (400/401/413/429/503), bounded.

Up to `rows_per_minute` refusals a minute each get a `requests` row with outcome `rejected`;
beyond that a refusal is only counted, and the minute's counts go to the ledger as one `refusals`
event when the next minute's first refusal arrives or at `close()`. So a flood of bad requests
costs at most `rows_per_minute` rows plus one event a minute; a crash loses at most the current
minute's overflow counts. /stats counts every refusal at once, apart from served requests.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from aiohttp import web

from gateway.accounting.records import REFUSED, RequestRecord
from gateway.accounting.stats import StatisticsTracker

ROWS_PER_MINUTE = 60
# Set by the chat handler once it takes a request on: from then on it records the request itself.
HANDLED = web.RequestKey("handled", bool)


class RefusalRecorder:
    def __init__(
        self,
        stats: StatisticsTracker,
        *,
        rows_per_minute: int = ROWS_PER_MINUTE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stats = stats
        self.rows_per_minute = rows_per_minute
        self.clock = clock
        self._minute = 0.0
        self._rows = 0
        self._overflow: Counter[str] = Counter()

    def refuse(
        self, request_id: str, status: int, error_type: str | None, door: str = "chat"
    ) -> None:
        """Record one refused request (a row, or a count once this minute's rows are spent)."""
        now = self.clock()
        minute = now // 60 * 60
        if minute != self._minute:
            self._write_overflow()
            self._minute, self._rows = minute, 0
        if self._rows < self.rows_per_minute:
            self._rows += 1
            record = RequestRecord(
                request_id=request_id, started_at=now, strategy="none", stream=False, door=door
            )
            record.outcome, record.http_status, record.error_type = REFUSED, status, error_type
            self.stats.record_refusal(record)
        else:
            self._overflow[str(status)] += 1
            self.stats.count_refusal(status)

    def close(self) -> None:
        """Write the current minute's overflow counts (at shutdown, before the ledger closes)."""
        self._write_overflow()

    def _write_overflow(self) -> None:
        if self._overflow:
            self.stats.log_refusal_counts(self._minute, dict(self._overflow))
            self._overflow.clear()
