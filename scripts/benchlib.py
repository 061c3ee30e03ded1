"""Shared by the benchmark and soak scripts: start simulators and the gateway as processes on
127.0.0.1, wait for them, read their RSS and open file descriptors, stop them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of values; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    url: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


def spawn(
    args: list[str],
    url: str,
    *,
    cpus: set[int] | None = None,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
) -> Proc:
    """Start a process in its own process group, optionally pinned to `cpus`. `cwd`: the tree
    whose `gateway` package it imports (`python -m` looks there first)."""

    def setup_child() -> None:
        os.setsid()
        if cpus and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cpus)

    environment = dict(os.environ if env is None else env)
    environment.pop("CEREBRAS_API_KEY", None)  # benchmarks never reach the real API
    popen = subprocess.Popen(
        args,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=setup_child,
        env=environment,
    )
    return Proc(popen, url)


# The simulator with full garbage collections put off for the length of a run. Its full
# collections take 80-200 ms on a loaded machine, about 30 a minute with 64 streams flowing, and
# stall whichever path is being measured then: they set the p99 of the direct path, the relay
# and the gateway alike (docs/bench/hot_path.md). A real llama-server has no such pauses.
_QUIET_GC = (
    "import gc, runpy; gc.set_threshold(700, 10, 1_000_000); "
    "runpy.run_module('gateway.dev.sim', run_name='__main__', alter_sys=True)"
)


def spawn_sim(
    profile: str, *extra: str, cpus: set[int] | None = None, quiet_gc: bool = False
) -> Proc:
    """Start a simulator; `quiet_gc`: without its full garbage collections (tail latencies)."""
    port = free_port()
    launch = ["-c", _QUIET_GC] if quiet_gc else ["-m", "gateway.dev.sim"]
    args = [sys.executable, *launch, "--profile", profile, "--port", str(port)]
    return spawn([*args, *extra], f"http://{HOST}:{port}", cpus=cpus)


def spawn_gateway(
    config: dict[str, Any],
    workdir: Path,
    *,
    cpus: set[int] | None = None,
    env: dict[str, str] | None = None,
    tree: Path = ROOT,
    prefix: tuple[str, ...] = (),
) -> Proc:
    """Write `config` (server.port is filled in) to workdir and start the gateway on it, the
    gateway of `tree` (a checkout; this one by default), under the command `prefix` if any (a
    profiler such as valgrind)."""
    port = free_port()
    config = {**config, "server": {**config.get("server", {}), "host": HOST, "port": port}}
    storage = {
        "ledger_path": str(workdir / "ledger.db"),
        "log_path": str(workdir / "gateway.log"),
        "log_level": "WARNING",
        **config.get("storage", {}),
    }
    config["storage"] = storage
    path = workdir / "gateway.yaml"
    path.write_bytes(orjson.dumps(config))
    args = [*prefix, sys.executable, "-m", "gateway", "--config", str(path)]
    return spawn(args, f"http://{HOST}:{port}", cpus=cpus, env=env, cwd=tree)


async def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as resp:
                    if resp.status < 500:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f}s")


def spawn_local_gateway(
    sim: Proc,
    workdir: Path,
    *,
    cpus: set[int] | None = None,
    env: dict[str, str] | None = None,
    strategy: str = "always_local",
    tree: Path = ROOT,
    prefix: tuple[str, ...] = (),
    log_level: str = "WARNING",
) -> Proc:
    """A gateway serving everything from the simulator `sim` (`always_local` unless `strategy`
    says otherwise, Cerebras off), from the checkout `tree`, under the command `prefix`, logging
    at `log_level` (WARNING: no line per request; the gateway's default is INFO)."""
    config: dict[str, Any] = {
        "models": {
            "local": {"endpoint": sim.url + "/v1", "model": "sim"},
            "cerebras": {"enabled": False, "api_key": ""},
        },
        "routing": {"strategy": strategy},
        "storage": {"log_level": log_level},
    }
    return spawn_gateway(config, workdir, cpus=cpus, env=env, tree=tree, prefix=prefix)


def split_cores() -> tuple[set[int] | None, set[int] | None]:
    """(the gateway's core, the other cores) with two cores or more, else (None, None); this
    process (the client) moves to the other cores, off the gateway's."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) < 2:
        return None, None
    gateway, other = {cores[0]}, set(cores[1:])
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, other)
    return gateway, other
