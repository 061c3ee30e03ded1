"""Scripted agent loops: answer a real coding agent's turn with its own tool, then with text.

A coding agent is recognised by the function tools of its request (after a gateway door turned
an Anthropic Messages or Responses request into a chat request, the tool names stay byte-exact):

- Claude Code: `Write`, `Edit`, `Read` and `Bash`; its turn gets a `Write` call
  (`file_path`, `content`);
- Codex: `exec_command` (0.171.0; `shell` in older releases); its turn gets that call with
  `cmd` (`shell`: `command` as an argv);
- Cline 3.x: `read_files`, `run_commands`, `editor`; its turn gets `run_commands`.

The first turn of a task gets the tool call; once the tool's result came back (the latest
assistant-or-tool message is a `role: "tool"` message) the turn gets `final_text`, which ends
the agent's task. A request from no known agent, or from an agent the loop has no action for,
is answered as if no loop were set (the prompt script, or generated words).
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from gateway.dev.sim.options import AgentLoop, ScriptedAnswer, ToolCallSpec

Agent = Literal["claude_code", "codex", "cline"]

_SIGNATURES: tuple[tuple[Agent, frozenset[str]], ...] = (
    ("claude_code", frozenset({"Write", "Edit", "Read", "Bash"})),
    ("codex", frozenset({"exec_command", "write_stdin"})),
    ("codex", frozenset({"shell"})),
    ("cline", frozenset({"read_files", "run_commands", "editor"})),
)


def tool_names(body: dict[str, Any]) -> set[str]:
    """Names of the request's function tools."""
    names: set[str] = set()
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str):
            names.add(name)
    return names


def detect_agent(body: dict[str, Any]) -> Agent | None:
    """The coding agent whose tool set the request carries, else None."""
    names = tool_names(body)
    for agent, signature in _SIGNATURES:
        if signature <= names:
            return agent
    return None


def after_tool_result(messages: list[Any]) -> bool:
    """True when the latest assistant-or-tool message is a tool result (user and system
    messages after it, such as reminders, do not count)."""
    for message in reversed(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "tool":
            return True
        if role == "assistant":
            return False
    return False


def _call(name: str, arguments: dict[str, Any]) -> ScriptedAnswer:
    return ScriptedAnswer(tool_calls=[ToolCallSpec(name, orjson.dumps(arguments).decode())])


def agent_turn(body: dict[str, Any], loop: AgentLoop) -> ScriptedAnswer | None:
    """The scripted answer for this request under `loop`, or None (not an agent turn)."""
    agent = detect_agent(body)
    if agent is None:
        return None
    messages = body.get("messages")
    if after_tool_result(messages if isinstance(messages, list) else []):
        return ScriptedAnswer(content=loop.final_text)
    names = tool_names(body)
    if agent == "claude_code" and loop.write_path is not None:
        return _call("Write", {"file_path": loop.write_path, "content": loop.write_content})
    if agent == "codex" and loop.command is not None:
        if "exec_command" in names:
            return _call("exec_command", {"cmd": loop.command})
        return _call("shell", {"command": ["bash", "-lc", loop.command]})
    if agent == "cline" and loop.command is not None:
        return _call("run_commands", {"commands": [loop.command]})
    return None


def agent_loop_from_json(value: Any) -> AgentLoop:
    """Parse {"write_path", "write_content", "command", "final_text"} (all optional)."""
    if not isinstance(value, dict):
        raise ValueError("agent_loop must be a JSON object")
    unknown = set(value) - {"write_path", "write_content", "command", "final_text"}
    if unknown:
        raise ValueError(f"unknown agent_loop key(s): {sorted(unknown)}")
    loop = AgentLoop()
    for key, item in value.items():
        if item is not None and not isinstance(item, str):
            raise ValueError(f"agent_loop.{key} must be a string")
        if item is not None:
            setattr(loop, key, item)
    return loop
