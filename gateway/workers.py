"""Worker processes: `server.workers` copies of the gateway's command line on one port.

Contract: `run_workers` starts `python -m gateway <words> --worker-index i <extra>` for each i
(the workers share the port through SO_REUSEPORT), forwards SIGINT/SIGTERM to the ones still
running, waits for all of them and returns the first non-zero exit code (0 when none).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Mapping, Sequence


async def run_workers(
    words: Sequence[str],
    workers: int,
    *,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    started: Callable[[list[int]], None] | None = None,
) -> int:
    """Run the workers until they have all exited; `started` gets their pids once spawned."""
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            *words,
            "--worker-index",
            str(i),
            *extra,
            env=None if env is None else dict(env),
        )
        for i in range(workers)
    ]
    if started is not None:
        started([child.pid for child in children])

    def forward(signum: int) -> None:
        for child in children:
            if child.returncode is None:
                child.send_signal(signum)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, forward, sig)
    codes = [await child.wait() for child in children]
    return next((code for code in codes if code), 0)
