"""The Messages door's decoder on the real Claude Code 2.1.332 requests (tests/fixtures/
claude_code_2.1.332.json, recorded on 127.0.0.1 by scripts/record_agent_fixtures.py), without
sockets; test_anthropic_recorded_replay.py sends them through a gateway."""

from __future__ import annotations

import json
from typing import Any

import pytest
from paths import FIXTURES

from gateway.doors.anthropic.decode import DecodeOptions
from gateway.doors.anthropic.door import MessagesDoor

FIXTURE = json.loads((FIXTURES / "claude_code_2.1.332.json").read_text())


REQUESTS = [
    (f"{name}[{i}]", exchange["request"])
    for name, scenario in FIXTURE["scenarios"].items()
    for i, exchange in enumerate(scenario["exchanges"])
]


DOOR = MessagesDoor(DecodeOptions())


def first_request(scenario: str) -> dict[str, Any]:
    return FIXTURE["scenarios"][scenario]["exchanges"][0]["request"]


@pytest.mark.parametrize(("name", "request_"), REQUESTS, ids=[n for n, _ in REQUESTS])
def test_recorded_request_decodes(name: str, request_: dict[str, Any]) -> None:
    body, headers = request_["body"], request_["headers"]
    decoded = DOOR.decode(json.loads(json.dumps(body)), headers)
    chat = decoded.body
    assert decoded.stream is True and decoded.model == body["model"]
    # adaptive thinking, display omitted: the gateway's control decides, blocks without text
    assert body["thinking"]["type"] == "adaptive" and decoded.thinking is None
    assert decoded.context.thinking_shown is False
    session = headers["X-Claude-Code-Session-Id"]
    assert json.loads(body["metadata"]["user_id"])["session_id"] == session
    assert decoded.conversation_id == "claude-code:" + session
    system = chat["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("You are a Claude agent")
    assert "x-anthropic-billing-header" not in json.dumps(chat)
    assert [t["function"]["name"] for t in chat["tools"]] == [t["name"] for t in body["tools"]]
    for key in ("thinking", "metadata", "context_management", "output_config", "system"):
        assert key not in chat
    # the recorded mid-conversation `role: system` turn (the environment) is user text
    roles = [m["role"] for m in chat["messages"]]
    assert roles.count("system") == 1
    environment = [m for m in body["messages"] if m["role"] == "system"]
    assert environment
    user_text = json.dumps(chat["messages"][1]["content"])
    assert (
        json.dumps(
            environment[0]["content"]
            if isinstance(environment[0]["content"], str)
            else environment[0]["content"][0]["text"]
        )[1:60]
        in user_text
    )
    if any(m["role"] == "assistant" for m in body["messages"]):
        assert roles[-2:] == ["assistant", "tool"]
        call = chat["messages"][-2]["tool_calls"][0]
        assert chat["messages"][-1]["tool_call_id"] == call["id"]
        assert json.loads(call["function"]["arguments"])["file_path"] == "/workspace/hello.txt"


def test_recorded_prompts_share_their_system_prompt_once_the_billing_line_is_dropped() -> None:
    text, write = first_request("text")["body"], first_request("write_file")["body"]
    lines = [b["system"][0]["text"] for b in (text, write)]
    assert lines[0] != lines[1] and all(s.startswith("x-anthropic-billing-header") for s in lines)
    kept = MessagesDoor(DecodeOptions(strip_billing_header=False))
    raw = [
        kept.decode(json.loads(json.dumps(b)), {}).body["messages"][0]["content"]
        for b in (text, write)
    ]
    differ_at = next(i for i, (a, b) in enumerate(zip(*raw, strict=False)) if a != b)
    assert differ_at < 60  # within the billing line
    stripped = [
        DOOR.decode(json.loads(json.dumps(b)), {}).body["messages"][0]["content"]
        for b in (text, write)
    ]
    # The two tasks ran in different directories (named in the memory section), so the prompts
    # part there; up to it, thousands of characters are shared instead of 47.
    shared = next(i for i, (a, b) in enumerate(zip(*stripped, strict=False)) if a != b)
    assert shared > 3000
    assert "-run-work/memory/" in stripped[0][shared - 40 : shared + 40]
