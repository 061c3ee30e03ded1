"""One write-behind writer thread serving every SQLite file the gateway keeps (the ledger,
`router.db`, `learning.db`).

Callers put `Write`s; the thread (`WriterThread`) takes whatever is queued (up to MAX_BATCH) and
commits it with one transaction per file (`WriteBehind`, one per connection): a group commit, so
under load many writes share one commit. A waiter is woken only after the transaction holding its
write committed; all asyncio waiters of one loop are woken by one call into that loop.

A file written where its writes are made (`WriteBehind(inline=True)`: the ledger, whose row a
request waits for before `[DONE]`) is the exception: its writes are committed by the thread that
puts them, the event loop's included, without the two thread hand-offs (the writer thread woken,
then the loop woken back) that cost more than the commit itself. Such a file is append-only and
its own process's alone, so that nothing there waits: it never waits for SQLite's lock (its busy
timeout is 0; when the lock is taken, by its writer thread or another process, the writes go to
the thread instead, which waits), it never checkpoints its WAL where it commits (its writer thread
does, every CHECKPOINT_EVERY commits), and with `synchronous=NORMAL` a commit writes the WAL
without syncing it (but the first commit after a checkpoint copied the whole WAL starts the WAL
over and syncs its new header: that commit is left to the thread). Its writes commit in the order
made, as the ledger's meaning needs (an event records the last row committed before it): while
any of them wait on the thread's queue, the later ones are queued behind them rather than written
where made (only two event loops' writes made in their same turns may commit in either order).
A barrier (`flush`) waits for what came before it. A write a blocked thread waits for
(`flush_blocking`, `stop`) goes to the writer thread, with every write made before it: made on a
loop, it could not be written there while that loop waits.

One request's writes travel together (`handoff`): while a request is served, the writes its code
makes to files of that thread are held, and handed over in one queue put when the first write
someone waits for is made (the request's ledger row, before `[DONE]`) or when the request ends.
They are taken in the same batch as that row, and a process killed mid-request loses them with it;
those of a deferring file (below) may then be kept back.
Held writes wait in one buffer per thread, in the order they were made, and leave it only
together and ahead of any later write: many writes replace a row with absolute values (weights,
counters, conversations), so a write must never commit after one made later than it.

A write that sets one whole row with absolute values names it (`Write.replaces`); when a later
write of the same batch and file replaces the same row, with only such writes of other rows
between, the earlier one is not run: its row would be overwritten anyway (the conversation row a
request writes at its start and again at its end). A write someone waits for always runs.
Should the later write fail, the earlier ones run in its place, so the file ends as it would have.

A file that allows it (`WriteBehind(defer_s=...)`: `router.db` and `learning.db`, whose rows are
the gateway's learned state, not its record of requests) has its writes kept back for up to
`defer_s` after the first of them was made (so at most `defer_s` after the request that made them
ended), so that the writes of many requests share one transaction instead of costing one each,
and the thread is woken once for them rather than once per request: they are written at once
when one of them is waited for (a flush), once the oldest has waited `defer_s`, once MAX_BATCH of
them are waiting, or when the thread stops. A process killed outright loses at most the last
`defer_s` of such writes; the ledger is never deferred. When one deferring file is due, waited
for or full, the others go with it, and the files never deferred are written, and their waiters
woken, first.

Errors never stop the thread. A write that fails (bad value, constraint, wrong arity) is logged and
skipped: its waiter gets the error, the rest of the batch commits. If SQLite itself rolled the
transaction back on that error (disk full, I/O error), the writes before it are reported failed and
the remainder goes into a new transaction. A failed COMMIT fails every write of that file's batch.
A store that passes no `WriterThread` gets a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from gateway.storage.connection import execute_while_busy

log = logging.getLogger("gateway.storage.writer")

MAX_BATCH = 2000

SOFT_STATE_DEFER_S = 0.1
"""How long the writes of the learned-state files (`router.db`, `learning.db`) may wait to share a
transaction with later ones (module docstring): long enough that a busy gateway commits them a few
times a second rather than once per request, short enough to lose little to a crash."""

CHECKPOINT_EVERY = 200
"""Commits of an inline file between two checkpoints of its WAL, run by its writer thread (module
docstring): about SQLite's own default of 1,000 pages, for ledger rows of a few pages each."""

