"""Run the real Cline CLI (npm `cline@3.0.65`) against a gateway on 127.0.0.1, sealed off.

Cline is pointed only at the gateway (`openai-compatible` provider, base URL on loopback). What
else it would reach is cut off and recorded:

- `telemetryOptOut: true` and `autoUpdateEnabled: false` in its global settings (this removes
  the OpenTelemetry export to otel.cline.bot), `CLINE_NO_AUTO_UPDATE=1`, `DO_NOT_TRACK=1`;
- every proxy variable points at a loopback stub that answers 403 and records the request line
  (tests/agent_sandbox.py, shared with the Claude Code and Codex runs), with `NO_PROXY` =
  127.0.0.1 only, so any other host (3.0.65 still asks data.cline.bot for
  feature flags) is refused and listed in `ClineRun.blocked`;
- HOME, CLINE_DIR, the hub port and every data directory are private to the run; the hub daemon
  Cline starts in the background is ended by its pid when the run is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent_sandbox import BlockingProxy, end_leftovers, find_agent, free_port, sealed_env

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "scripts" / "setup_cline.sh"
CLINE_VERSION = "3.0.65"


def find_cline() -> tuple[Path | None, str]:
    """(the cline binary, "") after running scripts/setup_cline.sh, or (None, why not)."""
    return find_agent(SETUP)


@dataclass
class ClineRun:
    returncode: int
    seconds: float
    stdout: str
    stderr: str
    blocked: list[str] = field(default_factory=list)
    session_messages: list[dict[str, object]] = field(default_factory=list)


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
    async with BlockingProxy() as proxy:
        env = sealed_env(
            home,
            proxy.url,
            CLINE_DIR=str(home / ".cline"),
            CLINE_HUB_PORT=str(free_port()),
            CLINE_NO_AUTO_UPDATE="1",
            CLINE_DISABLE_CLINE_PASS_NOTICE="1",
        )
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
            end_leftovers(str(cwd), "cline")
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
