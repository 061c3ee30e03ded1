"""The shared write-behind writer: group commit, waking after commit, a bad write costs only
itself; and the two router stores that now use it (router.db, learning.db)."""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import recorded_puts

from gateway.accounting.ledger import Ledger, LedgerError, flatten
from gateway.accounting.records import RequestRecord
from gateway.config import EscalationConfig, LearnConfig
from gateway.router.escalation import ConversationTracker
from gateway.router.labels import ConversationRow, LabelBook, LearningStore, TurnRow
from gateway.router.store import RouterStore
from gateway.storage import writer as writer_module
from gateway.storage.connection import connect
from gateway.storage.writer import (
    SOFT_STATE_DEFER_S,
    Write,
    WriteBehind,
    WriterThread,
    handoff,
)

INSERT = "INSERT INTO t (name) VALUES (?)"
# An absolute-value upsert, as the router writes weights and counters.
SET = "INSERT OR REPLACE INTO t (id, name) VALUES (1, ?)"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[str, sqlite3.Connection]]:
    path = str(tmp_path / "w.db")
    conn = connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
    yield path, conn
    conn.close()


def names(path: str) -> list[str]:
    with sqlite3.connect(path) as other:
        return [r[0] for r in other.execute("SELECT name FROM t ORDER BY id")]


async def test_concurrent_waiters_share_commits_and_wake_after_theirs(
    db: tuple[str, sqlite3.Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, conn = db
    writer = WriteBehind(conn, name="test", thread_name="test-writer")
    real_commit = writer._commit

    def slow_commit(c: sqlite3.Connection) -> None:
        time.sleep(0.01)  # lets writes pile up behind a commit, as under load
        real_commit(c)

    monkeypatch.setattr(writer, "_commit", slow_commit)
    writer.start()
    reader = sqlite3.connect(path, check_same_thread=False)

    async def one(i: int) -> None:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        writer.put(Write(INSERT, (f"n{i}",), f"n{i}", fut))
        row_id = await fut
        # Woken only once committed: another connection already sees the row.
        seen = reader.execute("SELECT name FROM t WHERE id = ?", (row_id,)).fetchone()
        assert seen == (f"n{i}",)

    n = 200
    await asyncio.gather(*(one(i) for i in range(n)))
    await asyncio.to_thread(writer.stop)
    reader.close()
    assert sorted(names(path)) == sorted(f"n{i}" for i in range(n))
    assert 1 <= writer.commits < n / 4, "rows queued together share one commit"
    assert writer.committed[INSERT] == n and writer.errors == 0


async def test_a_bad_write_is_skipped_and_the_rest_of_its_batch_commits(
    db: tuple[str, sqlite3.Connection],
) -> None:
    path, conn = db
    writer = WriteBehind(conn, name="test", thread_name="test-writer", error=LedgerError)
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(3)]
    params: list[tuple[Any, ...]] = [("a",), ({"not": "bindable"},), ("b",)]
    for fut, values in zip(futures, params, strict=True):
        writer.put(Write(INSERT, values, str(values[0]), fut))
    writer.start()  # all three are queued: they form one batch
    results = await asyncio.gather(*futures, return_exceptions=True)
    await asyncio.to_thread(writer.stop)
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], LedgerError) and "cannot write" in str(results[1])
    assert names(path) == ["a", "b"]
    assert (writer.commits, writer.errors) == (1, 1)


async def test_a_write_that_rolls_the_transaction_back_fails_only_what_it_took(
    db: tuple[str, sqlite3.Connection],
) -> None:
    path, conn = db
    conn.execute(INSERT, ("dup",))
    writer = WriteBehind(conn, name="test", thread_name="test-writer")
    loop = asyncio.get_running_loop()
    statements = [
        (INSERT, ("before",)),
        ("INSERT OR ROLLBACK INTO t (name) VALUES (?)", ("dup",)),  # ends the transaction
        (INSERT, ("after",)),
    ]
    futures = [loop.create_future() for _ in statements]
    for fut, (sql, values) in zip(futures, statements, strict=True):
        writer.put(Write(sql, values, str(values[0]), fut))
    writer.start()
    results = await asyncio.gather(*futures, return_exceptions=True)
    await asyncio.to_thread(writer.stop)
    stored = names(path)
    assert stored == ["dup", "after"]
    assert isinstance(results[0], RuntimeError) and "rolled back" in str(results[0])
    assert isinstance(results[1], RuntimeError) and isinstance(results[2], int)
    # Every acknowledged write is on disk, every rejected one is not.
    assert writer.committed[INSERT] == 1 and writer.errors == 2


