"""Durable embedded ledger: one SQLite row per client request, plus standalone events.

Durability contract: the database runs in WAL mode with `synchronous=NORMAL`. A row whose
`append()` has resolved is committed to the WAL file, so killing the process (even `kill -9`)
loses none of it. Power loss or an OS crash may lose the last few commits (WAL is not fsynced
on every commit with NORMAL); that is out of scope by design, in exchange for cheap commits.

Threading: one dedicated writer thread owns the write connection. Callers only put items on a
queue, so the event loop never blocks on SQLite. The thread drains whatever is queued and
commits it in one transaction; `append()` resolves with the row id only after that commit.
Reads (`rows`, `events`, `cerebras_spend_since`, ...) are synchronous and use their own
connection: call them at start-up or from a thread (`asyncio.to_thread`).

Bad values in a record never crash the writer: `flatten()` coerces each field and logs what it
had to replace, and any per-row SQLite error only rejects that row's future.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import orjson

from gateway.accounting.records import RequestRecord, UpstreamCall

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MEMORY = ":memory:"
_MAX_BATCH = 2000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    recorded_at REAL NOT NULL,
    request_id TEXT NOT NULL,
    started_at REAL NOT NULL,
    strategy TEXT NOT NULL,
    stream INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    model_used TEXT,
    error_type TEXT,
    ttft_s REAL,
    duration_s REAL NOT NULL,
    routing_reason TEXT,
    fallback INTEGER NOT NULL,
    local_prompt_tokens INTEGER NOT NULL,
    local_completion_tokens INTEGER NOT NULL,
    cerebras_prompt_tokens INTEGER NOT NULL,
    cerebras_completion_tokens INTEGER NOT NULL,
    verify_calls INTEGER NOT NULL,
    errors_local INTEGER NOT NULL,
    errors_cerebras INTEGER NOT NULL,
    rate_limit_hits INTEGER NOT NULL,
    estimated INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    cerebras_cost_usd REAL NOT NULL,
    counterfactual_usd REAL NOT NULL,
    counterfactual_prompt_tokens INTEGER NOT NULL,
    counterfactual_completion_tokens INTEGER NOT NULL,
    draft_tokens INTEGER,
    verified_tokens INTEGER,
    accepted INTEGER,
    spilled_over INTEGER,
    similarity REAL,
    decided_by TEXT,
    calls TEXT NOT NULL,
    local_reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    cerebras_reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    told_not_to_think INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_started_at ON requests (started_at);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    model TEXT,
    data TEXT,
    last_request_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_kind ON events (kind, id);
"""
# Columns added to `requests` after schema version 1 shipped: a ledger without them gets them
# (with their default) when it is opened, so older ledgers keep opening at the same version.
_ADDED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("local_reasoning_tokens", "INTEGER NOT NULL DEFAULT 0"),
    ("cerebras_reasoning_tokens", "INTEGER NOT NULL DEFAULT 0"),
    ("told_not_to_think", "INTEGER NOT NULL DEFAULT 0"),
)


