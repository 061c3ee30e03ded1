"""`--demo --workers N`: one redis-server and one pair of simulators for N demo workers.

Contract: the parent process starts the simulators (in its own event loop) and, unless
`state.redis_url` / `GATEWAY_REDIS_URL` names one already, a throw-away redis-server on a free
127.0.0.1 port (no persistence). It starts the N workers pointed at both, prints where
everything is, forwards SIGINT/SIGTERM to the workers and, once they have all exited, stops the
redis-server it started. The exit code is the first non-zero one of a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.dev.demo import DEMO_UPSTREAMS_FLAG, demo_upstreams_running
from gateway.workers import run_workers

REDIS_ENV = "GATEWAY_REDIS_URL"
SETUP_HINT = "scripts/setup_redis.sh installs it (scripts/run_gateway.sh runs it for you)"


class DemoFleetError(RuntimeError):
    """The demo's redis-server cannot be found or started; the message says what to do."""


def redis_binary() -> str:
    """The redis-server to run (`GLM_REDIS_SERVER`, else PATH), or DemoFleetError."""
    binary = os.environ.get("GLM_REDIS_SERVER") or shutil.which("redis-server")
    if not binary:
        raise DemoFleetError(
            f"--demo --workers needs redis-server and none is on PATH; {SETUP_HINT}"
        )
    return binary


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _answers_ping(port: int) -> bool:
    with contextlib.suppress(OSError):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            return (await reader.read(16)).startswith(b"+PONG")
        finally:
            writer.close()
    return False


@asynccontextmanager
async def demo_redis() -> AsyncIterator[str]:
    """A redis-server on a free loopback port, for the demo only; yields its URL, stops it."""
    binary = redis_binary()
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="glm-demo-redis-") as workdir:
        proc = await asyncio.create_subprocess_exec(
            binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", workdir,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C meant for the gateway must not kill it first
        )  # fmt: skip
        try:
            for _ in range(200):
                if proc.returncode is not None:
                    break
                if await _answers_ping(port):
                    break
                await asyncio.sleep(0.05)
            else:
                raise DemoFleetError(f"redis-server did not answer on 127.0.0.1:{port}")
            if proc.returncode is not None:
                raise DemoFleetError(f"redis-server exited at start (code {proc.returncode})")
            print(
                f"demo: redis-server (pid {proc.pid}) at redis://127.0.0.1:{port}/0, "
                "stopped with the gateway",
                flush=True,
            )
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            print("demo: redis-server stopped", flush=True)


async def run_demo_workers(words: list[str], workers: int, redis_url: str) -> int:
    """Serve `words` (a `--demo` command line) with `workers` processes; see the module doc."""
    async with contextlib.AsyncExitStack() as stack:
        if not redis_url:
            redis_url = await stack.enter_async_context(demo_redis())
        local_url, cerebras_url = await stack.enter_async_context(demo_upstreams_running())
        return await run_workers(
            words,
            workers,
            extra=(DEMO_UPSTREAMS_FLAG, f"{local_url},{cerebras_url}"),
            env={**os.environ, REDIS_ENV: redis_url},
            started=lambda pids: print(
                f"demo: {workers} workers (pids {', '.join(map(str, pids))})", flush=True
            ),
        )
    return 0  # pragma: no cover  (mypy: the exit stack could swallow an exception)
