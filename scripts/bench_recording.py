#!/usr/bin/env python3
"""The event loop's recording work for one finished request, in process: CPU µs per record.

Per record, what `Recorder.record` does on the loop before it awaits the ledger row: the bill,
`Metrics.observe`, the ledger row (`flatten`, `row_params`) and the `/stats` totals. The records
are those of a Cline-sized `always_local` request. Printed: the minimum, first quartile and
median over `--rounds` rounds (the minimum is the least disturbed by other load). Figures only;
asserts nothing. Run: `PYTHONPATH=. .venv/bin/python scripts/bench_recording.py` (a few
seconds); `PYTHONPATH` names the tree measured, so the same script compares two trees.
"""

from __future__ import annotations

import argparse
import time

from gateway.accounting.ledger.schema import row_params
from gateway.accounting.metrics import Metrics
from gateway.accounting.records import RequestRecord, UpstreamCall
from gateway.accounting.stats import StatisticsTracker
from gateway.config import Prices

PRICES = {"local": Prices(0.0, 0.0), "cerebras": Prices(2.0, 3.0)}


def _record(i: int) -> RequestRecord:
    record = RequestRecord(
        request_id=f"r{i}", started_at=time.time(), strategy="always_local", stream=True
    )
    record.calls.append(UpstreamCall("local", prompt_tokens=12_000, completion_tokens=20))
    record.model_used, record.outcome, record.ttft_s, record.duration_s = "local", "ok", 0.05, 0.1
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000, help="records per round")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    stats = StatisticsTracker(PRICES, None)
    metrics = Metrics(PRICES, {}, lambda: 0)
    records = [_record(i) for i in range(args.records)]

    def record_all() -> None:
        for record in records:
            billed = stats.bill(record)
            metrics.observe(record, billed)
            row = stats._priced_row(record, billed)
            stats._totals.apply_row(row)
            row_params(row)

    record_all()  # warm-up: the metrics' children exist from here on
    spent = []
    for _ in range(args.rounds):
        start = time.thread_time()
        record_all()
        spent.append((time.thread_time() - start) / args.records * 1e6)
    spent.sort()
    print(
        f"recording CPU per record: min {spent[0]:.1f} µs, p25 {spent[len(spent) // 4]:.1f},"
        f" median {spent[len(spent) // 2]:.1f}"
    )


if __name__ == "__main__":
    main()
