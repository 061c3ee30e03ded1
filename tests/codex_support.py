"""Run the real Codex CLI (npm `@openai/codex@0.171.0`) headless, sealed off.

`codex exec` is pointed only at `base_url` on 127.0.0.1 through a custom provider in a private
`$CODEX_HOME/config.toml` (`model_provider = "gateway"`, `wire_api = "responses"`, the client
key read from the env variable named by `env_key`). Everything else is cut off and recorded:

- `check_for_update_on_startup = false`, `[analytics] enabled = false`,
  `[feedback] enabled = false`, no OpenTelemetry exporter (config); `DO_NOT_TRACK=1` (env);
- `[features] plugins = false` (with it on, 0.171.0 reaches for github.com, api.github.com and
  chatgpt.com at start: the plugin marketplace), and `remote_plugin`, `apps` off too;
- HOME and CODEX_HOME are private to the run;
- every proxy variable points at a loopback stub that answers 403 and records the request line
  (tests/agent_sandbox.py), with NO_PROXY = 127.0.0.1 only: any other host is listed in
  `AgentRun.blocked`.

`--dangerously-bypass-approvals-and-sandbox` lets it run commands without asking (the run's
directory is throwaway); retries are cut to one so a refusing gateway ends the run quickly.
"""

from __future__ import annotations

from pathlib import Path

from agent_sandbox import ROOT, AgentRun, BlockingProxy, find_agent, run_agent, sealed_env

SETUP = ROOT / "scripts" / "setup_codex.sh"
CODEX_VERSION = "0.171.0"
CLIENT_KEY = "sk-local-gateway"
KEY_ENV = "GLM_GATEWAY_KEY"
MODEL = "glm-token-saver"


def find_codex() -> tuple[Path | None, str]:
    """(the codex binary, "") after running scripts/setup_codex.sh, or (None, why not)."""
    return find_agent(SETUP)


def codex_config(base_url: str, *, model: str = MODEL) -> str:
    """config.toml for a run against `base_url` (the API root including /v1)."""
    return f"""\
model = "{model}"
model_provider = "gateway"
check_for_update_on_startup = false
approval_policy = "never"
sandbox_mode = "danger-full-access"

[model_providers.gateway]
name = "GLM Token Saver"
base_url = "{base_url}"
env_key = "{KEY_ENV}"
wire_api = "responses"
request_max_retries = 1
stream_max_retries = 1
stream_idle_timeout_ms = 60000

[features]
plugins = false
remote_plugin = false
apps = false

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"
log_user_prompt = false
"""


def codex_env(home: Path, proxy_url: str) -> dict[str, str]:
    return sealed_env(
        home,
        proxy_url,
        CODEX_HOME=str(home / ".codex"),
        **{KEY_ENV: CLIENT_KEY},
    )


async def run_codex(
    codex: Path,
    base_url: str,
    prompt: str,
    workdir: Path,
    *,
    timeout: float = 120.0,
    model: str = MODEL,
) -> AgentRun:
    """Run `codex exec prompt` once in `workdir/work` with a private home `workdir/home`."""
    home = workdir / "home"
    cwd = workdir / "work"
    cwd.mkdir(parents=True, exist_ok=True)
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    (home / ".codex" / "config.toml").write_text(codex_config(base_url, model=model))
    async with BlockingProxy() as proxy:
        argv = [
            str(codex), "exec", "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox", "--color", "never",
            "-C", str(cwd), prompt,
        ]  # fmt: skip
        return await run_agent(
            argv, codex_env(home, proxy.url), cwd, proxy, timeout=timeout,
            marker=str(workdir), name="codex",
        )  # fmt: skip
