"""Ledger: commit-before-resolve, batching, durability across reopen and SIGKILL, bad input."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from paths import REPO_ROOT as ROOT

KILL_SCRIPT = """
import asyncio, sys, time
from gateway.accounting.ledger import Ledger, flatten
from gateway.accounting.records import RequestRecord

async def writer(ledger, tag):
    i = 0
    while True:
        i += 1
        rid = f"{tag}-{i}"
        record = RequestRecord(rid, time.time(), "smart_routing", True)
        row_id = await ledger.submit(flatten(record, cost_usd=0.001, counterfactual_usd=0.0))
        print(row_id, rid, flush=True)

async def main():
    ledger = Ledger(sys.argv[1])
    await ledger.start()
    await asyncio.gather(*(writer(ledger, t) for t in "abcd"))

asyncio.run(main())
"""


def test_sigkill_loses_no_awaited_row(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    acknowledged: list[tuple[int, str]] = []
    try:
        assert proc.stdout is not None
        while len(acknowledged) < 400:
            line = proc.stdout.readline()
            if not line:
                break
            row_id, rid = line.split()
            acknowledged.append((int(row_id), rid))
        os.kill(proc.pid, signal.SIGKILL)
        rest, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # The kill may cut the last acknowledgement mid-line: only whole lines were acknowledged.
    whole_lines = rest.split("\n")[:-1]
    acknowledged += [(int(a), b) for a, b in (line.split() for line in whole_lines)]
    assert len(acknowledged) >= 400, err

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = dict(conn.execute("SELECT id, request_id FROM requests").fetchall())
    missing = [(i, r) for i, r in acknowledged if stored.get(i) != r]
    assert not missing, f"{len(missing)} acknowledged rows lost, e.g. {missing[:3]}"
