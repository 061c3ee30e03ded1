"""What the router persists, in its own SQLite file beside the ledger (`router.db`).

Tables: `scores` (the calibration windows and routed decisions), `features` (the vectors of
recent requests, keyed by request_id, so a later label can be learned from), `labels` (every
label learned: request_id, source, label, weight, time), `weights` (online updates over the
shipped weights, per model and index), `counters` and `meta`. Everything is read once at
start-up; writes go through its own thread of the shared write-behind writer
(gateway.storage.writer), so the event loop never waits on SQLite and a write that fails is skipped,
not its whole batch. The file path ":memory:" (or None) keeps nothing past the process.

Row limits hold while the gateway runs: the last `window` scores of each kind, the newest
`remember` feature rows (none older than `feature_ttl_seconds`: no label can come for them), the
newest `max_labels` labels (none older than `label_ttl_seconds`; gateway.storage.retention). The
label counts by source live in `counters` ("labels:<source>"), so old label rows can go.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.router.features import Features
from gateway.storage.connection import MEMORY, connect
from gateway.storage.retention import Retention, TableLimit
from gateway.storage.writer import SOFT_STATE_DEFER_S, Write, WriteBehind, WriterThread

log = logging.getLogger("gateway.router.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scores (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, score REAL NOT NULL,
    cloud INTEGER NOT NULL, time REAL NOT NULL);
CREATE INDEX IF NOT EXISTS scores_kind ON scores (kind, id);
CREATE TABLE IF NOT EXISTS features (
    request_id TEXT NOT NULL, kind TEXT NOT NULL, vector TEXT NOT NULL, time REAL NOT NULL,
    PRIMARY KEY (request_id, kind));
CREATE INDEX IF NOT EXISTS features_time ON features (time);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, source TEXT NOT NULL,
    label INTEGER NOT NULL, weight REAL NOT NULL, time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS weights (
    model TEXT NOT NULL, idx INTEGER NOT NULL, value REAL NOT NULL, PRIMARY KEY (model, idx));
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS labels_time ON labels (time);
"""

LABELS = "labels:"  # counters: labels learned per source


def encode_features(vector: Features) -> str:
    """`vector` as the `features` table stores it: JSON pairs [index, value rounded to 6
    places], by index. orjson: half the cost of json.dumps, with the same values (shortest
    round-trip floats)."""
    # An ask's n-grams share one value per count (gateway.router.features._ngrams): round
    # each distinct value once. Only non-zero floats are shared: 0.0 and -0.0 (and 1 and 1.0)
    # are one key of the memo, yet JSON writes them apart.
    rounded: dict[float, float] = {}
    pairs = []
    for index, value in sorted(vector.items()):
        if value and type(value) is float:
            shown = rounded.get(value)
            if shown is None:
                shown = rounded[value] = round(value, 6)
        else:
            shown = round(value, 6)
        pairs.append((index, shown))
    return orjson.dumps(pairs).decode()


@dataclass(slots=True)
class Loaded:
    """The persisted state, as read at start-up."""

    scores: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)
    features: list[tuple[str, str, Features]] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    weights: dict[str, dict[int, float]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)


INSERT_SCORE = "INSERT INTO scores (kind, score, cloud, time) VALUES (?, ?, ?, ?)"
INSERT_FEATURES = (
    "INSERT OR REPLACE INTO features (request_id, kind, vector, time) VALUES (?, ?, ?, ?)"
)
INSERT_LABEL = "INSERT INTO labels (request_id, source, label, weight, time) VALUES (?, ?, ?, ?, ?)"
UPSERT_WEIGHT = "INSERT OR REPLACE INTO weights (model, idx, value) VALUES (?, ?, ?)"
UPSERT_COUNTER = "INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)"


