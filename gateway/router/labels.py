"""Outcome labels and conversation state, persisted in `learning.db` beside the ledger.

Tables:
- `turns`: every finished chat request (request_id, conversation key, turn, who answered), so a
  later label (agent-loop signal, feedback, verification) can find the request it is about;
- `conversations`: per conversation key, the last answered turn and the escalation, if any;
- `labels`: every label (request_id, source, bad, weight, score, whether the learner took it).

Written by the ledger's write-behind writer thread (gateway.storage.writer), in WAL mode with
`synchronous=NORMAL`, so the event loop never waits on SQLite, and a write that fails is skipped
rather than its whole batch. Unlike the ledger's rows, these writes are group-committed across
requests, kept back for up to SOFT_STATE_DEFER_S: a `kill -9` loses nothing that was committed but
may lose the learned state of the last 0.1 s; a power loss may lose the last commits. Reads happen
once, at start-up (`load`). Every table stays within its row limit while the gateway runs
(gateway.storage.retention): turns older than the TTL and beyond `max_rows` go, conversations
older than the TTL and beyond `max_conversations`, labels (a record of what the router learned
from) older than `label_ttl_seconds` and beyond `max_labels`, the oldest first. The counts of
applied labels live in `counters`, so deleting old label rows does not change them.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.storage.connection import MEMORY, connect
from gateway.storage.retention import Retention, TableLimit
from gateway.storage.writer import SOFT_STATE_DEFER_S, Write, WriteBehind, WriterThread

log = logging.getLogger("gateway.router.labels")

STORE_NAME = "learning.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    request_id TEXT PRIMARY KEY, conversation TEXT NOT NULL, turn INTEGER NOT NULL,
    model_used TEXT, time REAL NOT NULL);
CREATE INDEX IF NOT EXISTS turns_time ON turns (time);
CREATE TABLE IF NOT EXISTS conversations (
    key TEXT PRIMARY KEY, last_request_id TEXT, last_model TEXT, last_turn INTEGER NOT NULL,
    escalated TEXT, remaining INTEGER, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, source TEXT NOT NULL,
    bad INTEGER NOT NULL, weight REAL NOT NULL, score REAL, applied INTEGER NOT NULL,
    detail TEXT, time REAL NOT NULL);
CREATE INDEX IF NOT EXISTS conversations_updated ON conversations (updated);
CREATE INDEX IF NOT EXISTS labels_time ON labels (time);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

MAX_LABELS = 100_000
LABEL_TTL_SECONDS = 90 * 86_400.0
APPLIED = "applied:"  # counters: applied labels per source

INSERT_TURN = "INSERT OR REPLACE INTO turns VALUES (?, ?, ?, ?, ?)"
# Every column set, as INSERT OR REPLACE would, but in place: the row keeps its rowid, so the
# key's index is not rewritten (one WAL page less per request).
UPSERT_CONVERSATION = (
    "INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
    " last_request_id = excluded.last_request_id, last_model = excluded.last_model,"
    " last_turn = excluded.last_turn, escalated = excluded.escalated,"
    " remaining = excluded.remaining, updated = excluded.updated"
)
INSERT_LABEL = (
    "INSERT INTO labels (request_id, source, bad, weight, score, applied, detail, time)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
UPSERT_COUNTER = "INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)"

Learner = Callable[[str, bool, str, float], bool]
"""`learner(request_id, bad, source, weight) -> applied`: Router.learn's signature."""


@dataclass(slots=True)
class TurnRow:
    request_id: str
    conversation: str
    turn: int
    model_used: str | None
    time: float


@dataclass(slots=True)
class ConversationRow:
    key: str
    last_request_id: str | None
    last_model: str | None
    last_turn: int
    escalated: str | None
    remaining: int | None
    updated: float


@dataclass(slots=True)
class LoadedState:
    turns: list[TurnRow]
    conversations: list[ConversationRow]
    label_counts: dict[str, int]


def store_path_beside(ledger_path: str) -> str:
    """`learning.db` in the ledger's directory; in memory when the ledger is."""
    if ledger_path == MEMORY:
        return MEMORY
    return str(Path(ledger_path).parent / STORE_NAME)