Waiter = asyncio.Future[int] | threading.Event
"""Woken after commit: a future gets the row id (0 for a barrier) or the error; an event is set."""


@dataclass(slots=True)
class Write:
    """One queued statement; `sql` None is a barrier that only wakes its waiter.

    `many` runs `sql` once per row of `params` (executemany), all rows or none. `what` names
    the write in logs. `file` is set by `WriteBehind.put`. `replaces`, when set, names the one
    row the write sets whole, e.g. `(table, primary key)`: it must set every column of that
    row (INSERT OR REPLACE, or an upsert updating every column) in a table whose only unique key
    is its primary key, so that it touches no other row and leaves that one the same whatever
    was there (module docstring); never with `many`.
    """

    sql: str | None
    params: Sequence[Any] = ()
    what: str = ""
    waiter: Waiter | None = None
    many: bool = False
    file: WriteBehind | None = None
    replaces: Hashable | None = None


Done = tuple[Write, int, BaseException | None]
"""A write's result: its row id (0 when none) and the error that rejected it, if any."""

AfterBatch = Callable[[sqlite3.Connection, list[Write]], None]
"""Run inside the batch's transaction, after its writes, with those that succeeded."""

_STOP = object()
_WAKE = object()  # only wakes the thread: the kept writes' due time changed


