"""Opening a store's SQLite file the same way everywhere."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

MEMORY = ":memory:"


def connect(path: str, *, timeout: float = 5.0) -> sqlite3.Connection:
    """An autocommit connection usable from any thread; a file gets WAL and `synchronous=NORMAL`.

    Returns the connection; the caller checks `journal_mode` if WAL is a must. Its parent
    directory is created. Raises sqlite3.Error when the file cannot be opened, or is still
    locked by another connection after `timeout` seconds.
    """
    if path != MEMORY:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)
    try:
        if path != MEMORY:
            _set_wal(conn, timeout)
            conn.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _set_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch `conn`'s file to WAL, retrying for up to `timeout` s while it is locked.

    SQLite answers SQLITE_BUSY at once, without its busy handler, when the switch would wait on
    a connection that is about to write (it holds a reserved lock): waiting there could deadlock.
    Two processes opening a new file together (the workers, which share `router.db` and
    `learning.db`) meet exactly that; the one refused retries once its shared lock is released.
    """
    execute_while_busy(conn, "PRAGMA journal_mode=WAL", timeout)


def execute_while_busy(conn: sqlite3.Connection, sql: str, timeout: float) -> None:
    """Execute `sql`, retrying with a growing pause (up to 50 ms) for up to `timeout` s while
    SQLite answers SQLITE_BUSY or one of its extended codes; raises sqlite3.Error after that, or
    on any other error. For the statements that get SQLITE_BUSY without waiting in SQLite's busy
    handler (or on a connection whose busy timeout is 0)."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            conn.execute(sql)
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY  # SQLITE_BUSY_RECOVERY too
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