class LedgerError(RuntimeError):
    """The ledger cannot open, is not running, or failed to commit; the message names the file."""


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One `requests` row: the flattened sums of a RequestRecord plus its prices.

    `id` is 0 until the row is committed. `calls` is the JSON list of the record's calls.
    Speculative fields are None when the request had no speculative verdict.
    """

    id: int
    recorded_at: float
    request_id: str
    started_at: float
    strategy: str
    stream: bool
    outcome: str
    http_status: int
    model_used: str | None
    error_type: str | None
    ttft_s: float | None
    duration_s: float
    routing_reason: str | None
    fallback: bool
    local_prompt_tokens: int
    local_completion_tokens: int
    cerebras_prompt_tokens: int
    cerebras_completion_tokens: int
    verify_calls: int
    errors_local: int
    errors_cerebras: int
    rate_limit_hits: int
    estimated: bool
    cost_usd: float
    cerebras_cost_usd: float
    counterfactual_usd: float
    counterfactual_prompt_tokens: int
    counterfactual_completion_tokens: int
    draft_tokens: int | None
    verified_tokens: int | None
    accepted: bool | None
    spilled_over: bool | None
    similarity: float | None
    decided_by: str | None
    calls: str
    local_reasoning_tokens: int = 0
    cerebras_reasoning_tokens: int = 0
    told_not_to_think: bool = False

    def upstream_calls(self) -> list[UpstreamCall]:
        """The stored calls, rebuilt (unknown keys ignored)."""
        names = {f.name for f in fields(UpstreamCall)}
        return [
            UpstreamCall(**{k: v for k, v in item.items() if k in names})
            for item in orjson.loads(self.calls)
        ]


_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LedgerRow))
_BOOL_COLUMNS = (
    "stream",
    "fallback",
    "estimated",
    "accepted",
    "spilled_over",
    "told_not_to_think",
)
_INSERT_REQUEST = "INSERT INTO requests ({}) VALUES ({})".format(
    ", ".join(_COLUMNS[1:]), ", ".join("?" * (len(_COLUMNS) - 1))
)
_INSERT_EVENT = (
    "INSERT INTO events (at, kind, model, data, last_request_id)"
    " VALUES (?, ?, ?, ?, (SELECT COALESCE(MAX(id), 0) FROM requests))"
)


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """One `events` row. `last_request_id` is the highest request row id committed before it."""

    id: int
    at: float
    kind: str
    model: str | None
    data: dict[str, Any] | None
    last_request_id: int


# --- flattening: coerce, never raise -------------------------------------------------------


def _as_int(value: Any, what: str) -> int:
    try:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(value)
        return max(0, int(value))
    except (TypeError, ValueError, OverflowError):
        log.warning("ledger: bad %s %r stored as 0", what, value)
        return 0


def _as_float(value: Any, what: str, default: float | None) -> float | None:
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if math.isfinite(number):
        return number
    log.warning("ledger: bad %s %r stored as %r", what, value, default)
    return default


def _as_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _calls_json(calls: list[UpstreamCall]) -> str:
    items: list[Any] = []
    for call in calls:
        try:
            items.append(asdict(call))
        except TypeError:
            items.append(repr(call))
    return orjson.dumps(items, default=str).decode()


def flatten(
    record: RequestRecord,
    *,
    cost_usd: float,
    counterfactual_usd: float,
    cerebras_cost_usd: float | None = None,
) -> LedgerRow:
    """Turn a record into a row (id 0). Bad values are logged and replaced, never raised.

    `cerebras_cost_usd` is the part of `cost_usd` billed by Cerebras (defaults to all of it).
    """
    tokens = {"local": [0, 0, 0], "cerebras": [0, 0, 0]}
    errors = {"local": 0, "cerebras": 0}
    verify_calls = rate_limit_hits = 0
    estimated = told_not_to_think = False
    calls = list(record.calls or [])
    for call in calls:
        upstream = getattr(call, "upstream", None)
        status = getattr(call, "status", None)
        told_not_to_think = told_not_to_think or bool(getattr(call, "thinking_off", False))
        if upstream in tokens:
            tokens[upstream][0] += _as_int(getattr(call, "prompt_tokens", 0), "prompt_tokens")
            tokens[upstream][1] += _as_int(
                getattr(call, "completion_tokens", 0), "completion_tokens"
            )
            tokens[upstream][2] += _as_int(getattr(call, "reasoning_tokens", 0), "reasoning_tokens")
            errors[upstream] += status in ("error", "rate_limited")
        else:
            log.warning("ledger: call to unknown upstream %r not summed", upstream)
        verify_calls += getattr(call, "role", None) == "verify"
        rate_limit_hits += status == "rate_limited"
        estimated = estimated or bool(getattr(call, "estimated", False))
    spec = record.speculative
    cost = _as_float(cost_usd, "cost_usd", 0.0) or 0.0
    return LedgerRow(
        id=0,
        recorded_at=time.time(),
        request_id=str(record.request_id),
        started_at=_as_float(record.started_at, "started_at", 0.0) or 0.0,
        strategy=str(record.strategy),
        stream=bool(record.stream),
        outcome=str(record.outcome),
        http_status=_as_int(record.http_status, "http_status"),
        model_used=_as_str(record.model_used),
        error_type=_as_str(record.error_type),
        ttft_s=_as_float(record.ttft_s, "ttft_s", None),
        duration_s=_as_float(record.duration_s, "duration_s", 0.0) or 0.0,
        routing_reason=_as_str(record.routing_reason),
        fallback=bool(record.fallback),
        local_prompt_tokens=tokens["local"][0],
        local_completion_tokens=tokens["local"][1],
        cerebras_prompt_tokens=tokens["cerebras"][0],
        cerebras_completion_tokens=tokens["cerebras"][1],
        verify_calls=verify_calls,
        errors_local=errors["local"],
        errors_cerebras=errors["cerebras"],
        rate_limit_hits=rate_limit_hits,
        estimated=estimated,
        cost_usd=cost,
        cerebras_cost_usd=(
            cost
            if cerebras_cost_usd is None
            else _as_float(cerebras_cost_usd, "cerebras_cost_usd", 0.0) or 0.0
        ),
        counterfactual_usd=_as_float(counterfactual_usd, "counterfactual_usd", 0.0) or 0.0,
        counterfactual_prompt_tokens=_as_int(
            record.counterfactual_prompt_tokens, "counterfactual_prompt_tokens"
        ),
        counterfactual_completion_tokens=_as_int(
            record.counterfactual_completion_tokens, "counterfactual_completion_tokens"
        ),
        draft_tokens=None if spec is None else _as_int(spec.draft_tokens, "draft_tokens"),
        verified_tokens=None if spec is None else _as_int(spec.verified_tokens, "verified_tokens"),
        accepted=None if spec is None else bool(spec.accepted),
        spilled_over=None if spec is None else bool(spec.spilled_over),
        similarity=None if spec is None else _as_float(spec.similarity, "similarity", 0.0),
        decided_by=None if spec is None else str(spec.decided_by),
        calls=_calls_json(calls),
        local_reasoning_tokens=tokens["local"][2],
        cerebras_reasoning_tokens=tokens["cerebras"][2],
        told_not_to_think=told_not_to_think,
    )


def _row_from_db(values: tuple[Any, ...]) -> LedgerRow:
    kwargs = dict(zip(_COLUMNS, values, strict=True))
    for name in _BOOL_COLUMNS:
        if kwargs[name] is not None:
            kwargs[name] = bool(kwargs[name])
    return LedgerRow(**kwargs)


def _event_from_db(values: tuple[Any, ...]) -> LedgerEvent:
    event_id, at, kind, model, data, last_request_id = values
    return LedgerEvent(
        event_id, at, kind, model, orjson.loads(data) if data else None, last_request_id
    )


# --- writer ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Item:
    """One queued write. `sql` None is a flush barrier; `future` None is fire-and-forget."""

    sql: str | None
    params: tuple[Any, ...]
    future: asyncio.Future[int] | None
    loop: asyncio.AbstractEventLoop | None
    what: str


_STOP = object()


def _settle(fut: asyncio.Future[int], result: int | None, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result or 0)


class Ledger:
    """Append-only SQLite ledger of requests and events (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._queue: queue.SimpleQueue[_Item | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()
        self._read_lock = self._write_lock
        self._counts_lock = threading.Lock()
        self._accepting = False
        self.row_count = 0
        self.commits = 0
        self.write_errors = 0

    # lifecycle

    def open(self) -> None:
        """Open (creating if needed) and check the database; enough for read-only use."""
        if self._write_conn is not None:
            return
        if self.path == MEMORY:
            # One shared connection: a second ":memory:" connection would be another database.
            self._write_conn = self._read_conn = self._connect(MEMORY)
        else:
            self._write_conn = self._connect(self.path)
            try:
                self._read_conn = self._connect(self.path)
            except LedgerError:
                self._write_conn.close()
                self._write_conn = None
                raise
            self._read_lock = threading.Lock()
        self.row_count = self._query_one("SELECT COUNT(*) FROM requests")

    async def start(self) -> None:
        """Open the database (in a thread) and start the writer thread."""
        if self._thread is not None:
            return
        await asyncio.to_thread(self.open)
        self._accepting = True
        self._thread = threading.Thread(target=self._writer, name="ledger-writer", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Commit everything queued, stop the writer thread and close the connections."""
        self._accepting = False
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(thread.join)
        for conn in {id(c): c for c in (self._write_conn, self._read_conn) if c}.values():
            conn.close()
        self._write_conn = self._read_conn = None

    @property
    def running(self) -> bool:
        return self._accepting

    @property
    def pending(self) -> int:
        """Writes queued but not yet committed (approximate)."""
        return self._queue.qsize()

    def _connect(self, target: str) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                target, isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger {self.path}: cannot open: {exc}") from exc
        try:
            self._prepare(conn)
        except (sqlite3.Error, LedgerError) as exc:
            conn.close()
            if isinstance(exc, LedgerError):
                raise
            raise LedgerError(
                f"ledger {self.path}: unreadable or not a ledger database: {exc}"
            ) from exc
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if self.path != MEMORY and str(mode).lower() != "wal":
            raise LedgerError(f"ledger {self.path}: cannot enable WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            present = {r[1] for r in conn.execute("PRAGMA table_info(requests)")}
            for column, declaration in _ADDED_COLUMNS:
                if column not in present:
                    conn.execute(f"ALTER TABLE requests ADD COLUMN {column} {declaration}")
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif row[0] != str(SCHEMA_VERSION):
                raise LedgerError(
                    f"ledger {self.path}: schema version {row[0]} is not {SCHEMA_VERSION}"
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # writes (any thread; submit* need a running loop)

    def _put(self, item: _Item) -> None:
        if not self._accepting:
            raise LedgerError(f"ledger {self.path}: not running (call start(); not after close())")
        self._queue.put(item)

    def submit(self, row: LedgerRow) -> asyncio.Future[int]:
        """Queue a row now; the returned future resolves with its id once committed."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._put(_Item(_INSERT_REQUEST, _params(row), fut, loop, row.request_id))
        return fut

    async def append(
        self,
        record: RequestRecord,
        *,
        cost_usd: float,
        counterfactual_usd: float,
        cerebras_cost_usd: float | None = None,
    ) -> int:
        """Store one record; returns its row id only after the row is committed."""
        row = flatten(
            record,
            cost_usd=cost_usd,
            counterfactual_usd=counterfactual_usd,
            cerebras_cost_usd=cerebras_cost_usd,
        )
        return await self.submit(row)

    def append_row_nowait(self, row: LedgerRow) -> None:
        """Queue a row without waiting (any thread); committed with the next batch."""
        self._put(_Item(_INSERT_REQUEST, _params(row), None, None, row.request_id))

    def append_nowait(
        self,
        record: RequestRecord,
        *,
        cost_usd: float,
        counterfactual_usd: float,
        cerebras_cost_usd: float | None = None,
    ) -> None:
        """Fire-and-forget `append` for synchronous callers."""
        self.append_row_nowait(
            flatten(
                record,
                cost_usd=cost_usd,
                counterfactual_usd=counterfactual_usd,
                cerebras_cost_usd=cerebras_cost_usd,
            )
        )

    def append_event(
        self, kind: str, model: str | None = None, *, data: Mapping[str, Any] | None = None
    ) -> None:
        """Queue a standalone event (error, rate_limit, reset, ...); fire-and-forget."""
        blob = None if data is None else orjson.dumps(data, default=str).decode()
        params = (time.time(), str(kind), _as_str(model), blob)
        self._put(_Item(_INSERT_EVENT, params, None, None, f"event {kind}"))

    async def flush(self) -> None:
        """Wait until everything queued before this call is committed."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._put(_Item(None, (), fut, loop, "flush"))
        await fut

    # writer thread

    def _writer(self) -> None:
        stop = False
        while not stop:
            batch: list[_Item] = []
            first = self._queue.get()
            stop = first is _STOP
            if isinstance(first, _Item):
                batch.append(first)
            while len(batch) < _MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Item):
                    batch.append(item)
                else:
                    stop = True  # keep draining: nothing queued before close() is dropped
            if batch:
                self._write_batch(batch)

    def _write_batch(self, batch: list[_Item]) -> None:
        conn = self._write_conn
        assert conn is not None
        done: list[tuple[_Item, int | None, BaseException | None]] = []
        committed = False
        with self._write_lock:
            try:
                conn.execute("BEGIN")
                done = [(item, *self._insert(conn, item)) for item in batch]
                self._commit(conn)
                committed = True
            except Exception as exc:
                log.exception("ledger %s: commit of %d writes failed", self.path, len(batch))
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                error = LedgerError(f"ledger {self.path}: commit failed: {exc}")
                done = [(item, None, error) for item in batch]
        with self._counts_lock:
            self.commits += committed
            self.row_count += sum(
                1 for item, _, err in done if item.sql is _INSERT_REQUEST and err is None
            )
            self.write_errors += sum(1 for _, _, err in done if err is not None)
        for item, row_id, err in done:
            if item.future is not None and item.loop is not None:
                with contextlib.suppress(RuntimeError):  # the caller's loop is gone
                    item.loop.call_soon_threadsafe(_settle, item.future, row_id, err)

    def _insert(
        self, conn: sqlite3.Connection, item: _Item
    ) -> tuple[int | None, BaseException | None]:
        if item.sql is None:
            return 0, None
        try:
            return conn.execute(item.sql, item.params).lastrowid, None
        except Exception as exc:
            log.exception("ledger %s: cannot write %s", self.path, item.what)
            return None, LedgerError(f"ledger {self.path}: cannot write {item.what}: {exc}")

    def _commit(self, conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")

    # reads (synchronous)

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._read_lock:
            conn = self._read_conn
            if conn is None:
                raise LedgerError(f"ledger {self.path}: not open")
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise LedgerError(f"ledger {self.path}: read failed: {exc}") from exc

    def _query_one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self._read(sql, params)[0][0]

    def rows(self, since_id: int = 0, limit: int | None = None) -> list[LedgerRow]:
        """Committed request rows with id > since_id, oldest first."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM requests WHERE id > ? ORDER BY id"
        if limit is not None:
            return [_row_from_db(v) for v in self._read(sql + " LIMIT ?", (since_id, limit))]
        return [_row_from_db(v) for v in self._read(sql, (since_id,))]

    def iter_rows(self, since_id: int = 0, page: int = 5000) -> Iterator[LedgerRow]:
        """All rows with id > since_id, read page by page (bounded memory)."""
        while batch := self.rows(since_id, limit=page):
            yield from batch
            since_id = batch[-1].id

    def events(self, since_id: int = 0, kinds: tuple[str, ...] | None = None) -> list[LedgerEvent]:
        """Committed events with id > since_id (optionally only these kinds), oldest first."""
        sql = "SELECT id, at, kind, model, data, last_request_id FROM events WHERE id > ?"
        params: tuple[Any, ...] = (since_id,)
        if kinds:
            sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
            params += tuple(kinds)
        return [_event_from_db(v) for v in self._read(sql + " ORDER BY id", params)]

    def latest_event(self, kinds: tuple[str, ...]) -> LedgerEvent | None:
        """The most recent committed event of one of these kinds."""
        sql = (
            "SELECT id, at, kind, model, data, last_request_id FROM events"
            f" WHERE kind IN ({', '.join('?' * len(kinds))}) ORDER BY id DESC LIMIT 1"
        )
        found = self._read(sql, tuple(kinds))
        return _event_from_db(found[0]) if found else None

    def cerebras_spend_since(self, unix_ts: float) -> float:
        """Dollars billed by Cerebras for requests started at or after `unix_ts`."""
        return float(
            self._query_one(
                "SELECT COALESCE(SUM(cerebras_cost_usd), 0.0) FROM requests WHERE started_at >= ?",
                (unix_ts,),
            )
        )

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one read-only statement on the read connection (raises LedgerError)."""
        return self._read(sql, params)

    def select_rows(
        self, where: str = "1", params: tuple[Any, ...] = (), *, limit: int | None = None
    ) -> list[LedgerRow]:
        """Request rows matching the SQL condition `where` (values bound from `params`),
        newest first; `where` must be the caller's own constant text, never client input."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM requests WHERE {where} ORDER BY id DESC"
        if limit is not None:
            sql, params = sql + " LIMIT ?", (*params, limit)
        return [_row_from_db(v) for v in self._read(sql, params)]


def _params(row: LedgerRow) -> tuple[Any, ...]:
    return tuple(getattr(row, name) for name in _COLUMNS[1:])


def new_request_id(prefix: str) -> str:
    """A unique id for records synthesised outside the proxy path."""
    return f"{prefix}-{uuid.uuid4().hex}"
