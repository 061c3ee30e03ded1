#!/usr/bin/env python3
"""Ledger write throughput: rows/s when 1 and when 64 coroutines each await their own row.

Each writer awaits `Ledger.submit` (the path every request takes before its `[DONE]`) in a loop,
on a fresh WAL ledger in a temporary directory. Printed per case: rows/s (wall), process CPU per
row, commits and rows per commit. Best of `--repeat` runs. Figures only; asserts nothing.
Run: `PYTHONPATH=. .venv/bin/python scripts/bench_ledger.py` (about 10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.accounting.ledger import Ledger, flatten  # noqa: E402
from gateway.accounting.records import RequestRecord, UpstreamCall  # noqa: E402


@dataclass(frozen=True, slots=True)
class Result:
    writers: int
    rows: int
    wall_s: float
    cpu_s: float
    commits: int

    @property
    def line(self) -> str:
        return (
            f"{self.writers:>3} writers: {self.rows / self.wall_s:>8,.0f} rows/s"
            f"  {self.cpu_s / self.rows * 1e6:>6.1f} µs CPU/row"
            f"  {self.commits:>6} commits  {self.rows / max(1, self.commits):>6.1f} rows/commit"
        )


def _record(tag: str, i: int) -> RequestRecord:
    return RequestRecord(
        request_id=f"{tag}-{i}",
        started_at=time.time(),
        strategy="smart_routing",
        stream=True,
        model_used="local",
        calls=[
            UpstreamCall("local", prompt_tokens=12_000, completion_tokens=300),
            UpstreamCall("cerebras", role="verify", status="cancelled", prompt_tokens=12_000),
        ],
        ttft_s=0.2,
        duration_s=1.5,
        routing_reason="simple",
        counterfactual_prompt_tokens=12_000,
        counterfactual_completion_tokens=300,
    )


async def _run(writers: int, rows_each: int, directory: Path) -> Result:
    ledger = Ledger(directory / f"bench-{writers}-{time.monotonic_ns()}.db")
    await ledger.start()

    async def writer(tag: str) -> None:
        for i in range(rows_each):
            await ledger.submit(flatten(_record(tag, i), cost_usd=0.001, counterfactual_usd=0.002))

    try:
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(writer(f"w{n}") for n in range(writers)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return Result(writers, writers * rows_each, wall, cpu, ledger.commits)
    finally:
        await ledger.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6400, help="rows per case (default 6400)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case, best kept")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        for writers in (1, 64):
            runs = [
                await _run(writers, args.rows // writers, Path(tmp)) for _ in range(args.repeat)
            ]
            print(max(runs, key=lambda r: r.rows / r.wall_s).line, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
