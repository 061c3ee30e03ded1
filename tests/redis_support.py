"""A real redis-server for the tests: started on a free 127.0.0.1 port, stopped afterwards.

When no redis-server can be found (scripts/setup_redis.sh installs one) the tests that need it
skip, saying why; GLM_REQUIRE_REDIS=1 turns that skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_redis_server() -> str:
    """The redis-server binary, or a skip (a failure under GLM_REQUIRE_REDIS=1) saying why."""
    binary = os.environ.get("GLM_REDIS_SERVER") or shutil.which("redis-server")
    if binary:
        return binary
    why = "no redis-server on PATH (run scripts/setup_redis.sh)"
    if os.environ.get("GLM_REQUIRE_REDIS") == "1":
        pytest.fail(why + " and GLM_REQUIRE_REDIS=1")
    pytest.skip(why)


@dataclass
class RedisServer:
    """One redis-server process; `stop()` / `start()` kill and revive it on the same port."""

    binary: str
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"redis-server did not answer on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
            self.process = None

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            sock.recv(16)


@contextmanager
def running_redis(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(find_redis_server(), free_port(), workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