class RouterStore:
    """Write-behind persistence; `load()` first, then the `put_*` calls, `flush()`, `close()`."""

    def __init__(
        self,
        path: str | Path | None,
        *,
        window: int,
        remember: int,
        feature_ttl_seconds: float | None = None,
        max_labels: int = 100_000,
        label_ttl_seconds: float | None = None,
        writer: WriterThread | None = None,
    ) -> None:
        self.path = MEMORY if path is None else str(path)
        self._thread = writer
        self.window = window
        self.remember = remember
        self.retention = Retention(
            [
                TableLimit(
                    "features",
                    "time",
                    remember,
                    frozenset({INSERT_FEATURES}),
                    "time",
                    feature_ttl_seconds,
                ),
                TableLimit(
                    "labels", "id", max_labels, frozenset({INSERT_LABEL}), "time", label_ttl_seconds
                ),
            ]
        )
        self._writer: WriteBehind | None = None

    @property
    def persistent(self) -> bool:
        return self.path != MEMORY

    def load(self, weights_digest: str) -> Loaded:
        """Open (creating if needed) and read everything; start the writer thread.

        Online weight updates made over other shipped weights (another digest) are dropped:
        they were steps from a different starting point."""
        conn = connect(self.path)
        conn.executescript(SCHEMA)
        out = Loaded()
        row = conn.execute("SELECT value FROM meta WHERE key = 'weights_digest'").fetchone()
        if row is not None and row[0] != weights_digest:
            log.warning("router: shipped weights changed; %s online updates dropped", self.path)
            conn.execute("DELETE FROM weights")
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('weights_digest', ?)",
            (weights_digest,),
        )
        for name, value in conn.execute("SELECT name, value FROM counters"):
            out.counters[str(name)] = int(value)
        labels = {k[len(LABELS) :]: v for k, v in out.counters.items() if k.startswith(LABELS)}
        if not labels:  # a file from before the counters: count the rows once, keep the result
            for source, count in conn.execute(
                "SELECT source, COUNT(*) FROM labels GROUP BY source"
            ):
                labels[str(source)] = int(count)
                conn.execute(UPSERT_COUNTER, (LABELS + str(source), int(count)))
        out.labels = labels
        self.retention.start(conn)
        for kind, score, cloud in conn.execute("SELECT kind, score, cloud FROM scores ORDER BY id"):
            out.scores.setdefault(kind, []).append((float(score), bool(cloud)))
        for kind in out.scores:
            out.scores[kind] = out.scores[kind][-self.window :]
        for request_id, kind, vector in conn.execute(
            "SELECT request_id, kind, vector FROM features ORDER BY time DESC LIMIT ?",
            (self.remember,),
        ):
            parsed = {int(i): float(v) for i, v in json.loads(vector)}
            out.features.append((str(request_id), str(kind), parsed))
        out.features.reverse()
        for model, idx, value in conn.execute("SELECT model, idx, value FROM weights"):
            out.weights.setdefault(str(model), {})[int(idx)] = float(value)
        self._writer = WriteBehind(
            conn,
            name=f"router store {self.path}",
            thread_name="router-store",
            defer_s=SOFT_STATE_DEFER_S,
            after_batch=self._trim,
            thread=self._thread,
        )
        self._writer.start()
        return out

    # --- writes (queued) --------------------------------------------------------------------

    def put_score(self, kind: str, score: float, cloud: bool) -> None:
        self._put(INSERT_SCORE, (kind, score, int(cloud), time.time()), f"score {kind}")

    def put_features(
        self, request_id: str, kind: str, vector: Features, encoded: str | None = None
    ) -> None:
        """Queue `vector` for `request_id`; `encoded`: its `encode_features`, when the caller
        has it already."""
        if encoded is None:
            encoded = encode_features(vector)
        self._put(
            INSERT_FEATURES,
            (request_id, kind, encoded, time.time()),
            request_id,
            ("features", request_id, kind),
        )

    def put_label(
        self, request_id: str, source: str, bad: bool, weight: float, changed: dict[str, Features]
    ) -> None:
        self._put(INSERT_LABEL, (request_id, source, int(bad), weight, time.time()), request_id)
        updates = [(m, i, v) for m, w in changed.items() for i, v in w.items()]
        if updates and self._writer is not None:
            self._writer.put(Write(UPSERT_WEIGHT, updates, f"weights of {request_id}", many=True))

    def put_counter(self, name: str, value: int) -> None:
        self._put(UPSERT_COUNTER, (name, value), f"counter {name}", ("counters", name))

    def _put(self, sql: str, params: tuple[Any, ...], what: str, replaces: Any = None) -> None:
        """Queue one write; `replaces` names the row it sets whole, if it does (`Write`)."""
        if self._writer is not None:
            self._writer.put(Write(sql, params, what, replaces=replaces))

    def flush(self) -> None:
        """Block until every queued write is committed (tests, shutdown)."""
        if self._writer is not None:
            self._writer.flush_blocking()

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def usage(self) -> dict[str, dict[str, Any]]:
        """Row counts and caps of the bounded tables (`/stats` memory block)."""
        return {f"router_db_{name}": block for name, block in self.retention.usage().items()}

    def _trim(self, conn: sqlite3.Connection, writes: list[Write]) -> None:
        """Keep the last `window` scores of each kind written, and the row limits of features
        and labels (run inside each batch's transaction)."""
        kinds = {w.params[0] for w in writes if w.sql == INSERT_SCORE}
        for kind in kinds:
            conn.execute(
                "DELETE FROM scores WHERE kind = ? AND id <= (SELECT id FROM scores "
                "WHERE kind = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (kind, kind, self.window),
            )
        self.retention.after_batch(conn, writes)
