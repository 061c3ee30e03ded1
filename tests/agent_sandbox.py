"""Run a real coding-agent CLI sealed off: private home, loopback only, bounded in time.

Shared by tests/cline_support.py, tests/claude_code_support.py and tests/codex_support.py:

- `find_agent` runs the project's setup script for the CLI (pinned npm install into .venv) and
  returns its binary or why there is none;
- `BlockingProxy` is an HTTP proxy stub on 127.0.0.1 that answers 403 and records the request
  line; `sealed_env` points every proxy variable at it with `NO_PROXY` = 127.0.0.1 only, so any
  host other than loopback is refused and listed in `AgentRun.blocked`;
- `run_sealed` runs the CLI once with a time limit (killed past it) and then ends, by pid, the
  processes it left behind (found by the run's private directory in their command line).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


def find_agent(setup: Path) -> tuple[Path | None, str]:
    """(the CLI binary, "") after running the setup script `setup`, or (None, why not)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None, f"node/npm are not installed ({setup.relative_to(ROOT)} needs Node.js 20+)"
    try:
        done = subprocess.run(
            ["bash", str(setup)], capture_output=True, text=True, timeout=600, check=False
        )
    except subprocess.TimeoutExpired:
        return None, f"{setup.name} did not finish within 600 s"
    if done.returncode != 0:
        return None, (done.stderr.strip().splitlines() or [f"{setup.name} failed"])[-1]
    return Path(done.stdout.strip().splitlines()[-1]), ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass
class AgentRun:
    """One CLI run: exit status (-1 if it had to be killed), output, and what the proxy refused."""

    returncode: int
    seconds: float
    stdout: str
    stderr: str
    blocked: list[str] = field(default_factory=list)
    timed_out: bool = False


class BlockingProxy:
    """An HTTP proxy stub on loopback: records each request line, answers 403, closes."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            line = await asyncio.wait_for(reader.readline(), 5)
            self.seen.append(line.decode(errors="replace").strip())
            writer.write(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
        writer.close()

    async def __aenter__(self) -> BlockingProxy:
        self.server = await asyncio.start_server(self._handle, LOOPBACK, 0)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)


def sealed_env(home: Path, proxy_url: str, **extra: str) -> dict[str, str]:
    """A minimal environment: PATH, the private HOME, no tracking, every proxy at `proxy_url`,
    NO_PROXY = loopback only; `extra` is added last (the CLI's own switches). Creates the
    private TMPDIR."""
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "TMPDIR": str(home / "tmp"),
        "NO_UPDATE_NOTIFIER": "1",
        "DO_NOT_TRACK": "1",
        "TERM": "dumb",
        "NO_COLOR": "1",
        "NO_PROXY": LOOPBACK,
        "no_proxy": LOOPBACK,
        **{
            k: proxy_url
            for k in (
                "HTTP_PROXY",
                "HTTPS_PROXY",
                "ALL_PROXY",
                "http_proxy",
                "https_proxy",
                "all_proxy",
            )
        },
        **extra,
    }


def end_leftovers(marker: str, name: str) -> None:
    """End processes whose command line holds both `marker` (the run's private directory) and
    `name` (the CLI), e.g. a daemon the CLI started in the background; by pid, SIGTERM."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline and name.encode() in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry), signal.SIGTERM)


async def run_sealed(
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    *,
    timeout: float,
    stdin: bytes | None = None,
) -> tuple[int, str, str, bool]:
    """(exit status, stdout, stderr, timed out) of one run; killed (-1) past `timeout` s."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = await proc.communicate()
    code = proc.returncode if proc.returncode is not None and not timed_out else -1
    return code, stdout.decode(errors="replace"), stderr.decode(errors="replace"), timed_out


async def run_agent(
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    proxy: BlockingProxy,
    *,
    timeout: float,
    marker: str,
    name: str,
) -> AgentRun:
    """`run_sealed`, then end the leftovers; the proxy's refusals go into `blocked`."""
    started = time.monotonic()
    try:
        code, out, err, timed_out = await run_sealed(argv, env, cwd, timeout=timeout)
    finally:
        end_leftovers(marker, name)
    return AgentRun(code, time.monotonic() - started, out, err, list(proxy.seen), timed_out)


def require_agent(found: tuple[Path | None, str], name: str, require_env: str) -> Path:
    """The CLI's binary from `find_*()`'s (binary, why); skip with the reason when there is none,
    or fail when the environment sets `require_env`=1."""
    binary, why = found
    if binary is None:
        if os.environ.get(require_env) == "1":
            pytest.fail(f"{require_env}=1 but {name} is unavailable: {why}")
        pytest.skip(f"{name} unavailable: {why}")
    return binary


async def door_missing(session: Any, root: str, path: str) -> str | None:
    """Why the gateway at `root` has no door at `path` (it answers 404 or 405 to an empty
    JSON POST), else None. An existing door refuses the empty body with its own 4xx."""
    async with session.post(root + path, json={}, headers={"anthropic-version": "2023-06-01"}) as r:
        await r.read()
        if r.status in (404, 405):
            return f"the gateway has no {path} door yet (it answers {r.status}; issue 19)"
    return None


async def require_door(session: Any, root: str, path: str) -> None:
    """Skip the test, saying why, when the gateway at `root` has no door at `path`."""
    why = await door_missing(session, root, path)
    if why is not None:
        pytest.skip(why)


async def loop_gateway(
    make_gateway: Any, client: Any, sims: tuple[Any, Any], strategy: str, door: str, loop: Any
) -> Any:
    """A gateway under `strategy` whose simulators (`sims`) play the agent `loop`; skips while
    it has no `door`."""
    gw = await make_gateway(strategy)
    await require_door(client, gw.root, door)
    for sim in sims:
        sim.options.agent_loop = loop
    return gw


async def check_agent_loop(
    run: AgentRun, gw: Any, sims: tuple[Any, Any], strategy: str, tool_output: str
) -> None:
    """What every simulated agent loop through the gateway `gw` must show: the CLI exited 0,
    its tool's result (holding `tool_output`) reached an upstream (`sims`: local, cerebras),
    Cerebras was not asked under always_local, the ledger has a row per turn, and nothing
    reached the refusing proxy stub (loopback only)."""
    assert run.returncode == 0, f"{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    results = tool_results(sims)
    assert results, "no tool result reached the upstream"
    assert tool_output in str(results[-1].get("content"))
    if strategy == "always_local":
        assert sims[1].requests == []
    await gw.services.ledger.flush()
    assert len(gw.services.ledger.rows()) >= 2
    assert run.blocked == []


def tool_results(sims: Iterable[Any]) -> list[dict[str, Any]]:
    """The role "tool" messages the gateway forwarded to the simulators (SimServer)."""
    return [
        message
        for sim in sims
        for request in sim.requests
        for message in request.body.get("messages") or []
        if isinstance(message, dict) and message.get("role") == "tool"
    ]
