"""Ledger: commit-before-resolve, batching, durability across reopen and SIGKILL, bad input."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import fields, replace
from pathlib import Path

import pytest

from gateway.accounting.ledger import Ledger, LedgerError, LedgerRow, flatten
from gateway.accounting.ledger.rows import as_float, as_int, as_optional_float, call_json
from gateway.accounting.records import RequestRecord, SpeculativeRecord, UpstreamCall
from gateway.storage.writer import Write


def make_record(rid: str = "r", **changes: object) -> RequestRecord:
    record = RequestRecord(
        request_id=rid,
        started_at=1_700_000_000.0,
        strategy="smart_routing",
        stream=True,
        model_used="local",
        calls=[UpstreamCall("local", prompt_tokens=10, completion_tokens=20)],
        ttft_s=0.25,
        duration_s=1.5,
        counterfactual_prompt_tokens=10,
        counterfactual_completion_tokens=20,
    )
    for key, value in changes.items():
        setattr(record, key, value)
    return record


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    led = Ledger(tmp_path / "sub" / "ledger.db")
    await led.start()
    yield led
    await led.close()


def count_rows(path: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0])


async def test_append_resolves_after_commit_and_other_connection_sees_it(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Path(ledger.path).parent.is_dir()
    writer = ledger._writer
    assert writer is not None
    real_commit = writer._commit

    def slow_commit(conn: sqlite3.Connection) -> None:
        time.sleep(0.2)  # an early resolve would let the check below run before the commit
        real_commit(conn)

    monkeypatch.setattr(writer, "_commit", slow_commit)
    row_id = await ledger.submit(flatten(make_record("a"), cost_usd=0.5, counterfactual_usd=0.75))
    with sqlite3.connect(ledger.path) as other:
        found = other.execute(
            "SELECT request_id, cost_usd, counterfactual_usd FROM requests WHERE id = ?", (row_id,)
        ).fetchone()
        mode = other.execute("PRAGMA journal_mode").fetchone()[0]
    assert found == ("a", 0.5, 0.75)
    assert mode == "wal"
    assert ledger._write_conn is not None
    assert ledger._write_conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert ledger.row_count == 1


async def test_thousand_concurrent_appends_are_batched(ledger: Ledger) -> None:
    ids = await asyncio.gather(
        *(
            ledger.submit(flatten(make_record(f"r{i}"), cost_usd=0, counterfactual_usd=0))
            for i in range(1000)
        )
    )
    assert sorted(ids) == list(range(1, 1001))
    assert count_rows(ledger.path) == 1000 == ledger.row_count
    assert ledger.commits < 100, "each commit should carry many rows"
    by_id = {row.id: row.request_id for row in ledger.rows()}
    assert all(by_id[row_id] == f"r{i}" for i, row_id in enumerate(ids))


async def test_row_round_trips_exactly(ledger: Ledger) -> None:
    record = make_record(
        "spec",
        calls=[
            UpstreamCall("local", role="draft", prompt_tokens=300, completion_tokens=80),
            UpstreamCall(
                "cerebras",
                role="verify",
                status="cancelled",
                prompt_tokens=300,
                completion_tokens=10,
                estimated=True,
            ),
            UpstreamCall("cerebras", status="rate_limited", http_status=429, error="429"),
        ],
        speculative=SpeculativeRecord(80, 10, True, False, 0.875, "similarity"),
        fallback=True,
        routing_reason="complex",
    )
    row = flatten(record, cost_usd=0.0007025, counterfactual_usd=0.000895)
    row_id = await ledger.submit(row)
    (stored,) = ledger.rows()
    assert stored == replace(row, id=row_id)
    assert (stored.local_prompt_tokens, stored.local_completion_tokens) == (300, 80)
    assert (stored.cerebras_prompt_tokens, stored.cerebras_completion_tokens) == (300, 10)
    assert (stored.verify_calls, stored.errors_cerebras, stored.rate_limit_hits) == (1, 1, 1)
    assert stored.estimated is True and stored.accepted is True and stored.similarity == 0.875
    assert stored.upstream_calls() == record.calls


async def test_rows_without_speculation_have_null_speculative_fields(ledger: Ledger) -> None:
    await ledger.submit(flatten(make_record(), cost_usd=0, counterfactual_usd=0))
    (row,) = ledger.rows()
    assert row.accepted is None and row.draft_tokens is None and row.decided_by is None


async def test_reopen_keeps_rows_and_events(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    first = Ledger(path)
    await first.start()
    for i in range(5):
        await first.submit(flatten(make_record(f"r{i}"), cost_usd=i, counterfactual_usd=0))
    first.append_event("error", "cerebras")
    before = first.rows()
    await first.close()

    second = Ledger(path)
    await second.start()
    try:
        assert second.rows() == before
        assert second.row_count == 5
        assert [(e.kind, e.model, e.last_request_id) for e in second.events()] == [
            ("error", "cerebras", 5)
        ]
        assert (
            await second.submit(flatten(make_record("r5"), cost_usd=0, counterfactual_usd=0)) == 6
        )
    finally:
        await second.close()


async def test_corrupt_file_raises_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"definitely not sqlite " * 500)
    ledger = Ledger(path)
    with pytest.raises(LedgerError, match="corrupt.db"):
        await ledger.start()
    with pytest.raises(LedgerError, match="not running"):
        ledger.append_event("error", "local")
    assert path.read_bytes().startswith(b"definitely not sqlite")


async def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    led = Ledger(path)
    await led.start()
    await led.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(LedgerError, match=r"future\.db.*schema version 99"):
        await Ledger(path).start()


async def test_append_before_start_and_after_close_raises(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.db")
    with pytest.raises(LedgerError, match="not running"):
        await led.submit(flatten(make_record(), cost_usd=0, counterfactual_usd=0))
    await led.start()
    await led.close()
    with pytest.raises(LedgerError, match="not running"):
        led.append_row_nowait(flatten(make_record(), cost_usd=0, counterfactual_usd=0))
    with pytest.raises(LedgerError, match="not open"):
        led.rows()


async def test_bad_values_are_stored_without_crashing_the_writer(ledger: Ledger) -> None:
    bad = make_record(
        "bad",
        ttft_s="soon",
        duration_s=float("nan"),
        http_status="teapot",
        calls=[
            UpstreamCall("local", prompt_tokens=None, completion_tokens="7"),  # type: ignore[arg-type]
            UpstreamCall("elsewhere", prompt_tokens=5),  # type: ignore[arg-type]
            object(),
        ],
        speculative=SpeculativeRecord(similarity="high"),  # type: ignore[arg-type]
    )
    row_id = await ledger.submit(flatten(bad, cost_usd=float("inf"), counterfactual_usd="x"))  # type: ignore[arg-type]
    (row,) = ledger.rows()
    assert row.id == row_id
    assert (row.ttft_s, row.duration_s, row.http_status) == (None, 0.0, 0)
    assert (row.local_prompt_tokens, row.local_completion_tokens) == (0, 7)
    assert (row.cost_usd, row.counterfactual_usd, row.similarity) == (0.0, 0.0, 0.0)
    # A call that is not an UpstreamCall is left out, so the stored calls still read back.
    assert [c.upstream for c in row.upstream_calls()] == ["local", "elsewhere"]
    assert (
        await ledger.submit(flatten(make_record("next"), cost_usd=0, counterfactual_usd=0))
        == row_id + 1
    )


def test_every_field_of_a_call_is_stored() -> None:
    call = UpstreamCall("cerebras", "verify", "cancelled", 1, 2, 3, True, "boom", 499, 4, True)
    assert set(call_json(call)) == {f.name for f in fields(UpstreamCall)}
    assert UpstreamCall(**call_json(call)) == call


async def test_failed_insert_rejects_only_that_row(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = ledger._writer
    assert writer is not None
    real_execute = writer._execute

    def flaky(conn: sqlite3.Connection, item: Write) -> int:
        if item.what == "poison":
            item = replace(item, params=("wrong", "arity"))
        return real_execute(conn, item)

    monkeypatch.setattr(writer, "_execute", flaky)
    results = await asyncio.gather(
        *(
            ledger.submit(flatten(make_record(rid), cost_usd=0, counterfactual_usd=0))
            for rid in ("ok1", "poison", "ok2")
        ),
        return_exceptions=True,
    )
    assert isinstance(results[1], LedgerError) and "poison" in str(results[1])
    assert [r.request_id for r in ledger.rows()] == ["ok1", "ok2"]
    assert ledger.write_errors == 1


async def test_failed_commit_rejects_waiters_and_writer_recovers(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = ledger._writer
    assert writer is not None
    real_commit = writer._commit
    failures = iter([True])

    def commit_once_fails(conn: sqlite3.Connection) -> None:
        if next(failures, False):
            raise sqlite3.OperationalError("disk I/O error")
        real_commit(conn)

    monkeypatch.setattr(writer, "_commit", commit_once_fails)
    with pytest.raises(LedgerError, match="commit failed.*disk I/O error"):
        await ledger.submit(flatten(make_record("lost"), cost_usd=0, counterfactual_usd=0))
    await ledger.submit(flatten(make_record("kept"), cost_usd=0, counterfactual_usd=0))
    assert [r.request_id for r in ledger.rows()] == ["kept"]
    assert ledger.row_count == 1


async def test_nowait_writes_from_other_threads_are_committed_by_close(tmp_path: Path) -> None:
    path = tmp_path / "nowait.db"
    led = Ledger(path)
    await led.start()

    def worker(n: int) -> None:
        for i in range(50):
            led.append_row_nowait(
                flatten(make_record(f"t{n}-{i}"), cost_usd=0, counterfactual_usd=0)
            )
            led.append_event("rate_limit", "cerebras", data={"n": n})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    await led.close()
    assert count_rows(str(path)) == 200
    reopened = Ledger(path)
    reopened.open()
    try:
        events = reopened.events(kinds=("rate_limit",))
        assert len(events) == 200 and events[0].data is not None and "n" in events[0].data
    finally:
        await reopened.close()


async def test_events_remember_the_last_committed_request(ledger: Ledger) -> None:
    for rid in ("a", "b"):
        await ledger.submit(flatten(make_record(rid), cost_usd=0, counterfactual_usd=0))
    ledger.append_event("reset")
    await ledger.submit(flatten(make_record("c"), cost_usd=0, counterfactual_usd=0))
    ledger.append_event("error", "local")
    await ledger.flush()
    assert [(e.kind, e.last_request_id) for e in ledger.events()] == [("reset", 2), ("error", 3)]
    latest = ledger.latest_event(("reset", "load"))
    assert latest is not None and latest.kind == "reset"
    assert ledger.latest_event(("load",)) is None


async def test_cerebras_spend_since_uses_the_cerebras_part_and_start_time(ledger: Ledger) -> None:
    for started, cost, cerebras in ((100.0, 1.0, 0.5), (200.0, 2.0, 2.0), (300.0, 4.0, 3.0)):
        await ledger.submit(
            flatten(
                make_record(started_at=started),
                cost_usd=cost,
                counterfactual_usd=0,
                cerebras_cost_usd=cerebras,
            )
        )
    assert ledger.cerebras_spend_since(0) == 5.5
    assert ledger.cerebras_spend_since(200.0) == 5.0
    assert ledger.cerebras_spend_since(301.0) == 0.0
    with sqlite3.connect(ledger.path) as conn:
        plan = " ".join(
            str(r[-1])
            for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT SUM(cerebras_cost_usd) FROM requests"
                " WHERE started_at >= 1"
            )
        )
    assert "requests_started_at" in plan


async def test_memory_ledger_reads_its_own_writes() -> None:
    led = Ledger(":memory:")
    await led.start()
    try:
        row_id = await led.submit(flatten(make_record("m"), cost_usd=0, counterfactual_usd=0))
        assert [(r.id, r.request_id) for r in led.rows()] == [(row_id, "m")]
        assert isinstance(led.rows()[0], LedgerRow)
    finally:
        await led.close()


async def test_close_flushes_everything_queued(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "flush.db")
    await led.start()
    started = time.perf_counter()
    for i in range(300):
        led.append_row_nowait(flatten(make_record(f"q{i}"), cost_usd=0, counterfactual_usd=0))
    await led.close()
    assert count_rows(led.path) == 300
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize(
    ("value", "expected"),
    [(7, 7), (-3, 0), (0, 0), (True, 1), (2.9, 2), ("12", 12), (float("nan"), 0), (None, 0)],
)
def test_as_int_keeps_its_coercions(value: object, expected: int) -> None:
    result = as_int(value, "n")
    assert result == expected and type(result) is int


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.25, 0.25), (-1.5, -1.5), (3, 3.0), ("0.5", 0.5), (float("inf"), 9.0), ("x", 9.0)],
)
def test_as_float_keeps_its_coercions(value: object, expected: float) -> None:
    result = as_float(value, "x", 9.0)
    assert result == expected and type(result) is float
    assert as_optional_float(None, "x", 9.0) is None