async def test_a_batch_that_cannot_begin_wakes_every_waiter_with_the_error(
    db: tuple[str, sqlite3.Connection],
) -> None:
    """When BEGIN itself fails, writes not yet run must still be failed, not left waiting (the
    request would never get its [DONE]); the next batch writes normally."""
    path, conn = db
    writer = WriteBehind(conn, name="test", thread_name="test-writer")
    conn.execute("BEGIN")  # a transaction left open: the writer's BEGIN fails
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(3)]
    for i, fut in enumerate(futures):
        writer.put(Write(INSERT, (f"lost{i}",), f"lost{i}", fut))
    writer.start()
    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 5)
    assert all(isinstance(r, Exception) and "commit failed" in str(r) for r in results), results
    after: asyncio.Future[int] = loop.create_future()
    writer.put(Write(INSERT, ("kept",), "kept", after))
    assert await asyncio.wait_for(after, 5) > 0
    await asyncio.to_thread(writer.stop)
    assert names(path) == ["kept"]


def test_a_many_write_is_all_or_nothing(db: tuple[str, sqlite3.Connection]) -> None:
    path, conn = db
    writer = WriteBehind(conn, name="test", thread_name="test-writer")
    writer.put(Write(INSERT, [("x",), ("y",), ("x",)], "clashing", many=True))
    writer.put(Write(INSERT, [("p",), ("q",)], "fine", many=True))
    writer.start()
    writer.stop()
    assert names(path) == ["p", "q"]
    assert writer.errors == 1 and writer.commits == 1


def test_flush_blocking_waits_for_the_commit_and_stop_drains_the_queue(
    db: tuple[str, sqlite3.Connection],
) -> None:
    path, conn = db
    writer = WriteBehind(conn, name="test", thread_name="test-writer-drained")
    writer.start()
    for i in range(100):
        writer.put(Write(INSERT, (f"f{i}",)))
    assert writer.flush_blocking(10)
    assert len(names(path)) == 100
    for i in range(100):
        writer.put(Write(INSERT, (f"s{i}",)))
    writer.stop()
    assert len(names(path)) == 200
    assert "test-writer-drained" not in {t.name for t in threading.enumerate()}


async def test_ledger_rows_of_one_loop_turn_share_a_commit_on_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    await ledger.start()
    loop = asyncio.get_running_loop()
    calls = 0
    real = loop.call_soon_threadsafe

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
    records = [RequestRecord(f"r{i}", 1.0, "always_local", True) for i in range(500)]
    ids = await asyncio.gather(
        *(ledger.submit(flatten(r, cost_usd=0, counterfactual_usd=0)) for r in records)
    )
    commits = ledger.commits
    monkeypatch.undo()
    await ledger.close()
    assert sorted(ids) == list(range(1, 501))
    # Made in one turn of the loop: committed on it together, no thread to wake it back.
    assert (commits, calls) == (1, 0)


def test_learning_store_keeps_the_good_rows_of_a_batch_with_a_bad_one(tmp_path: Path) -> None:
    path = str(tmp_path / "learning.db")
    store = LearningStore(path)
    store.load(ttl_seconds=3600, max_rows=1000)
    now = time.time()
    for i in range(50):
        store.put_turn(TurnRow(f"g{i}", "conv", i, "local", now))
        if i == 25:
            store.put_turn(TurnRow("bad", "conv", i, {"not": "bindable"}, now))  # type: ignore[arg-type]
    store.close()
    reopened = LearningStore(path)
    loaded = reopened.load(ttl_seconds=3600, max_rows=1000)
    reopened.close()
    assert sorted(t.request_id for t in loaded.turns) == sorted(f"g{i}" for i in range(50))


def test_router_store_keeps_the_good_rows_of_a_batch_with_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "router.db"
    store = RouterStore(path, window=10, remember=100)
    store.load("digest")
    for i in range(30):
        store.put_score("simple", i / 30, cloud=False)
        if i == 15:
            store.put_counter("broken", {"not": "bindable"})  # type: ignore[arg-type]
    store.put_counter("requests", 7)
    store.flush()
    store.close()
    reopened = RouterStore(path, window=10, remember=100)
    loaded = reopened.load("digest")
    reopened.close()
    assert [round(s * 30) for s, _ in loaded.scores["simple"]] == list(range(20, 30))
    assert loaded.counters == {"requests": 7}


