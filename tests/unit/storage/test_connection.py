"""Opening a store's file: WAL, and a switch to WAL that waits out a connection about to write."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from gateway.storage.connection import connect


def about_to_write(path: Path) -> sqlite3.Connection:
    """A connection holding a reserved lock on a new (rollback-journal) file, as a second
    process creating the same store does while the first switches it to WAL."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_the_switch_to_wal_waits_for_a_connection_about_to_write(tmp_path: Path) -> None:
    holder = about_to_write(tmp_path / "store.db")
    done = threading.Timer(0.2, holder.execute, ("COMMIT",))
    done.start()
    conn = connect(str(tmp_path / "store.db"))  # SQLite alone refuses this at once
    done.join()
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()
    holder.close()


def test_a_lock_held_past_the_timeout_still_fails_saying_so(tmp_path: Path) -> None:
    holder = about_to_write(tmp_path / "store.db")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        connect(str(tmp_path / "store.db"), timeout=0.1)
    holder.close()
