"""Record what the real Claude Code 2.1.332 and Codex 0.171.0 CLIs send, turn by turn.

    .venv/bin/python scripts/record_agent_fixtures.py [--agent claude_code|codex|both]
                                                      [--out-dir tests/fixtures]

Each scenario runs the CLI once (tests/claude_code_support.py, tests/codex_support.py: private
home, loopback only) against a recording server on 127.0.0.1 that plays the API the CLI speaks
(scripts/agent_wire.py: Anthropic Messages SSE for Claude Code, Responses SSE for Codex). The
server answers the agent's main loop with a tool call first (Claude Code's `Write`, Codex's shell
tool) when the scenario asks for one, then with text once the tool result comes back; any other
request (background calls, count_tokens, HEAD /, GET /v1/models) gets a plausible answer.

Every request is stored whole: method, path, query, headers and JSON body, with only secrets
redacted (the client key, Authorization / x-api-key / cookies) and the run's private paths
replaced by /workspace (the working directory) and /home/agent (the home). The answer sent is
stored next to it (the SSE events as text), so a translator can be replayed on both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

import claude_code_support as cc  # noqa: E402
import codex_support as cx  # noqa: E402
from agent_sandbox import AgentRun  # noqa: E402
from agent_wire import (  # noqa: E402
    anthropic_message,
    anthropic_models,
    anthropic_stream,
    responses_stream,
)

SECRET_HEADERS = {"authorization", "x-api-key", "cookie", "proxy-authorization", "openai-api-key"}
REDACTED = "<redacted>"
WORKSPACE = "/workspace"
HOME = "/home/agent"
SHELL_TOOLS = ("exec_command", "shell", "local_shell", "shell_command")


@dataclass
class Exchange:
    request: dict[str, Any]
    response: dict[str, Any] = field(default_factory=dict)


Decide = Callable[[dict[str, Any], "Recorder"], tuple[int, dict[str, str], Any]]


class Recorder:
    """A catch-all aiohttp app on 127.0.0.1 that logs each request and answers via `decide`.

    `decide(entry, recorder)` returns (status, headers, body) where body is a dict (JSON), a list
    of SSE event bytes (streamed) or None (empty)."""

    def __init__(self, decide: Decide, cwd: Path) -> None:
        self.decide = decide
        self.cwd = cwd
        self.exchanges: list[Exchange] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        entry = {
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "headers": {
                k: (REDACTED if k.lower() in SECRET_HEADERS else v)
                for k, v in request.headers.items()
            },
            "body": body,
        }
        exchange = Exchange(entry)
        self.exchanges.append(exchange)
        status, headers, answer = self.decide(entry, self)
        if isinstance(answer, list):
            exchange.response = {
                "status": status,
                "content_type": "text/event-stream",
                "events": [e.decode() for e in answer],
            }
            response = web.StreamResponse(
                status=status,
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    **headers,
                },
            )
            await response.prepare(request)
            for event in answer:
                await response.write(event)
            await response.write_eof()
            return response
        exchange.response = {"status": status, "json": answer}
        if answer is None:
            return web.Response(status=status, headers=headers)
        return web.json_response(answer, status=status, headers=headers)

    async def __aenter__(self) -> Recorder:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _chars(value: Any) -> int:
    return len(json.dumps(value)) if value is not None else 0


# --- Claude Code ------------------------------------------------------------------------------
def _last_user_has_tool_result(body: dict[str, Any]) -> bool:
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    content = last.get("content") if isinstance(last, dict) else None
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


def claude_code_decider(write: dict[str, str] | None) -> Decide:
    """Answers for Claude Code; `write` ({"file_path", "content"}) makes the main loop's first
    turn a Write tool call (file_path relative to the working directory)."""

    def decide(entry: dict[str, Any], rec: Recorder) -> tuple[int, dict[str, str], Any]:
        method, path, body = entry["method"], entry["path"], entry["body"]
        if method == "HEAD" or (method == "GET" and path == "/"):
            return 200, {}, None
        if method == "GET" and path == "/v1/models":
            return 200, {}, anthropic_models(["glm-4.7", "claude-sonnet-4-5"])
        if path == "/v1/messages/count_tokens":
            return 200, {}, {"input_tokens": max(1, _chars(body) // 4)}
        if path != "/v1/messages" or not isinstance(body, dict):
            return (
                404,
                {},
                {
                    "type": "error",
                    "error": {"type": "not_found_error", "message": f"no route {path}"},
                },
            )
        model = str(body.get("model", "glm-4.7"))
        tools = [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
        blocks: list[dict[str, Any]]
        if write is not None and "Write" in tools and not _last_user_has_tool_result(body):
            tool_input = {
                "file_path": str(rec.cwd / write["file_path"]),
                "content": write["content"],
            }
            blocks = [
                {"type": "text", "text": "I'll write the file."},
                {
                    "type": "tool_use",
                    "id": "toolu_01RecordedWrite0000000001",
                    "name": "Write",
                    "input": tool_input,
                },
            ]
        elif write is not None and "Write" in tools:
            blocks = [{"type": "text", "text": f"Done: {write['file_path']} is written."}]
        elif "Write" in tools:
            blocks = [{"type": "text", "text": "Hello! How can I help you today?"}]
        else:
            blocks = [{"type": "text", "text": "Greeting"}]
        input_tokens = max(1, _chars(body) // 4)
        if body.get("stream"):
            return 200, {}, anthropic_stream(model, blocks, input_tokens, 12)
        return 200, {}, anthropic_message(model, blocks, input_tokens, 12)

    return decide


# --- Codex ------------------------------------------------------------------------------------
def _last_item_is_tool_output(body: dict[str, Any]) -> bool:
    items = body.get("input")
    if not isinstance(items, list) or not items:
        return False
    last = items[-1]
    return isinstance(last, dict) and str(last.get("type", "")).endswith("_call_output")


def _tool_names(body: dict[str, Any]) -> list[str]:
    return [
        str(t.get("name") or t.get("type")) for t in body.get("tools") or [] if isinstance(t, dict)
    ]


def codex_decider(command: str | None) -> Decide:
    """Answers for Codex; `command` makes the first turn a call to its shell tool."""

    def decide(entry: dict[str, Any], rec: Recorder) -> tuple[int, dict[str, str], Any]:
        method, path, body = entry["method"], entry["path"], entry["body"]
        if method == "GET" and path.endswith("/models"):
            return (
                200,
                {},
                {
                    "object": "list",
                    "data": [
                        {"id": cx.MODEL, "object": "model", "created": 0, "owned_by": "gateway"}
                    ],
                },
            )
        if path != "/v1/responses" or not isinstance(body, dict):
            return 404, {}, {"error": {"message": f"no route {path}", "type": "not_found"}}
        model = str(body.get("model", cx.MODEL))
        tools = _tool_names(body)
        shell = next((t for t in SHELL_TOOLS if t in tools), None)
        items: list[dict[str, Any]]
        if command is not None and shell and not _last_item_is_tool_output(body):
            args = (
                {"cmd": command}
                if shell == "exec_command"
                else {"command": ["bash", "-lc", command]}
            )
            items = [
                {
                    "type": "function_call",
                    "name": shell,
                    "arguments": json.dumps(args),
                    "call_id": "call_RecordedExec000000000001",
                }
            ]
        elif command is not None:
            items = [{"type": "message", "text": "The command ran and printed hello."}]
        else:
            items = [{"type": "message", "text": "Hello! How can I help you today?"}]
        input_tokens = max(1, _chars(body) // 4)
        return 200, {}, responses_stream(model, items, input_tokens, 12)

    return decide


# --- runs -------------------------------------------------------------------------------------
def scrub(value: Any, replacements: list[tuple[str, str]]) -> Any:
    text = json.dumps(value)
    for old, new in replacements:
        text = text.replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1])
    return json.loads(text)


def shown_env(env: dict[str, str], key: str) -> dict[str, str]:
    """The run's environment as stored: the key redacted, PATH (this machine's) left out."""
    return {
        k: (REDACTED if v == key else "<inherited>" if k == "PATH" else v) for k, v in env.items()
    }


def home_files(prepare: Callable[[Path], None]) -> dict[str, str]:
    """The files `prepare` writes into a fresh home, by their path under /home/agent."""
    with tempfile.TemporaryDirectory() as tmp:
        prepare(Path(tmp))
        return {
            f"{HOME}/{p.relative_to(tmp)}": p.read_text()
            for p in sorted(Path(tmp).rglob("*"))
            if p.is_file()
        }


def describe_run(run: AgentRun) -> dict[str, Any]:
    return {
        "returncode": run.returncode,
        "timed_out": run.timed_out,
        "stdout": run.stdout[-4000:],
        "stderr": run.stderr[-4000:],
        "blocked_requests": run.blocked,
    }


@asynccontextmanager
async def recording(label: str, decide: Decide) -> AsyncIterator[tuple[Recorder, Path]]:
    """A Recorder answering with `decide`, its agent's workspace (`rec.cwd`) inside a fresh run
    folder (yielded with it, where the agent's home goes too); removed afterwards."""
    print(f"recording {label} ...", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="agent-fixture-") as tmp:
        work = Path(tmp) / "run"
        cwd = work / "work"
        cwd.mkdir(parents=True)
        async with Recorder(decide, cwd) as rec:
            yield rec, work


def scrubbed_fixture(rec: Recorder, work: Path, client_key: str, **fields: Any) -> dict[str, Any]:
    """`fields` and the recorded exchanges, with the run's paths and client key scrubbed."""
    exchanges = [{"request": e.request, "response": e.response} for e in rec.exchanges]
    replacements = [
        (str(rec.cwd), WORKSPACE),
        (str(work / "home"), HOME),
        (str(work), "/run"),
        (client_key, REDACTED),
    ]
    scrubbed: dict[str, Any] = scrub({**fields, "exchanges": exchanges}, replacements)
    return scrubbed


async def record_claude_code(claude: Path) -> dict[str, Any]:
    hello = "Say hello in one short sentence."
    write_file = {"file_path": "hello.txt", "content": "hello\n"}
    scenarios: dict[str, tuple[str, dict[str, str] | None, str, dict[str, Any]]] = {
        "text": (hello, None, "a plain text answer, no tool", {}),
        "write_file": (
            "Create a file named hello.txt containing the word hello.",
            write_file,
            "a Write tool call, its tool_result, then the final text",
            {},
        ),
        "text_glm_model_x_api_key": (
            hello,
            None,
            "ANTHROPIC_MODEL=glm-4.7 (and the haiku tier) and the key as ANTHROPIC_API_KEY",
            {"model": "glm-4.7", "key_as": "x-api-key"},
        ),
        "write_file_default_traffic": (
            "Create a file named hello.txt containing the word hello.",
            write_file,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC unset: the extra calls of a default setup",
            {"essential_only": False},
        ),
    }
    out: dict[str, Any] = {}
    for name, (prompt, write, what, options) in scenarios.items():
        async with recording(f"claude_code/{name}", claude_code_decider(write)) as (rec, work):
            run = await cc.run_claude_code(claude, rec.url, prompt, work, timeout=120, **options)
            written_path = rec.cwd / "hello.txt"
            written = written_path.read_text() if written_path.exists() else None
            out[name] = scrubbed_fixture(
                rec,
                work,
                cc.CLIENT_KEY,
                what=what,
                prompt=prompt,
                options=options,
                **describe_run(run),
                file_written=written,
            )
    return out


async def record_codex(codex: Path) -> dict[str, Any]:
    scenarios = {
        "text": ("Say hello in one short sentence.", None, "a plain text answer, no tool"),
        "exec_command": (
            "Run `echo hello` in the shell and tell me what it printed.",
            "echo hello",
            "a shell tool call, its function_call_output, then the final text",
        ),
    }
    out: dict[str, Any] = {}
    for name, (prompt, command, what) in scenarios.items():
        async with recording(f"codex/{name}", codex_decider(command)) as (rec, work):
            run = await cx.run_codex(codex, rec.url + "/v1", prompt, work, timeout=120)
            out[name] = scrubbed_fixture(
                rec, work, cx.CLIENT_KEY, what=what, prompt=prompt, **describe_run(run)
            )
    return out


def write_fixture(path: Path, agent: str, version: str, **fields: Any) -> None:
    """Write one agent's fixture file: who, which version, how it was recorded, then `fields`."""
    how = "scripts/record_agent_fixtures.py (recording server on 127.0.0.1)"
    fixture = {"agent": agent, "version": version, "how": how, **fields}
    path.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {path}", file=sys.stderr)


def agent_binary(found: tuple[Path | None, str], name: str) -> Path | None:
    """The binary from a `find_*()` answer (binary, why); None, saying why, when there is none."""
    binary, why = found
    if binary is None:
        print(f"cannot record {name}: {why}", file=sys.stderr)
    return binary


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agent", choices=("claude_code", "codex", "both"), default="both")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "tests" / "fixtures")
    args = parser.parse_args()
    failed = False
    if args.agent in ("claude_code", "both"):
        claude = agent_binary(cc.find_claude_code(), "Claude Code")
        failed |= claude is None
        if claude is not None:
            env = cc.claude_code_env(Path(HOME), "http://127.0.0.1:PORT", "http://127.0.0.1:PROXY")
            write_fixture(
                args.out_dir / f"claude_code_{cc.CLAUDE_CODE_VERSION}.json",
                "claude-code",
                cc.CLAUDE_CODE_VERSION,
                argv=["claude", "-p", "<prompt>", "--max-turns", "4", "--allowedTools", "Write"],
                env=shown_env(env, cc.CLIENT_KEY),
                home_files=home_files(cc.prepare_home),
                scenarios=await record_claude_code(claude),
            )
    if args.agent in ("codex", "both"):
        codex = agent_binary(cx.find_codex(), "Codex")
        failed |= codex is None
        if codex is not None:
            write_fixture(
                args.out_dir / f"codex_{cx.CODEX_VERSION}.json",
                "codex",
                cx.CODEX_VERSION,
                argv=[
                    "codex",
                    "exec",
                    "--skip-git-repo-check",
                    "--dangerously-bypass-approvals-and-sandbox",
                    "--color",
                    "never",
                    "-C",
                    WORKSPACE,
                    "<prompt>",
                ],
                config_toml=cx.codex_config("http://127.0.0.1:PORT/v1"),
                env=shown_env(cx.codex_env(Path(HOME), "http://127.0.0.1:PROXY"), cx.CLIENT_KEY),
                scenarios=await record_codex(codex),
            )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