def test_a_failed_after_batch_step_keeps_the_writes_and_the_thread(
    db: tuple[str, sqlite3.Connection],
) -> None:
    path, conn = db
    failures = iter([True])

    def trim(c: sqlite3.Connection, writes: list[Write]) -> None:
        if next(failures, False):
            c.execute("SELECT * FROM missing_table")

    writer = WriteBehind(conn, name="test", thread_name="test-writer", after_batch=trim)
    writer.put(Write(INSERT, ("kept",)))
    writer.start()
    assert writer.flush_blocking(10)
    assert names(path) == ["kept"], "a failed after-batch step keeps the batch's writes"
    writer.put(Write(INSERT, ("next",)))
    writer.stop()
    assert names(path) == ["kept", "next"]


@pytest.fixture
def two_files(tmp_path: Path) -> Iterator[tuple[WriterThread, list[tuple[str, WriteBehind]]]]:
    """Two SQLite files written by one shared thread."""
    thread = WriterThread("test-shared-writer")
    files = []
    for name in ("a", "b"):
        path = str(tmp_path / f"{name}.db")
        conn = connect(path)
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
        files.append((path, WriteBehind(conn, name=name, thread_name="unused", thread=thread)))
    for _, file in files:
        file.start()
    yield thread, files
    for _, file in files:
        file.close()
    thread.stop()


def test_one_thread_commits_each_file_in_its_own_transaction(
    two_files: tuple[WriterThread, list[tuple[str, WriteBehind]]],
) -> None:
    thread, [(path_a, a), (path_b, b)] = two_files
    a.put(Write(INSERT, ("a1",)))
    b.put(Write(INSERT, ("b1",)))
    b.put(Write(INSERT, ("a1",)))  # the same name in the other file: no conflict across files
    a.put(Write(INSERT, ("a1",)))  # a duplicate in a: fails alone, b's batch is untouched
    assert a.flush_blocking(10) and b.flush_blocking(10)
    assert (names(path_a), names(path_b)) == (["a1"], ["b1", "a1"])
    assert (a.errors, b.errors) == (1, 0)
    threads = {t.name for t in threading.enumerate()}
    assert "test-shared-writer" in threads and "unused" not in threads
    # Closing one file leaves the shared thread serving the other.
    a.close()
    b.put(Write(INSERT, ("b2",)))
    assert b.flush_blocking(10) and names(path_b) == ["b1", "a1", "b2"]


