"""Opening a store's SQLite file the same way everywhere."""

from __future__ import annotations

import sqlite3
from pathlib import Path

MEMORY = ":memory:"


def connect(path: str, *, timeout: float = 5.0) -> sqlite3.Connection:
    """An autocommit connection usable from any thread; a file gets WAL and `synchronous=NORMAL`.

    Returns the connection; the caller checks `journal_mode` if WAL is a must. Its parent
    directory is created. Raises sqlite3.Error when the file cannot be opened.
    """
    if path != MEMORY:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)
    try:
        if path != MEMORY:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.Error:
        conn.close()
        raise
    return conn