class WriterThread:
    """The thread that commits the writes of every `WriteBehind` given it (module docstring)."""

    def __init__(self, name: str = "storage-writer") -> None:
        self._queue: queue.SimpleQueue[Write | list[Write] | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._start_lock = threading.Lock()
        # Writes held by open hand-offs, in the order they were made (module docstring).
        self._held: list[Write] = []
        # Guards `_held` and `_deferred`, and orders writes as they leave them.
        self._held_lock = threading.Lock()
        self._deferred = _Deferred()
        # Inline files' writes made during the current turn of each event loop (`_join_turn`).
        self._turns: dict[asyncio.AbstractEventLoop, list[Write]] = {}

    def start(self) -> None:
        """Start the thread (once; later calls do nothing)."""
        with self._start_lock:
            if not self._thread.is_alive() and self._thread.ident is None:
                self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def pending(self) -> int:
        """Items queued but not yet taken by the thread, a request's hand-off counting once
        (approximate)."""
        return self._queue.qsize()

    def put(self, item: Write) -> None:
        """Send one write on its way (any thread), behind every write held before it."""
        with self._held_lock:
            if self._held:
                self._held.append(item)
                batch, self._held = self._held, []
            else:
                batch = [item]
            self._route(batch)

    def hold(self, write: Write) -> None:
        """Keep `write` until the next `send_held` or `put`."""
        with self._held_lock:
            self._held.append(write)

    def send_held(self) -> None:
        """Send every held write on its way together, in the order they were made."""
        with self._held_lock:
            self._route_held()

    def _route_held(self) -> None:
        """`send_held` under `_held_lock`."""
        if self._held:
            batch, self._held = self._held, []
            self._route(batch)

    def _route(self, writes: list[Write]) -> None:
        """Send `writes` on their way, in order (under `_held_lock`): a deferring file's are
        kept; an inline file's, made on an event loop, join that loop's turn's writes (module
        docstring), unless a blocked thread waits for them; the rest are queued together."""
        queued: list[Write] = []
        wake = False
        now = 0.0
        loop: asyncio.AbstractEventLoop | None = None
        looked_up = False  # the loop is looked up once, and only for an inline file's write
        for write in writes:
            file = write.file
            assert file is not None, "WriteBehind.put names the file"
            if file.defer_s:
                now = now or time.monotonic()
                wake = self._deferred.keep(write, now) or wake
                continue
            # A write whose waiter blocks (an event) is the thread's: its waiter may be the very
            # loop whose turn would write it, and that loop does not turn while it waits.
            if file.inline and not isinstance(write.waiter, threading.Event):
                if not looked_up:
                    loop, looked_up = _running_loop(), True
                if loop is not None:
                    self._join_turn(loop, write)
                    continue
            queued.append(write)
        if queued:
            self._enqueue(queued[0] if len(queued) == 1 else queued)
        elif wake:
            self._queue.put(_WAKE)

    def _join_turn(self, loop: asyncio.AbstractEventLoop, write: Write) -> None:
        """Add `write` to the inline writes of `loop`'s current turn (under `_held_lock`),
        written when the turn's callbacks run (`_write_turn`)."""
        turn = self._turns.get(loop)
        if turn is None:
            self._turns[loop] = [write]
            loop.call_soon(self._write_turn, loop)
        else:
            turn.append(write)

    def _write_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit the inline writes of `loop`'s last turn here, on the loop, and wake their
        waiters; a file whose lock is taken has them queued for this thread instead. Barriers
        are queued after them: they wait for what came before, including what was queued.
        Under `_held_lock` throughout, so that no barrier made meanwhile overtakes them."""
        with self._held_lock:
            writes = self._turns.pop(loop, None)
            if not writes:
                return  # a write queued for the thread since took them along (`_enqueue`)
            for file, file_writes in _by_file(writes).items():
                statements = [w for w in file_writes if w.sql is not None]
                barriers = [w for w in file_writes if w.sql is None]
                done = file.write_here(statements) if statements else []
                if done is None:
                    barriers = statements + barriers
                else:
                    _wake(done)
                if file.checkpoint_to_ask():
                    barriers.append(Write(None, what="checkpoint", file=file))
                if barriers:
                    self._enqueue(barriers)

    def _enqueue(self, item: Write | list[Write] | object) -> None:
        """The one way onto the queue (under `_held_lock`): behind any inline writes not yet
        written, which go first, so that nothing made earlier commits after a barrier. The
        inline files' writes queued are counted (`WriteBehind.write_here`)."""
        if self._turns:
            for writes in self._turns.values():
                _count_handed(writes)
                self._queue.put(writes)
            self._turns.clear()
        if type(item) is list:
            _count_handed(item)
        elif type(item) is Write:
            _count_handed([item])
        self._queue.put(item)

    def stop(self) -> None:
        """Commit everything queued or held before this call, then end the thread (blocks)."""
        if self._thread.is_alive():
            with self._held_lock:
                self._route_held()
                self._enqueue(_STOP)
            self._thread.join()

    def _run(self) -> None:
        get, get_nowait, empty = self._queue.get, self._queue.get_nowait, queue.Empty
        lock, deferred = self._held_lock, self._deferred
        stop = False
        while not stop:
            batch: list[Write] = []
            with lock:
                wait = deferred.wait(time.monotonic())
            try:
                item = get(timeout=wait)
            except empty:
                item = None  # the oldest kept write is due
            while item is not None:
                if type(item) is list:
                    batch += item
                elif item is _STOP:
                    stop = True  # keep draining: nothing queued before stop() is dropped
                elif item is not _WAKE:
                    batch.append(item)  # type: ignore[arg-type]
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = get_nowait()
                except empty:
                    break
            with lock:
                kept = deferred.take(time.monotonic(), everything=stop)
            by_file = _by_file(batch)
            by_file.update(kept)  # no file in both: a deferring file's writes are only kept
            if by_file:
                _write_and_wake(by_file)


def _count_handed(writes: list[Write]) -> None:
    """Count the inline files' statements of `writes` as queued (under `_held_lock`)."""
    for write in writes:
        file = write.file
        if write.sql is not None and file is not None and file.inline:
            file.handed += 1


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _by_file(batch: list[Write]) -> dict[WriteBehind, list[Write]]:
    """`batch` split by file, each file's writes in the order they came."""
    by_file: dict[WriteBehind, list[Write]] = {}
    for write in batch:
        file = write.file
        assert file is not None, "WriteBehind.put names the file"
        writes = by_file.get(file)
        if writes is None:
            by_file[file] = [write]
        else:
            writes.append(write)
    return by_file


def _write_files(by_file: dict[WriteBehind, list[Write]]) -> list[Done]:
    """Each file's writes in that file's own transaction, in the order they came."""
    done: list[Done] = []
    for file, writes in by_file.items():
        done += file.write_batch(writes)
    return done


def _write_and_wake(by_file: dict[WriteBehind, list[Write]]) -> None:
    """Write each file's writes and wake their waiters: the files never deferred (the ledger,
    whose rows a request waits for before `[DONE]`) first, woken before the learned state that
    fell due with them is written."""
    first = {file: writes for file, writes in by_file.items() if not file.defer_s}
    later = {file: writes for file, writes in by_file.items() if file.defer_s}
    for part in (first, later):
        if part:
            _wake(_write_files(part))


class _Deferred:
    """The writes kept back, of the files that allow it (module docstring), shared by the threads
    that put writes and the writer thread, under the `WriterThread`'s lock. The deferring files
    are kept and written together."""

    __slots__ = ("writes", "due_at", "at_once")

    def __init__(self) -> None:
        self.writes: dict[WriteBehind, list[Write]] = {}
        self.due_at: float | None = None  # when the oldest write kept must be written
        self.at_once = False  # one is waited for, or too many wait: write them now

    def keep(self, write: Write, now: float) -> bool:
        """Keep `write` (of a deferring file); True when the writer thread must be woken: its
        wait ends sooner than it knew (the first write kept), or the writes are due at once."""
        file = write.file
        assert file is not None
        writes = self.writes.get(file)
        if writes is None:
            writes = self.writes[file] = []
        writes.append(write)
        wake = False
        due_at = now + file.defer_s
        if self.due_at is None or due_at < self.due_at:
            self.due_at, wake = due_at, True
        if not self.at_once and (write.waiter is not None or len(writes) >= MAX_BATCH):
            # One file waited for or full takes the others along: the learned files stay within
            # a batch of each other (a label in learning.db, the weights it moved in router.db),
            # and a flush of one commits what the other holds of the same event.
            self.at_once = wake = True
        return wake

    def wait(self, now: float) -> float | None:
        """How long the writer thread may wait for more writes: until the oldest kept one is
        due (None: nothing is kept)."""
        if self.at_once:
            return 0.0
        return None if self.due_at is None else max(0.0, self.due_at - now)

    def take(self, now: float, *, everything: bool) -> dict[WriteBehind, list[Write]]:
        """Every kept write, by file in the order made, when they are due (or `everything`);
        else nothing."""
        due = self.at_once or (self.due_at is not None and now >= self.due_at)
        if not self.writes or not (due or everything):
            return {}
        writes = self.writes
        self.writes, self.due_at, self.at_once = {}, None, False
        return writes


def _superseded(batch: list[Write]) -> dict[int, list[Write]]:
    """The writes of `batch` that a later one replaces (module docstring), by the id of the
    write that replaces them, in the order they came; empty when none is."""
    later: dict[Hashable, Write] = {}
    replaced: dict[int, list[Write]] = {}
    for write in reversed(batch):
        key = write.replaces
        if key is None:
            if write.sql is not None:
                later.clear()  # it may touch any row: nothing before it is superseded across it
            continue
        after = later.get(key)
        if after is None or write.waiter is not None:
            later[key] = write
        else:
            replaced.setdefault(id(after), []).insert(0, write)
    return replaced


class Handoff:
    """One request's writes, held and then handed to the writer thread in one put (together
    with any other request's writes held before them, so that none overtakes another)."""

    __slots__ = ("thread", "held", "sent")

    def __init__(self, thread: WriterThread) -> None:
        self.thread = thread
        self.held = 0
        self.sent = False

    def hold(self, write: Write) -> None:
        self.held += 1
        self.thread.hold(write)

    def send(self) -> None:
        """Hand everything held to the thread; later writes go straight to it. Idempotent."""
        if not self.sent:
            self.sent = True
            if self.held:
                self.thread.send_held()


_held: ContextVar[Handoff | None] = ContextVar("storage_handoff", default=None)


@contextlib.contextmanager
def handoff(thread: WriterThread) -> Iterator[Handoff]:
    """Hold the writes made in this context (and tasks started from it) to files of `thread`,
    and hand them over together: at the first write that has a waiter, else on leaving."""
    held = Handoff(thread)
    token = _held.set(held)
    try:
        yield held
    finally:
        _held.reset(token)
        held.send()


class WriteBehind:
    """The write side of one connection (see the module docstring).

    `name` prefixes log lines and errors ("ledger data/ledger.db"); `error` is the exception type
    a failed write's waiter receives; `lock`, when given, is held while a batch is written (for a
    connection that readers share). `thread` is the writer thread it shares (None: one of its
    own, named `thread_name`). `defer_s`: how long its writes may be kept back to share a later
    transaction (module docstring; 0, the default: never). `inline`: its writes are committed
    where they are made (module docstring; it sets the connection's busy timeout to 0 and turns
    its automatic checkpoints off). `close()` closes the connection; `stop()` leaves it open.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        name: str,
        thread_name: str,
        error: type[Exception] = RuntimeError,
        lock: threading.Lock | None = None,
        after_batch: AfterBatch | None = None,
        thread: WriterThread | None = None,
        defer_s: float = 0.0,
        inline: bool = False,
    ) -> None:
        if inline and defer_s:
            raise ValueError(f"{name}: a file written inline cannot defer its writes")
        self.name = name
        self.defer_s = defer_s
        self.inline = inline
        self._conn = conn
        self._error = error
        self._lock = lock if lock is not None else threading.Lock()
        self._after_batch = after_batch
        self._owns_thread = thread is None
        self._thread = WriterThread(thread_name) if thread is None else thread
        self.commits = 0
        self.errors = 0
        # An inline file's statements queued for its thread (counted under the thread's
        # `_held_lock`), and those of them the thread has written (counted by the thread alone):
        # while they differ, its writes made meanwhile queue up behind them (`write_here`).
        self.handed = 0
        self.handed_done = 0
        # Committed writes per statement; changed under `_lock`.
        self.committed: Counter[str] = Counter()
        self._busy_timeout_s = 0.0
        self._checkpoint_at = CHECKPOINT_EVERY  # `commits` at which the next checkpoint is due
        self._checkpoint_asked = False
        # The WAL was checkpointed whole: the next commit starts it over, syncing it (`write_here`).
        self._wal_restarts = False
        if inline:
            # Whoever waits for the lock, it is the writer thread, never the thread that put.
            (busy_ms,) = conn.execute("PRAGMA busy_timeout").fetchone()
            self._busy_timeout_s = busy_ms / 1000
            conn.execute("PRAGMA busy_timeout=0")
            conn.execute("PRAGMA wal_autocheckpoint=0")

    def start(self) -> None:
        self._thread.start()

    @property
    def pending(self) -> int:
        """Items queued on its thread, for every file it serves (`WriterThread.pending`)."""
        return self._thread.pending

    def put(self, write: Write) -> None:
        """Queue one write (any thread); it commits with the next batch. Within a request's
        `handoff` it is held until the hand-off is sent (at once, if it has a waiter)."""
        write.file = self
        held = _held.get()
        if held is None or held.sent or held.thread is not self._thread:
            self._thread.put(write)
            return
        held.hold(write)
        if write.waiter is not None:
            held.send()

    def stop(self) -> None:
        """Commit everything queued before this call (blocks); a thread of its own ends."""
        if self._owns_thread:
            self._thread.stop()
        else:
            self.flush_blocking()

    def close(self) -> None:
        """`stop()`, then close the connection (for a store that only writes through it)."""
        self.stop()
        self._conn.close()

    async def flush(self) -> None:
        """Wait until every write to this file queued before this call is committed (or
        rejected), those kept back included; for a deferring file, the other deferring files'
        too (module docstring). The other files' writes may still be pending."""
        if not self._thread.alive:  # not running: nothing would take the barrier (as below)
            return
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.put(Write(None, waiter=fut, what="flush"))
        await fut

    def flush_blocking(self, timeout: float | None = None) -> bool:
        """`flush` for synchronous callers; False when the thread did not get there in time."""
        if not self._thread.alive:
            return True
        done = threading.Event()
        self.put(Write(None, waiter=done, what="flush"))
        return done.wait(timeout)

    def write_batch(self, batch: list[Write]) -> list[Done]:
        """Write `batch` (this file's writes) in one transaction; run by the writer thread (an
        inline file's also checkpoints its WAL here when due)."""
        with self._lock:
            if not self.inline:
                return self._write_locked(batch, "BEGIN")
            # It takes the lock at once: nothing of the transaction waits after that.
            commits = self.commits
            done = self._write_locked(batch, "BEGIN IMMEDIATE")
            self.handed_done += sum(1 for write in batch if write.sql is not None)
            if self.commits != commits:
                self._wal_restarts = False  # here, unless a reader's snapshot kept the WAL
            if self.commits >= self._checkpoint_at or self._checkpoint_asked:
                self._checkpoint()
            return done

    def write_here(self, batch: list[Write]) -> list[Done] | None:
        """Write an inline file's `batch` in one transaction on this thread, if that needs no
        wait and no write made before it waits on the queue (under the thread's `_held_lock`):
        None, with nothing written, when the lock is taken, when writes made before are queued,
        or when the commit would sync the WAL (module docstring)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            waiting = self.handed > self.handed_done
            if (waiting or self._wal_restarts) and self._thread.alive:
                return None
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error:
                return None  # busy, or failing: the writer thread waits, or reports it
            return self._write_locked(batch, None)
        finally:
            self._lock.release()

    def checkpoint_to_ask(self) -> bool:
        """True once when an inline file's writer thread is to checkpoint its WAL: the caller
        then queues a barrier of this file, after which the thread runs it (`write_batch`)."""
        if self.inline and not self._checkpoint_asked and self.commits >= self._checkpoint_at:
            self._checkpoint_asked = True
            return True
        return False

    def _checkpoint(self) -> None:
        """Copy the WAL's committed pages into the file (under `_lock`, on the writer thread);
        PASSIVE: it waits for no reader or writer."""
        self._checkpoint_at = self.commits + CHECKPOINT_EVERY
        self._checkpoint_asked = False
        try:
            _, frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:
            log.exception("%s: checkpoint failed", self.name)
        else:
            self._wal_restarts = frames > 0 and copied == frames

    def _write_locked(self, batch: list[Write], begin: str | None) -> list[Done]:
        """Write `batch` in one transaction (under `_lock`), begun with `begin` (retried while
        busy for an inline file, whose busy timeout is 0), or begun already (None)."""
        conn = self._conn
        restart = "BEGIN IMMEDIATE" if self.inline else "BEGIN"
        failed: list[Done] = []
        executed: list[Done] = []  # in the open transaction
        replaced = _superseded(batch) if len(batch) > 1 else {}
        skipped = {id(w) for writes in replaced.values() for w in writes}
        todo = batch
        try:
            if begin is not None:
                execute_while_busy(conn, begin, self._busy_timeout_s)
            i = 0
            while i < len(todo):
                write = todo[i]
                i += 1
                if skipped and id(write) in skipped:
                    continue
                earlier = replaced.pop(id(write), None) if replaced else None
                try:
                    executed.append((write, self._execute(conn, write), None))
                except Exception as exc:
                    log.exception("%s: cannot write %s", self.name, write.what)
                    error = self._error(f"{self.name}: cannot write {write.what}: {exc}")
                    failed.append((write, 0, error))
                    if not conn.in_transaction:  # SQLite rolled the whole transaction back
                        undone = executed + [(w, 0, None) for w in earlier or ()]
                        failed += self._reject(undone, f"rolled back by {exc}")
                        executed = []
                        # Again as the batch began: an inline file's waits only on the thread.
                        execute_while_busy(conn, restart, self._busy_timeout_s if begin else 0)
                    elif earlier:  # the writes it replaced run in its place, next
                        skipped.difference_update(id(w) for w in earlier)
                        todo = todo[:i] + earlier + todo[i:]
                    continue
                if earlier:  # what it replaced is written with it
                    executed += [(w, 0, None) for w in earlier]
            if self._after_batch is not None:
                self._run_after_batch(conn, [w for w, _, _ in executed])
            self._commit(conn)
        except Exception as exc:  # BEGIN, the after-batch step or COMMIT
            log.exception("%s: a batch of %d writes failed", self.name, len(batch))
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            # Every write not already failed goes with it, those not yet run included, so
            # that no waiter is left waiting.
            settled = {id(write) for write, _, _ in failed}
            pending: list[Done] = [(w, 0, None) for w in batch if id(w) not in settled]
            failed += self._reject(pending, f"commit failed: {exc}")
            executed = []
        committed = self.committed
        wrote = False
        for write, _, _ in executed:
            if write.sql is not None:
                committed[write.sql] += 1
                wrote = True
        self.commits += wrote
        if failed:
            self.errors += sum(1 for w, _, _ in failed if w.sql is not None)
        return executed + failed

    def _execute(self, conn: sqlite3.Connection, write: Write) -> int:
        if write.sql is None:
            return 0
        if write.many:  # all rows or none, like a single statement
            conn.execute("SAVEPOINT write_many")
            try:
                conn.executemany(write.sql, write.params)
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # gone if SQLite rolled back it all
                    conn.execute("ROLLBACK TO write_many")
                    conn.execute("RELEASE write_many")
                raise
            conn.execute("RELEASE write_many")
            return 0
        return conn.execute(write.sql, write.params).lastrowid or 0

    def _commit(self, conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")

    def _run_after_batch(self, conn: sqlite3.Connection, writes: list[Write]) -> None:
        assert self._after_batch is not None
        try:
            self._after_batch(conn, writes)
        except Exception:
            if not conn.in_transaction:
                raise  # the writes went with it: fail them as a failed commit does
            log.exception("%s: after-batch step failed; the writes are kept", self.name)

    def _reject(self, done: list[Done], why: str) -> list[Done]:
        error = self._error(f"{self.name}: {why}")
        return [(write, 0, None if write.sql is None else error) for write, _, _ in done]


def _settle_all(futures: list[tuple[asyncio.Future[int], Done]]) -> None:
    for fut, (_, row_id, error) in futures:
        if fut.done():
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(row_id)


def _wake(done: list[Done]) -> None:
    """Wake the waiters of `done`: those of this thread's running loop at once, those of each
    other loop with one call into it."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], Done]]] = {}
    for item in done:
        waiter = item[0].waiter
        if isinstance(waiter, threading.Event):
            waiter.set()
        elif waiter is not None:
            by_loop.setdefault(waiter.get_loop(), []).append((waiter, item))
    if not by_loop:
        return
    try:
        here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        here = None  # the writer thread, or another without a loop
    for loop, futures in by_loop.items():
        if loop is here:
            _settle_all(futures)
            continue
        with contextlib.suppress(RuntimeError):  # the caller's loop is gone
            loop.call_soon_threadsafe(_settle_all, futures)
