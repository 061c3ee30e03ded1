#!/usr/bin/env python3
"""The writer thread's work for one request, in process: CPU µs per request.

Each request makes the writes the gateway makes for a Cline-sized turn of an answered
conversation (gateway.router.escalation): the tracker's `begin` (conversation row), its
`finish` (turn row and conversation row), then the ledger row (gateway.accounting.ledger), all
in one `handoff` of a shared `WriterThread`. The hand-off is then taken off the queue and
written on this thread as the writer thread does, so that the CPU measured is the writer's work
alone (no queue wait, no other thread; a tree that commits the ledger on the event loop does there
the same work this measures). A tree whose writer keeps the learned state back (`_Deferred`) is
driven as its thread would be, with requests `--interval-ms` apart (1 ms: back to back) on a
simulated clock; an older tree writes each hand-off at once. Files are WAL SQLite in a
temporary directory. Printed: the minimum (the run least disturbed by other load) and the median
of `--repeat` runs. Figures only; asserts nothing.
Run: `PYTHONPATH=. .venv/bin/python scripts/bench_write_path.py` (about 10 s); `PYTHONPATH`
names the tree measured, so the same script compares two trees.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from gateway.accounting.ledger import Ledger, flatten
from gateway.accounting.ledger.schema import INSERT_REQUEST, row_params
from gateway.accounting.records import RequestRecord, UpstreamCall
from gateway.router.labels import ConversationRow, LearningStore, TurnRow
from gateway.storage import writer as writer_module
from gateway.storage.writer import Write, WriteBehind, WriterThread, handoff


def _record(i: int) -> RequestRecord:
    """The record of a Cline-sized `always_local` request that streamed a 20-token answer."""
    record = RequestRecord(f"req-{i}", time.time(), "always_local", True, door="openai")
    record.calls.append(UpstreamCall("local", prompt_tokens=12_000, completion_tokens=20))
    record.model_used, record.ttft_s, record.duration_s = "local", 0.05, 0.1
    return record


def _run(requests: int, directory: Path, interval_s: float) -> float:
    """CPU µs per request of writing `requests` hand-offs."""
    thread = WriterThread("bench")
    learning = LearningStore(str(directory / "learning.db"), writer=thread)
    learning.load(ttl_seconds=86_400.0, max_rows=10_000)
    thread.stop()  # `load` started it: stopped, it leaves the queue to this thread to drain
    ledger = Ledger(directory / "ledger.db", writer=thread)
    ledger.open()
    assert ledger._write_conn is not None
    ledger_writer = WriteBehind(ledger._write_conn, name="ledger", thread_name="x", thread=thread)
    queue = thread._queue
    deferred = writer_module._Deferred() if hasattr(writer_module, "_Deferred") else None
    kept_at_put = hasattr(writer_module._Deferred, "keep") if deferred is not None else False
    if kept_at_put:  # the thread's own, filled as writes are put, read on the simulated clock
        deferred = thread._deferred
        clock = _SimulatedClock()
        writer_module.time = clock  # type: ignore[attr-defined]
    spent = 0.0
    for i in range(requests):
        rid = f"req-{i}"
        if kept_at_put:
            clock.now = i * interval_s
        row = ConversationRow("conv-1", None, None, 2 * i, None, None, time.time())
        with handoff(thread):
            learning.put_conversation(row)  # begin
            learning.put_turn(TurnRow(rid, "conv-1", 2 * i + 1, "local", time.time()))
            row.last_request_id, row.last_model, row.last_turn = rid, "local", 2 * i + 1
            learning.put_conversation(row)  # finish
            params = row_params(flatten(_record(i), cost_usd=0.0, counterfactual_usd=0.001))
            ledger_writer.put(Write(INSERT_REQUEST, params, rid, threading.Event()))
        start = time.thread_time()
        while not queue.empty():
            item = queue.get_nowait()
            batch = item if isinstance(item, list) else [item]
            if deferred is None:  # a tree before the learned state was kept back
                writer_module._wake(writer_module._write_files(batch))
                continue
            by_file = writer_module._by_file(batch)
            if kept_at_put:
                by_file.update(deferred.take(clock.now, everything=i == requests - 1))
                due = by_file
            else:
                due = deferred.due(by_file, i * interval_s, everything=i == requests - 1)
            if due:
                writer_module._write_and_wake(due)
        spent += time.thread_time() - start
    if kept_at_put:
        writer_module.time = time  # type: ignore[attr-defined]
    return spent / requests * 1e6


class _SimulatedClock:
    """Stands in for the writer module's `time`: its `monotonic` is the requests' clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the median is printed")
    parser.add_argument(
        "--interval-ms", type=float, default=1.0, help="time between requests (learned state)"
    )
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bench-write-") as tmp:
            runs.append(_run(args.requests, Path(tmp), args.interval_ms / 1000))
    print(
        f"writer CPU per request: min {min(runs):.1f} µs, median {statistics.median(runs):.1f}"
        f" (runs {', '.join(f'{r:.1f}' for r in runs)})"
    )


if __name__ == "__main__":
    main()
