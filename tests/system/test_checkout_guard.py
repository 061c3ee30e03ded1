"""The checkout guard (tests/checkout_guard.py) sees what a test leaves behind, and only that."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from checkout_guard import Guard, changes, snapshot


def make_checkout(root: Path) -> None:
    (root / "gateway").mkdir()
    (root / "gateway" / "tracked.py").write_text("x = 1\n")
    (root / "notes.txt").write_text("untracked\n")
    for cache in (".venv/lib", "tests/__pycache__", ".pytest_cache", "glm.egg-info", "env2"):
        (root / cache).mkdir(parents=True)
        (root / cache / "f").write_text("cache\n")
    (root / "env2" / "pyvenv.cfg").write_text("home = /usr\n")  # a virtualenv by another name
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "gateway/tracked.py"], check=True)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    make_checkout(tmp_path)
    return tmp_path


def test_snapshot_holds_untracked_files_outside_the_caches(checkout: Path) -> None:
    guard = Guard(checkout)
    guard.start()
    assert set(guard.before) == {"notes.txt"}


def test_created_modified_and_removed_files_are_named(checkout: Path) -> None:
    guard = Guard(checkout)
    guard.start()
    (checkout / "data").mkdir()
    (checkout / "data" / "demo_ledger.db").write_bytes(b"rows")
    (checkout / "notes.txt").unlink()
    (checkout / ".venv" / "lib" / "new").write_text("installed\n")
    (checkout / "gateway" / "tracked.py").write_text("x = 2\n")  # an edit of the sources
    assert guard.finish() == [
        "  created: data/demo_ledger.db  [outside any test]",
        "  removed: notes.txt",
    ]


def test_a_rewritten_file_counts_as_modified(checkout: Path) -> None:
    before = snapshot(checkout, None)
    path = checkout / "notes.txt"
    stat = path.stat()
    path.write_text("untracked, longer now\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    after = snapshot(checkout, None)
    assert ("modified", "notes.txt") in changes(before, after)


def test_the_test_that_wrote_is_named(checkout: Path) -> None:
    guard = Guard(checkout)
    guard.start()
    (checkout / "left.db").write_bytes(b"x")
    mtime = (checkout / "left.db").stat().st_mtime_ns
    guard.spans = [(mtime - 10**9, mtime - 5 * 10**8, "t::a"), (mtime - 10**6, mtime, "t::b")]
    assert guard.finish() == ["  created: left.db  [during t::b]"]
    guard.spans = [(mtime - 10**10, mtime - 10**9, "t::a")]
    assert guard.culprit(mtime) == "after t::a (a process it left running?)"