async def test_a_requests_writes_go_in_one_hand_off_with_its_awaited_write(
    two_files: tuple[WriterThread, list[tuple[str, WriteBehind]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    thread, [(path_a, a), (path_b, b)] = two_files
    puts = recorded_puts(monkeypatch, thread)
    with handoff(thread) as held:
        a.put(Write(INSERT, ("early",)))  # e.g. the tracker's conversation row at begin
        b.put(Write(INSERT, ("route",)))  # e.g. the router's score
        assert puts == [] and held.held == 2, "held until the request's row"
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        b.put(Write(INSERT, ("row",), "row", fut))  # the ledger row, awaited before [DONE]
        assert len(puts) == 1 and [w.params[0] for w in puts[0]] == ["early", "route", "row"]
        await fut
        # Committed before the awaited write's waiter woke: the held writes too.
        assert (names(path_a), names(path_b)) == (["early"], ["route", "row"])
        a.put(Write(INSERT, ("late",)))  # after the hand-off: straight to the thread
        assert len(puts) == 2 and [w.params[0] for w in puts[1]] == ["late"]
    assert len(puts) == 2, "leaving sends nothing more"
    assert a.flush_blocking(10) and names(path_a) == ["early", "late"]


async def test_a_held_write_never_commits_after_a_later_straight_one(
    two_files: tuple[WriterThread, list[tuple[str, WriteBehind]]],
) -> None:
    thread, [(path_a, a), _] = two_files
    with handoff(thread):
        a.put(Write(SET, ("old",)))  # e.g. weights learned as a long stream began
        # A write made later outside any request (feedback, a verification sample).
        contextvars.Context().run(a.put, Write(SET, ("new",)))
    assert a.flush_blocking(10) and names(path_a) == ["new"]


async def test_held_writes_commit_in_the_order_made_whichever_request_ends_first(
    two_files: tuple[WriterThread, list[tuple[str, WriteBehind]]],
) -> None:
    thread, [(path_a, a), _] = two_files
    first_held = asyncio.Event()
    first_may_end = asyncio.Event()

    async def long_request() -> None:
        with handoff(thread):
            a.put(Write(SET, ("earlier",)))
            first_held.set()
            await first_may_end.wait()

    async def short_request() -> None:
        await first_held.wait()
        with handoff(thread):
            a.put(Write(SET, ("later",)))

    long_task = asyncio.create_task(long_request())
    await short_request()  # ends, and hands its writes over, first
    first_may_end.set()
    await long_task
    assert a.flush_blocking(10) and names(path_a) == ["later"]


async def test_a_request_without_an_awaited_write_hands_off_when_it_ends(
    two_files: tuple[WriterThread, list[tuple[str, WriteBehind]]],
) -> None:
    thread, [(path_a, a), _] = two_files
    with handoff(thread):
        a.put(Write(INSERT, ("x",)))
        await asyncio.sleep(0)  # nothing is queued yet: no flush could see it
        assert thread.pending == 0
    assert a.flush_blocking(10) and names(path_a) == ["x"]
    # Outside a request, and for a file on another thread, writes go straight through.
    a.put(Write(INSERT, ("y",)))
    assert a.flush_blocking(10) and names(path_a) == ["x", "y"]


async def test_a_hand_off_holds_only_writes_to_its_own_thread(
    db: tuple[str, sqlite3.Connection],
) -> None:
    path, conn = db
    own = WriteBehind(conn, name="own", thread_name="test-own-writer")
    own.start()
    try:
        with handoff(WriterThread("test-never-started")):
            own.put(Write(INSERT, ("direct",)))
            assert own.flush_blocking(10) and names(path) == ["direct"]
    finally:
        own.stop()


ROW = "INSERT OR REPLACE INTO r (k, v) VALUES (?, ?)"


def row_writer(tmp_path: Path) -> tuple[WriteBehind, list[str], str]:
    """A writer of table r (one row per key), not started, and the statements it runs."""
    path = str(tmp_path / "r.db")
    conn = connect(path)
    conn.execute("CREATE TABLE r (k TEXT PRIMARY KEY, v TEXT)")
    conn.execute(ROW, ("k", "before"))
    ran: list[str] = []
    conn.set_trace_callback(ran.append)
    return WriteBehind(conn, name="r", thread_name="test-r-writer"), ran, path


def row(key: str, value: Any, waiter: threading.Event | None = None) -> Write:
    return Write(ROW, (key, value), key, waiter, replaces=("r", key))


def rows(path: str) -> dict[str, str]:
    with sqlite3.connect(path) as other:
        return dict(other.execute("SELECT k, v FROM r"))


def test_a_row_replaced_later_in_its_batch_is_written_once(tmp_path: Path) -> None:
    writer, ran, path = row_writer(tmp_path)
    for write in (row("k", "begin"), row("other", "x"), row("k", "finish")):
        writer.put(write)  # queued before the thread starts: one batch
    writer.start()
    writer.stop()
    assert rows(path) == {"k": "finish", "other": "x"}
    assert [s for s in ran if s.startswith("INSERT")] == [
        "INSERT OR REPLACE INTO r (k, v) VALUES ('other', 'x')",
        "INSERT OR REPLACE INTO r (k, v) VALUES ('k', 'finish')",
    ], "the write the later one replaces is not run"
    assert writer.committed[ROW] == 3 and writer.errors == 0, "it counts as written"


def test_a_failed_replacing_write_leaves_the_row_it_would_have_left(tmp_path: Path) -> None:
    writer, ran, path = row_writer(tmp_path)
    writer.put(row("k", "first"))
    writer.put(row("k", "second"))
    writer.put(row("j", "j"))
    writer.put(row("k", {"not": "bindable"}))  # fails: the two before it run in its place
    writer.start()
    writer.stop()
    assert rows(path) == {"k": "second", "j": "j"}
    assert (writer.committed[ROW], writer.errors) == (3, 1)


def test_a_write_that_may_touch_any_row_keeps_the_writes_before_it(tmp_path: Path) -> None:
    writer, ran, path = row_writer(tmp_path)
    writer.put(row("k", "set"))
    writer.put(Write("DELETE FROM r WHERE k = ?", ("k",), "drop"))  # names no row it replaces
    writer.put(row("k", {"not": "bindable"}))
    writer.start()
    writer.stop()
    assert rows(path) == {}, "set, then deleted: the failed write changes nothing"
    assert sum(s.startswith("INSERT") for s in ran) == 1


def test_an_awaited_replaced_write_is_still_written_and_woken(tmp_path: Path) -> None:
    writer, ran, path = row_writer(tmp_path)
    seen = threading.Event()
    writer.put(row("k", "awaited", seen))
    writer.put(row("k", "later"))
    writer.start()
    writer.stop()
    assert seen.is_set() and rows(path) == {"k": "later"}
    assert sum(s.startswith("INSERT") for s in ran) == 2


def test_a_replacing_write_that_rolls_back_fails_what_it_replaced_too(tmp_path: Path) -> None:
    writer, ran, path = row_writer(tmp_path)
    writer._conn.execute("CREATE UNIQUE INDEX r_v ON r (v)")
    writer.put(row("k", "first"))
    writer.put(Write(ROW.replace("REPLACE", "ROLLBACK"), ("k", "before"), "k", replaces=("r", "k")))
    writer.put(row("j", "after"))
    writer.start()
    writer.stop()
    # As without the replacing: everything before the rollback is undone, the rest commits.
    assert rows(path) == {"k": "before", "j": "after"}
    assert (writer.committed[ROW], writer.errors) == (1, 2)


def test_a_requests_conversation_row_is_written_once_and_reloads_as_finished(
    tmp_path: Path,
) -> None:
    thread = WriterThread("test-learning-writer")
    path = str(tmp_path / "learning.db")
    store = LearningStore(path, writer=thread)
    loaded = store.load(ttl_seconds=3600, max_rows=100)
    cfg = EscalationConfig()
    tracker = ConversationTracker(cfg, LearnConfig(), store, LabelBook(store, None, {}), loaded)
    ran: list[str] = []
    assert store._writer is not None
    store._writer._conn.set_trace_callback(ran.append)
    body = {"messages": [{"role": "user", "content": "fix the test"}]}
    with handoff(thread):
        tracker.begin("r1", body)  # a new task: its conversation row
        tracker.finish("r1", "local")  # the same row, answered
    with handoff(thread):
        tracker.begin("r2", {"messages": [{"role": "user", "content": "another task"}]})
        tracker.finish("r2", None)  # no answer reached the client: the row of begin stays
    store.close()
    thread.stop()
    conversations = [s for s in ran if s.startswith("INSERT INTO conversations")]
    assert len(conversations) == 2, "r1's row of begin is replaced by its row of finish"
    reopened = LearningStore(path)
    state = reopened.load(ttl_seconds=3600, max_rows=100)
    reopened.close()
    by_key = {row.key: row for row in state.conversations}
    assert len(by_key) == 2 and [t.request_id for t in state.turns] == ["r1"]
    answered = by_key[state.turns[0].conversation]
    assert (answered.last_request_id, answered.last_model, answered.last_turn) == ("r1", "local", 1)


def test_a_conversation_row_is_set_as_insert_or_replace_would_but_in_place(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "learning.db")
    store = LearningStore(path)
    store.load(ttl_seconds=3600, max_rows=100)
    replaced = sqlite3.connect(":memory:")
    replaced.execute(
        "CREATE TABLE conversations (key TEXT PRIMARY KEY, last_request_id TEXT, last_model"
        " TEXT, last_turn INTEGER NOT NULL, escalated TEXT, remaining INTEGER, updated REAL"
        " NOT NULL)"
    )
    now = time.time()
    versions = [
        ConversationRow("a", None, None, 0, None, None, now),
        ConversationRow("b", "r0", "local", 1, None, None, now + 1),
        ConversationRow("a", "r1", "local", 1, "escalated: x", 3, now + 2),
        ConversationRow("a", None, "cerebras", 3, None, None, now + 3),  # columns back to NULL
    ]
    for row in versions:
        store.put_conversation(row)
        replaced.execute(
            "INSERT OR REPLACE INTO conversations VALUES (?, ?, ?, ?, ?, ?, ?)",
            (row.key, row.last_request_id, row.last_model, row.last_turn, row.escalated,
             row.remaining, row.updated),
        )  # fmt: skip
        store.flush()
    store.close()
    query = "SELECT * FROM conversations ORDER BY key"
    with sqlite3.connect(path) as db:
        assert db.execute(query).fetchall() == replaced.execute(query).fetchall()
        # Updated in place: "a" keeps the rowid it was first given.
        assert db.execute("SELECT rowid FROM conversations WHERE key = 'a'").fetchone() == (1,)


class RecordingQueue:
    """A writer thread's queue that records what is put on it."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.puts: list[Any] = []

    def put(self, item: Any) -> None:
        self.puts.append(item)
        self.real.put(item)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture
def deferring(
    tmp_path: Path,
) -> Iterator[tuple[WriterThread, tuple[str, WriteBehind], tuple[str, WriteBehind]]]:
    """A ledger-like file (written inline) and a file whose writes may wait an hour, on one
    shared thread, whose queue records what is put on it (`thread.puts`)."""
    thread = WriterThread("test-deferring-writer")
    thread._queue = RecordingQueue(thread._queue)  # type: ignore[assignment]
    files = []
    for name, defer_s in (("ledger", 0.0), ("learned", 3600.0)):
        path = str(tmp_path / f"{name}.db")
        conn = connect(path)
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
        file = WriteBehind(
            conn, name=name, thread_name="unused", thread=thread, defer_s=defer_s,
            inline=not defer_s,
        )  # fmt: skip
        file.start()
        files.append((path, file))
    yield thread, files[0], files[1]
    for _, file in files:
        file.close()
    thread.stop()


async def test_deferred_writes_of_many_requests_share_one_transaction(
    deferring: tuple[WriterThread, tuple[str, WriteBehind], tuple[str, WriteBehind]],
) -> None:
    thread, (ledger_path, ledger), (learned_path, learned) = deferring
    for i in range(20):  # sequential requests: each hand-off is its own batch
        with handoff(thread):
            learned.put(Write(INSERT, (f"turn{i}",)))
            fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            ledger.put(Write(INSERT, (f"row{i}",), "row", fut))
            await fut
    assert names(ledger_path) == [f"row{i}" for i in range(20)], "the ledger waits for nothing"
    assert (names(learned_path), learned.commits) == ([], 0), "kept back for later company"
    queue_puts = thread._queue.puts  # type: ignore[attr-defined]
    assert queue_puts == [writer_module._WAKE], "the thread was woken once, to start its wait"
    assert learned.flush_blocking(10), "a write someone waits for takes the kept ones along"
    assert names(learned_path) == [f"turn{i}" for i in range(20)] and learned.commits == 1
    assert ledger.commits == 20


async def test_kept_writes_keep_their_order_against_later_ones(
    deferring: tuple[WriterThread, tuple[str, WriteBehind], tuple[str, WriteBehind]],
) -> None:
    thread, _, (learned_path, learned) = deferring
    learned.put(Write(SET, ("old",)))  # kept back, then written by the flush
    assert learned.flush_blocking(10) and names(learned_path) == ["old"]
    learned.put(Write(SET, ("kept",)))
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    learned.put(Write(SET, ("newest",), "newest", fut))  # awaited: written now, after the kept
    await fut
    assert names(learned_path) == ["newest"]


def test_a_kept_write_commits_once_the_wait_is_over_without_more_traffic(tmp_path: Path) -> None:
    path = str(tmp_path / "w.db")
    conn = connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
    writer = WriteBehind(conn, name="soon", thread_name="test-writer-soon", defer_s=0.05)
    writer.put(Write(INSERT, ("a",)))
    writer.put(Write(INSERT, ("b",)))
    writer.start()  # after the puts: both are taken in one batch, however the test is scheduled
    deadline = time.monotonic() + 10
    while names(path) != ["a", "b"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert names(path) == ["a", "b"] and writer.commits == 1, "by the thread's own timer"
    writer.close()


def test_kept_writes_commit_when_too_many_wait_or_the_thread_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.storage.writer.MAX_BATCH", 10)
    path = str(tmp_path / "w.db")
    conn = connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
    thread = WriterThread("test-writer-kept")
    writer = WriteBehind(conn, name="kept", thread_name="unused", thread=thread, defer_s=3600)
    writer.start()
    for i in range(10):
        writer.put(Write(INSERT, (f"n{i}",)))  # the tenth makes MAX_BATCH waiting
    deadline = time.monotonic() + 10
    while len(names(path)) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert names(path) == [f"n{i}" for i in range(10)], "written long before the hour is over"
    for i in range(10, 13):
        writer.put(Write(INSERT, (f"n{i}",)))
    thread.stop()  # what is kept is written before the thread ends
    assert names(path) == [f"n{i}" for i in range(13)]
    conn.close()


def test_the_learned_state_stores_defer_their_writes(tmp_path: Path) -> None:
    thread = WriterThread("test-learned-stores")
    learning = LearningStore(str(tmp_path / "learning.db"), writer=thread)
    learning.load(ttl_seconds=3600, max_rows=100)
    router = RouterStore(str(tmp_path / "router.db"), window=10, remember=10, writer=thread)
    router.load("digest")
    assert learning._writer is not None and router._writer is not None
    assert learning._writer.defer_s == router._writer.defer_s == SOFT_STATE_DEFER_S > 0
    for i in range(5):
        learning.put_turn(TurnRow(f"r{i}", "c", i, "local", time.time()))
        router.put_counter("n", i)
    learning.close()  # a flush: written, however short the wait so far
    router.close()
    thread.stop()
    reloaded = LearningStore(str(tmp_path / "learning.db")).load(ttl_seconds=3600, max_rows=100)
    assert reloaded.turns[-1].request_id == "r4"


def test_one_learned_file_due_takes_the_other_and_the_ledger_is_written_and_woken_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    files = {}
    for name, defer_s in (("ledger", 0.0), ("learning", 1.0), ("router", 1.0)):
        file = WriteBehind(
            sqlite3.connect(":memory:"), name=name, thread_name="unused", defer_s=defer_s
        )
        monkeypatch.setattr(file, "write_batch", lambda ws, n=name: events.append(n) or [])
        files[name] = file
    monkeypatch.setattr(writer_module, "_wake", lambda done: events.append("wake"))
    ledger, learning, router = files["ledger"], files["learning"], files["router"]

    def write(file: WriteBehind, *params: Any, waiter: threading.Event | None = None) -> Write:
        return Write(INSERT if params else None, params, waiter=waiter, file=file)

    deferred = writer_module._Deferred()
    assert deferred.wait(0.0) is None, "nothing kept: wait for the next put"
    assert deferred.keep(write(learning, "a"), 0.0), "the first kept write sets the wait"
    assert not deferred.keep(write(router, "b"), 0.5), "the wait stays the oldest's"
    assert deferred.wait(0.25) == pytest.approx(0.75), "until the oldest kept write is due"
    assert deferred.take(0.9, everything=False) == {}, "not due yet"
    due = deferred.take(1.0, everything=False)
    assert set(due) == {learning, router}, "router's writes go with learning's"
    due[ledger] = [write(ledger, "row", waiter=threading.Event())]
    writer_module._write_and_wake(due)
    assert events[:2] == ["ledger", "wake"] and sorted(events[2:4]) == ["learning", "router"]
    assert events[4:] == ["wake"] and deferred.wait(1.0) is None
    # A flush of one learned file (a feedback answer waits for one) takes the other along.
    assert deferred.keep(write(router, "c"), 1.1)
    assert deferred.keep(write(learning, waiter=threading.Event()), 1.2), "wakes the thread"
    assert deferred.wait(1.2) == 0.0
    assert set(deferred.take(1.2, everything=False)) == {learning, router}
    # So does one that fills a batch.
    monkeypatch.setattr(writer_module, "MAX_BATCH", 3)
    assert deferred.keep(write(router, "d"), 1.3)
    assert not deferred.keep(write(learning, "e"), 1.3)
    assert not deferred.keep(write(learning, "f"), 1.3)
    assert deferred.keep(write(learning, "g"), 1.4), "the third learning write fills it"
    assert set(deferred.take(1.4, everything=False)) == {learning, router}
    # And the thread's stop takes all, due or not.
    assert deferred.keep(write(router, "h"), 2.0)
    assert deferred.take(2.0, everything=False) == {}
    assert set(deferred.take(2.0, everything=True)) == {router}


@pytest.fixture
def inline_file(tmp_path: Path) -> Iterator[tuple[str, WriterThread, WriteBehind]]:
    """A ledger-like file written inline, on a thread of its own (not started)."""
    path = str(tmp_path / "inline.db")
    conn = connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
    thread = WriterThread("test-inline-writer")
    file = WriteBehind(conn, name="inline", thread_name="unused", thread=thread, inline=True)
    yield path, thread, file
    thread.stop()
    conn.close()


def waited(name: str) -> tuple[Write, asyncio.Future[int]]:
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    return Write(INSERT, (name,), name, fut), fut


async def test_an_inline_files_writes_commit_on_the_loop_one_turns_together(
    inline_file: tuple[str, WriterThread, WriteBehind],
) -> None:
    path, thread, file = inline_file
    turn = [waited(name) for name in ("a", "b", "c")]
    for write, _ in turn:
        file.put(write)
    assert [await fut for _, fut in turn] == [1, 2, 3] and file.commits == 1
    write, fut = waited("d")
    file.put(write)
    assert await fut == 4 and file.commits == 2
    assert names(path) == ["a", "b", "c", "d"]
    assert not thread.alive and thread.pending == 0, "no writer thread took part"


async def test_a_locked_inline_file_has_the_writer_thread_wait_not_the_loop(
    inline_file: tuple[str, WriterThread, WriteBehind],
) -> None:
    path, thread, file = inline_file
    thread.start()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the file's write lock
    write, fut = waited("a")
    file.put(write)
    await asyncio.sleep(0.05)  # the loop goes on turning
    assert not fut.done() and file.commits == 0, "nothing commits while the lock is held"
    other.execute("COMMIT")
    other.close()
    assert await fut == 1 and names(path) == ["a"]


async def test_a_barrier_waits_for_the_inline_writes_made_before_it(
    inline_file: tuple[str, WriterThread, WriteBehind],
) -> None:
    path, thread, file = inline_file
    thread.start()
    file.put(Write(INSERT, ("a",)))
    await file.flush()  # made in the same turn: the row is written first
    assert names(path) == ["a"]
    file.put(Write(INSERT, ("b",)))
    # From another thread, perhaps before the loop's turn ends: the row is queued ahead of it.
    assert await asyncio.to_thread(file.flush_blocking, 10)
    assert names(path) == ["a", "b"]
    file.put(Write(INSERT, ("c",)))
    # On the loop itself (a store's stop or close): the loop cannot turn while it waits, so the
    # barrier and the row before it go to the writer thread.
    assert file.flush_blocking(10)
    assert names(path) == ["a", "b", "c"]


async def test_stopping_the_thread_writes_the_inline_writes_of_an_unfinished_turn(
    inline_file: tuple[str, WriterThread, WriteBehind],
) -> None:
    path, thread, file = inline_file
    thread.start()
    write, fut = waited("a")
    file.put(write)
    thread.stop()  # before this turn's writes were written on the loop
    assert names(path) == ["a"] and await fut == 1


async def test_the_writer_thread_checkpoints_an_inline_files_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "CHECKPOINT_EVERY", 3)
    path = str(tmp_path / "inline.db")
    conn = connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
    thread = WriterThread("test-checkpointing-writer")
    file = WriteBehind(conn, name="inline", thread_name="unused", thread=thread, inline=True)
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,), "never where it commits"
    assert conn.execute("PRAGMA busy_timeout").fetchone() == (0,), "never waits where it commits"
    ran: list[str] = []
    real = file._checkpoint

    def checkpoint() -> None:
        ran.append(threading.current_thread().name)
        real()

    monkeypatch.setattr(file, "_checkpoint", checkpoint)
    thread.start()
    for i in range(7):  # one commit per turn
        write, fut = waited(f"n{i}")
        file.put(write)
        await fut
    await file.flush()
    thread.stop()
    assert ran and set(ran) == {"test-checkpointing-writer"}, "asked for, run by the thread"
    assert names(path) == [f"n{i}" for i in range(7)]
    conn.close()


async def test_the_commit_that_restarts_the_wal_after_a_checkpoint_is_the_writer_threads(
    inline_file: tuple[str, WriterThread, WriteBehind], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, thread, file = inline_file
    monkeypatch.setattr(file, "_checkpoint_at", 3)
    committed_by: dict[str, str] = {}
    real_execute = file._execute

    def execute(conn: sqlite3.Connection, write: Write) -> int:
        if write.sql is not None:
            committed_by[write.params[0]] = threading.current_thread().name
        return real_execute(conn, write)

    monkeypatch.setattr(file, "_execute", execute)
    thread.start()

    async def row(name: str) -> None:
        write, fut = waited(name)
        file.put(write)
        await fut

    for i in range(3):
        await row(f"n{i}")
    await file.flush()  # behind the checkpoint the third commit asked for
    # The WAL was checkpointed whole: the next commit writes a new WAL header and syncs it,
    # which the loop must not wait for.
    await row("n3")
    await row("n4")
    loop_thread = threading.current_thread().name
    assert committed_by == {
        "n0": loop_thread,
        "n1": loop_thread,
        "n2": loop_thread,
        "n3": "test-inline-writer",
        "n4": loop_thread,
    }
    assert names(path) == [f"n{i}" for i in range(5)]


async def test_an_inline_write_never_commits_before_one_made_earlier_and_handed_to_the_thread(
    inline_file: tuple[str, WriterThread, WriteBehind], tmp_path: Path
) -> None:
    # The ledger's order is its meaning: an event's `last_request_id` is the last row committed
    # before it (a `reset` marker divides the rows that count from those that do not).
    path, thread, file = inline_file
    busy = str(tmp_path / "busy.db")
    busy_conn = connect(busy)
    busy_conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
    other_file = WriteBehind(busy_conn, name="busy", thread_name="unused", thread=thread)
    gate = threading.Event()
    real_commit = other_file._commit

    def held_commit(conn: sqlite3.Connection) -> None:
        gate.wait(10)  # the thread is at another file's work meanwhile
        real_commit(conn)

    other_file._commit = held_commit  # type: ignore[method-assign]
    thread.start()
    other_file.put(Write(INSERT, ("elsewhere",)))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the file's lock is taken: the row goes to the thread
    first, first_fut = waited("first")
    file.put(first)
    await asyncio.sleep(0)  # the turn ends: the row is queued for the thread
    other.execute("COMMIT")
    other.close()
    second, second_fut = waited("second")
    file.put(second)
    await asyncio.sleep(0.05)  # the loop turns; the lock is free again
    gate.set()
    assert (await first_fut, await second_fut) == (1, 2)
    assert names(path) == ["first", "second"]
    busy_conn.close()
