"""Codex CLI 0.171.0 requests to `POST /v1/responses`, as the wire contract describes them
(docs: ../shared wire-contract "Codex CLI"): the first turn of `codex exec` and the turn after an
`exec_command` call. The shapes (item types, roles, tool list, flags, headers) are Codex's; the
long texts are shortened."""

from __future__ import annotations

from typing import Any

import orjson

THREAD = "0199a6c2-5b1e-7a40-9d52-3f0f1c0ffee0"
HEADERS = {"session-id": THREAD, "thread-id": THREAD, "originator": "codex_exec"}

EXEC_COMMAND = {
    "type": "function",
    "name": "exec_command",
    "description": "Runs a command in a PTY, returning output or a session ID for ongoing use.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {
            "cmd": {"type": "string", "description": "Shell command to execute."},
            "workdir": {"type": "string"},
            "yield_time_ms": {"type": "number"},
        },
        "required": ["cmd"],
        "additionalProperties": False,
    },
}
WRITE_STDIN = {
    "type": "function",
    "name": "write_stdin",
    "description": "Writes characters to an existing unified exec session.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {"session_id": {"type": "number"}, "chars": {"type": "string"}},
        "required": ["session_id"],
        "additionalProperties": False,
    },
}
VIEW_IMAGE = {
    "type": "function",
    "name": "view_image",
    "description": "Attach a local image to the conversation context.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {"path": {"type": "string"}},
        "required": ["path"],
        "additionalProperties": False,
    },
}
NAMESPACE = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Spawn and manage sub-agents.",
    "tools": [
        {
            "type": "function",
            "name": "spawn_agent",
            "strict": False,
            "parameters": {"type": "object", "properties": {"message": {"type": "string"}}},
        }
    ],
}
WEB_SEARCH = {"type": "web_search", "external_web_access": False}

INSTRUCTIONS = "You are Codex, a coding agent based on GPT-5. ..."
DEVELOPER = (
    "<permissions instructions>Filesystem sandboxing: danger-full-access.</permissions "
    "instructions>"
)
ENVIRONMENT = "<environment_context>\n  <cwd>/tmp/work</cwd>\n</environment_context>"
PROMPT = "Create hello.txt containing hi, using exec_command."


def first_turn() -> dict[str, Any]:
    return {
        "model": "glm-4.7",
        "instructions": INSTRUCTIONS,
        "input": [
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": DEVELOPER}],
            },
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": ENVIRONMENT}],
            },
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": PROMPT}],
            },
        ],
        "tools": [EXEC_COMMAND, WRITE_STDIN, VIEW_IMAGE, NAMESPACE, WEB_SEARCH],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": THREAD,
    }


CALL_ID = "call_Zx81"
ARGUMENTS = '{"cmd":"printf hi > hello.txt"}'


def second_turn() -> dict[str, Any]:
    body = first_turn()
    body["input"] = [
        *body["input"],
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [],
            "content": [{"type": "reasoning_text", "text": "I should run printf."}],
            "encrypted_content": None,
        },
        {
            "type": "function_call",
            "id": "fc_1",
            "name": "exec_command",
            "arguments": ARGUMENTS,
            "call_id": CALL_ID,
        },
        {
            "type": "function_call_output",
            "call_id": CALL_ID,
            "output": "Chunk ID: 1\nWall time: 0.0 seconds\nProcess exited with code 0\nOutput:\n",
        },
    ]
    return body


def parse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Split an SSE body into (event name, data) pairs; each frame must be exactly
    `event: <type>\\ndata: <json>` with the type repeated in the data, or a `: ping` comment
    (the keepalive during a long wait), which is skipped."""
    assert raw.endswith(b"\n\n")
    events = []
    for frame in raw[:-2].split(b"\n\n"):
        if frame == b": ping":
            continue
        head, _, data = frame.partition(b"\n")
        assert head.startswith(b"event: "), frame
        assert data.startswith(b"data: "), frame
        name = head[len(b"event: ") :].decode()
        payload = orjson.loads(data[len(b"data: ") :])
        assert payload["type"] == name
        events.append((name, payload))
    return events
