"""The dashboard's endpoints: /stats/history buckets, /requests filters and paging,
/requests/{id}, /dashboard/summary, auth, bad parameters, secrets, and the demo traffic."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import pytest
from paths import REPO_ROOT


async def test_demo_traffic_flag_prints_the_dashboard_and_sends(tmp_path, client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "--demo-traffic",
        "--port",
        str(port),
        cwd=tmp_path,  # the demo's ledger and log land in tmp_path
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not any(line.startswith("dashboard: ") for line in lines):
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, f"the gateway exited: {lines}"
            lines.append(line.decode().strip())
        assert f"dashboard: http://127.0.0.1:{port}/dashboard" in lines
        for _ in range(100):
            await asyncio.sleep(0.1)
            async with client.get(f"http://127.0.0.1:{port}/stats") as resp:
                if (await resp.json())["requests"]["total"] >= 1:
                    break
        else:
            pytest.fail("no demo request was recorded within 10 s")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 15)
