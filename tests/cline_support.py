"""Run the real Cline CLI (npm `cline@3.0.65`) against a gateway on 127.0.0.1, sealed off.

Cline is pointed only at the gateway (`openai-compatible` provider, base URL on loopback). What
else it would reach is cut off and recorded:

- `telemetryOptOut: true` and `autoUpdateEnabled: false` in its global settings (this removes
  the OpenTelemetry export to otel.cline.bot), `CLINE_NO_AUTO_UPDATE=1`, `DO_NOT_TRACK=1`;
- every proxy variable points at a loopback stub that answers 403 and records the request line,
  with `NO_PROXY` = 127.0.0.1 only, so any other host (3.0.65 still asks data.cline.bot for
  feature flags) is refused and listed in `ClineRun.blocked`;
- HOME, CLINE_DIR, the hub port and every data directory are private to the run; the hub daemon
  Cline starts in the background is ended by its pid when the run is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "scripts" / "setup_cline.sh"
CLINE_VERSION = "3.0.65"


def find_cline() -> tuple[Path | None, str]:
    """(the cline binary, "") after running scripts/setup_cline.sh, or (None, why not)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None, "node/npm are not installed (scripts/setup_cline.sh needs Node.js 20+)"
    try:
        done = subprocess.run(
            ["bash", str(SETUP)], capture_output=True, text=True, timeout=600, check=False
        )
    except subprocess.TimeoutExpired:
        return None, "scripts/setup_cline.sh did not finish within 600 s"
    if done.returncode != 0:
        return None, (done.stderr.strip().splitlines() or ["setup_cline.sh failed"])[-1]
    return Path(done.stdout.strip().splitlines()[-1]), ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ClineRun:
    returncode: int
    seconds: float
    stdout: str
    stderr: str
    blocked: list[str] = field(default_factory=list)
    session_messages: list[dict[str, object]] = field(default_factory=list)


class _BlockingProxy:
    """An HTTP proxy stub on loopback: records each request line, answers 403, closes."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            line = await asyncio.wait_for(reader.readline(), 5)
            self.seen.append(line.decode(errors="replace").strip())
            writer.write(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
        writer.close()

    async def __aenter__(self) -> _BlockingProxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)


def _end_leftovers(marker: str) -> None:
    """End the processes this run left behind (Cline's hub daemon), found by its private dir."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline and b"cline" in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry), signal.SIGTERM)


async def run_cline(
    cline: Path, base_url: str, prompt: str, workdir: Path, *, timeout: float = 120.0
) -> ClineRun:
    """Configure Cline for `base_url` in a private home under `workdir` and run `prompt` once."""
    home = workdir / "home"
    cwd = workdir / "work"
    cwd.mkdir(parents=True, exist_ok=True)
    settings = home / ".cline" / "data" / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "global-settings.json").write_text(
        json.dumps({"telemetryOptOut": True, "autoUpdateEnabled": False})
    )
    async with _BlockingProxy() as proxy:
        proxy_url = f"http://127.0.0.1:{proxy.port}"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "CLINE_DIR": str(home / ".cline"),
            "CLINE_HUB_PORT": str(_free_port()),
            "CLINE_NO_AUTO_UPDATE": "1",
            "CLINE_DISABLE_CLINE_PASS_NOTICE": "1",
            "NO_UPDATE_NOTIFIER": "1",
            "DO_NOT_TRACK": "1",
            "TERM": "dumb",
            "NO_PROXY": "127.0.0.1",
            "no_proxy": "127.0.0.1",
            **{k: proxy_url for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
        }
        config = ["--config", str(home / ".cline")]
        started = time.monotonic()
        try:
            auth = await asyncio.create_subprocess_exec(
                str(cline), "auth", "--provider", "openai-compatible",
                "--apikey", "sk-local-gateway", "--modelid", "glm-token-saver",
                "--baseurl", base_url, *config,
                cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            out, _ = await asyncio.wait_for(auth.communicate(), 60)
            if auth.returncode != 0:
                raise RuntimeError(f"cline auth failed: {out.decode(errors='replace')}")
            proc = await asyncio.create_subprocess_exec(
                str(cline), "-v", *config, "-c", str(cwd), prompt,
                cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
            except TimeoutError:
                proc.kill()
                stdout, stderr = await proc.communicate()
        finally:
            _end_leftovers(str(cwd))
        run = ClineRun(
            returncode=proc.returncode if proc.returncode is not None else -1,
            seconds=time.monotonic() - started,
            stdout=stdout.decode(errors="replace"),
            stderr=stderr.decode(errors="replace"),
            blocked=list(proxy.seen),
        )
    for path in (home / ".cline" / "data" / "sessions").glob("*/*.messages.json"):
        with contextlib.suppress(ValueError, OSError):
            run.session_messages = json.loads(path.read_text()).get("messages", [])
    return run