class LearningStore:
    """Write-behind SQLite persistence (see the module docstring). ":memory:" keeps nothing."""

    def __init__(self, path: str, *, writer: WriterThread | None = None) -> None:
        self.path = path
        self._thread = writer
        self._writer: WriteBehind | None = None
        self.retention: Retention | None = None

    @property
    def persistent(self) -> bool:
        return self.path != MEMORY

    def load(
        self,
        *,
        ttl_seconds: float,
        max_rows: int,
        max_conversations: int | None = None,
        max_labels: int = MAX_LABELS,
        label_ttl_seconds: float = LABEL_TTL_SECONDS,
    ) -> LoadedState:
        """Open the file (creating it), apply the row limits, read the state, start the writer.

        `max_rows` bounds the turns, `max_conversations` the conversations (None: `max_rows`)."""
        if not self.persistent:
            return LoadedState([], [], {})
        conn = connect(self.path)
        conn.executescript(_SCHEMA)
        counts = self._label_counts(conn)
        self.retention = Retention(
            [
                TableLimit(
                    "turns", "time", max_rows, frozenset({INSERT_TURN}), "time", ttl_seconds
                ),
                TableLimit(
                    "conversations",
                    "updated",
                    max_rows if max_conversations is None else max_conversations,
                    frozenset({UPSERT_CONVERSATION}),
                    "updated",
                    ttl_seconds,
                ),
                TableLimit(
                    "labels", "id", max_labels, frozenset({INSERT_LABEL}), "time", label_ttl_seconds
                ),
            ]
        )
        self.retention.start(conn)
        turns = [
            TurnRow(*row)
            for row in conn.execute(
                "SELECT request_id, conversation, turn, model_used, time FROM turns ORDER BY time"
            )
        ]
        conversations = [
            ConversationRow(*row)
            for row in conn.execute(
                "SELECT key, last_request_id, last_model, last_turn, escalated, remaining,"
                " updated FROM conversations ORDER BY updated"
            )
        ]
        self._writer = WriteBehind(
            conn,
            name=f"learning store {self.path}",
            thread_name="learning-writer",
            defer_s=SOFT_STATE_DEFER_S,
            after_batch=self.retention.after_batch,
            thread=self._thread,
        )
        self._writer.start()
        return LoadedState(turns, conversations, counts)

    @staticmethod
    def _label_counts(conn: sqlite3.Connection) -> dict[str, int]:
        """Applied labels per source: from `counters`; a file written before it had them
        counts its label rows once and keeps the result there."""
        counts = {
            str(name)[len(APPLIED) :]: int(value)
            for name, value in conn.execute(
                "SELECT name, value FROM counters WHERE name LIKE ?", (APPLIED + "%",)
            )
        }
        if counts:
            return counts
        counts = {
            str(source): int(n)
            for source, n in conn.execute(
                "SELECT source, COUNT(*) FROM labels WHERE applied = 1 GROUP BY source"
            )
        }
        conn.executemany(UPSERT_COUNTER, [(APPLIED + k, v) for k, v in counts.items()])
        return counts

    def put_turn(self, row: TurnRow) -> None:
        self._put(
            INSERT_TURN,
            (row.request_id, row.conversation, row.turn, row.model_used, row.time),
            ("turns", row.request_id),
        )

    def put_conversation(self, row: ConversationRow) -> None:
        """Set `row` whole: of a request's two writes of its conversation (at `begin` and at
        `finish`) that commit together, only the second is run (gateway.storage.writer)."""
        self._put(
            UPSERT_CONVERSATION,
            (
                row.key,
                row.last_request_id,
                row.last_model,
                row.last_turn,
                row.escalated,
                row.remaining,
                row.updated,
            ),
            ("conversations", row.key),
        )

    def drop_conversation(self, key: str) -> None:
        self._put("DELETE FROM conversations WHERE key = ?", (key,))

    def put_label(
        self,
        request_id: str,
        source: str,
        bad: bool,
        weight: float,
        score: float | None,
        applied: bool,
        detail: str,
    ) -> None:
        self._put(
            INSERT_LABEL,
            (request_id, source, int(bad), weight, score, int(applied), detail, time.time()),
        )

    def put_applied_count(self, source: str, count: int) -> None:
        self._put(UPSERT_COUNTER, (APPLIED + source, count), ("counters", APPLIED + source))

    def _put(self, sql: str, params: tuple[Any, ...], replaces: Any = None) -> None:
        """Queue one write; `replaces` names the row it sets whole, if it does (`Write`)."""
        if self._writer is not None:
            self._writer.put(Write(sql, params, str(params[0]), replaces=replaces))

    def usage(self) -> dict[str, dict[str, Any]]:
        """Row counts and caps of the bounded tables (`/stats` memory block)."""
        if self.retention is None:
            return {}
        return {f"learning_db_{name}": block for name, block in self.retention.usage().items()}

    def flush(self) -> None:
        """Block until everything queued so far is committed (tests, shutdown)."""
        if self._writer is not None:
            self._writer.flush_blocking(10)

    async def committed(self) -> None:
        """Wait until everything queued so far is committed, the router's learned state kept
        back with it included (gateway.storage.writer)."""
        if self._writer is not None:
            await self._writer.flush()

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()


@dataclass(slots=True)
class LabelBook:
    """Stores every label and hands it to the learner (Router.learn); counts by source."""

    store: LearningStore
    learner: Learner | None
    counts: dict[str, int]

    def add(
        self,
        request_id: str,
        *,
        bad: bool,
        source: str,
        weight: float = 1.0,
        score: float | None = None,
        detail: str = "",
    ) -> bool:
        """Record one label; True when the learner applied it (it knew the request)."""
        applied = False
        if self.learner is not None and weight > 0:
            try:
                applied = bool(self.learner(request_id, bad, source, weight))
            except Exception:  # a learning bug must never break a request or the endpoint
                log.exception("learner failed on req=%s source=%s", request_id, source)
        if applied:
            self.counts[source] = self.counts.get(source, 0) + 1
            self.store.put_applied_count(source, self.counts[source])
        self.store.put_label(request_id, source, bad, weight, score, applied, detail)
        log.info(
            "label req=%s source=%s bad=%s weight=%g applied=%s %s",
            request_id, source, bad, weight, applied, detail,
        )  # fmt: skip
        return applied
