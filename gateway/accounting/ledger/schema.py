"""The ledger's SQLite schema: tables, the row types read back, and opening older ledgers.

Schema version 1. Columns added to `requests` since version 1 shipped are added (with their
default) when an older ledger is opened, so it keeps opening at the same version; a ledger of any
other version is refused rather than guessed at.
"""

from __future__ import annotations

import operator
import sqlite3
from dataclasses import dataclass, fields
from typing import Any

import orjson

from gateway.accounting.records import UpstreamCall

SCHEMA_VERSION = 1

SCHEMA = """
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
    told_not_to_think INTEGER NOT NULL DEFAULT 0,
    door TEXT NOT NULL DEFAULT 'chat'
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
ADDED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("local_reasoning_tokens", "INTEGER NOT NULL DEFAULT 0"),
    ("cerebras_reasoning_tokens", "INTEGER NOT NULL DEFAULT 0"),
    ("told_not_to_think", "INTEGER NOT NULL DEFAULT 0"),
    ("door", "TEXT NOT NULL DEFAULT 'chat'"),
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
    door: str = "chat"

    def upstream_calls(self) -> list[UpstreamCall]:
        """The stored calls, rebuilt (unknown keys ignored)."""
        names = {f.name for f in fields(UpstreamCall)}
        return [
            UpstreamCall(**{k: v for k, v in item.items() if k in names})
            for item in orjson.loads(self.calls)
        ]


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """One `events` row. `last_request_id` is the highest request row id committed before it."""

    id: int
    at: float
    kind: str
    model: str | None
    data: dict[str, Any] | None
    last_request_id: int


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LedgerRow))
_BOOL_COLUMNS = ("stream", "fallback", "estimated", "accepted", "spilled_over", "told_not_to_think")
INSERT_REQUEST = "INSERT INTO requests ({}) VALUES ({})".format(
    ", ".join(COLUMNS[1:]), ", ".join("?" * (len(COLUMNS) - 1))
)
INSERT_EVENT = (
    "INSERT INTO events (at, kind, model, data, last_request_id)"
    " VALUES (?, ?, ?, ?, (SELECT COALESCE(MAX(id), 0) FROM requests))"
)
SELECT_REQUESTS = f"SELECT {', '.join(COLUMNS)} FROM requests"
SELECT_EVENTS = "SELECT id, at, kind, model, data, last_request_id FROM events"


_INSERTED_VALUES = operator.attrgetter(*COLUMNS[1:])


def row_params(row: LedgerRow) -> tuple[Any, ...]:
    """The values INSERT_REQUEST binds, in column order (all but `id`)."""
    values: tuple[Any, ...] = _INSERTED_VALUES(row)
    return values


def row_from_db(values: tuple[Any, ...]) -> LedgerRow:
    kwargs = dict(zip(COLUMNS, values, strict=True))
    for name in _BOOL_COLUMNS:
        if kwargs[name] is not None:
            kwargs[name] = bool(kwargs[name])
    return LedgerRow(**kwargs)


def event_from_db(values: tuple[Any, ...]) -> LedgerEvent:
    event_id, at, kind, model, data, last_request_id = values
    return LedgerEvent(
        event_id, at, kind, model, orjson.loads(data) if data else None, last_request_id
    )


def prepare(conn: sqlite3.Connection, name: str, *, need_wal: bool) -> None:
    """Create or upgrade the tables in one transaction; raises LedgerError naming `name`
    when WAL cannot be had or the file is a ledger of another schema version."""
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if need_wal and str(mode).lower() != "wal":
        raise LedgerError(f"ledger {name}: cannot enable WAL mode (got {mode!r})")
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        present = {r[1] for r in conn.execute("PRAGMA table_info(requests)")}
        for column, declaration in ADDED_COLUMNS:
            if column not in present:
                conn.execute(f"ALTER TABLE requests ADD COLUMN {column} {declaration}")
        found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if found is None:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        elif found[0] != str(SCHEMA_VERSION):
            raise LedgerError(f"ledger {name}: schema version {found[0]} is not {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
