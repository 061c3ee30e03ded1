"""Run the real Claude Code CLI (npm `@anthropic-ai/claude-code@2.1.332`) headless, sealed off.

`claude -p` is pointed only at `base_url` on 127.0.0.1 (`ANTHROPIC_BASE_URL`; the client key as
`ANTHROPIC_AUTH_TOKEN`, sent as `Authorization: Bearer`, or as `ANTHROPIC_API_KEY`, sent as
`x-api-key`). Everything else is cut off and recorded:

- `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1` (no auto-update, release notes, model
  capabilities, feedback), `DISABLE_TELEMETRY`, `DISABLE_ERROR_REPORTING`, `DISABLE_AUTOUPDATER`,
  `DISABLE_BUG_COMMAND`, `CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY` (env) and `autoUpdates: false`
  (settings); without the first, 2.1.332 reaches for api.anthropic.com:443 once per run;
- HOME and CLAUDE_CONFIG_DIR are private to the run, with onboarding marked done
  (`hasCompletedOnboarding`), so nothing interactive is asked;
- every proxy variable points at a loopback stub that answers 403 and records the request line
  (tests/agent_sandbox.py), with NO_PROXY = 127.0.0.1 only: any other host is listed in
  `AgentRun.blocked`.

`--allowedTools` lets `-p` use those tools (e.g. `Write`) without asking; `--max-turns` and the
`timeout` keep a run bounded.
"""

from __future__ import annotations

import json
from pathlib import Path

from agent_sandbox import ROOT, AgentRun, BlockingProxy, find_agent, run_agent, sealed_env

SETUP = ROOT / "scripts" / "setup_claude_code.sh"
CLAUDE_CODE_VERSION = "2.1.332"
CLIENT_KEY = "sk-local-gateway"


def find_claude_code() -> tuple[Path | None, str]:
    """(the claude binary, "") after running scripts/setup_claude_code.sh, or (None, why not)."""
    return find_agent(SETUP)


def claude_code_env(
    home: Path, base_url: str, proxy_url: str, *, key: str = CLIENT_KEY, key_as: str = "bearer",
    model: str | None = None, essential_only: bool = True,
) -> dict[str, str]:  # fmt: skip
    """The environment of a sealed run; `key_as` "bearer" (ANTHROPIC_AUTH_TOKEN) or "x-api-key"
    (ANTHROPIC_API_KEY); `model` sets ANTHROPIC_MODEL (and the small/fast model) when given;
    `essential_only=False` leaves CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC unset (the proxy
    stub still refuses every other host) to see what a default setup sends."""
    extra = {
        "ANTHROPIC_BASE_URL": base_url,
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_BUG_COMMAND": "1",
        "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
        "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
        "IS_SANDBOX": "1",
    }
    if essential_only:
        extra["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
    extra["ANTHROPIC_AUTH_TOKEN" if key_as == "bearer" else "ANTHROPIC_API_KEY"] = key
    if model is not None:
        extra["ANTHROPIC_MODEL"] = model
        extra["ANTHROPIC_DEFAULT_HAIKU_MODEL"] = model
    return sealed_env(home, proxy_url, **extra)


def prepare_home(home: Path) -> None:
    """Onboarding done and auto-update off, in both places Claude Code looks for them."""
    config_dir = home / ".claude"
    config_dir.mkdir(parents=True, exist_ok=True)
    state = json.dumps({"hasCompletedOnboarding": True, "autoUpdates": False})
    (home / ".claude.json").write_text(state)
    (config_dir / ".claude.json").write_text(state)
    (config_dir / "settings.json").write_text(json.dumps({"autoUpdates": False}))


async def run_claude_code(
    claude: Path,
    base_url: str,
    prompt: str,
    workdir: Path,
    *,
    allowed_tools: tuple[str, ...] = ("Write",),
    max_turns: int = 4,
    timeout: float = 120.0,
    key_as: str = "bearer",
    model: str | None = None,
    essential_only: bool = True,
    extra_env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
) -> AgentRun:
    """Run `claude -p prompt` once in `workdir/work` with a private home `workdir/home`.

    `base_url` is the API root without /v1 (Claude Code appends /v1/messages)."""
    home = workdir / "home"
    cwd = workdir / "work"
    cwd.mkdir(parents=True, exist_ok=True)
    prepare_home(home)
    async with BlockingProxy() as proxy:
        env = claude_code_env(
            home, base_url, proxy.url, key_as=key_as, model=model, essential_only=essential_only
        )
        env.update(extra_env or {})
        argv = [str(claude), "-p", prompt, "--max-turns", str(max_turns)]
        if allowed_tools:
            argv += ["--allowedTools", ",".join(allowed_tools)]
        argv += extra_args
        return await run_agent(
            argv, env, cwd, proxy, timeout=timeout, marker=str(workdir), name="claude"
        )
