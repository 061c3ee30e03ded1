"""The recorded Claude Code and Codex transcripts hold what the door tests replay.

Pins the facts of tests/fixtures/claude_code_2.1.332.json and codex_0.171.0.json that the
Anthropic Messages and Responses doors rely on (recorded by scripts/record_agent_fixtures.py),
and that no secret or private path of the recording run is left in them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from paths import FIXTURES

CLAUDE_CODE = json.loads((FIXTURES / "claude_code_2.1.332.json").read_text())


CODEX = json.loads((FIXTURES / "codex_0.171.0.json").read_text())


def requests(fixture: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    return [e["request"] for e in fixture["scenarios"][scenario]["exchanges"]]


@pytest.mark.parametrize("name", ["claude_code_2.1.332.json", "codex_0.171.0.json"])
def test_no_secret_or_private_path_is_recorded(name: str) -> None:
    text = (FIXTURES / name).read_text()
    assert "sk-local-gateway" not in text
    assert "/tmp/" not in text
    for scenario in json.loads(text)["scenarios"].values():
        for exchange in scenario["exchanges"]:
            headers = {k.lower(): v for k, v in exchange["request"]["headers"].items()}
            for secret in ("authorization", "x-api-key"):
                assert headers.get(secret, "<redacted>") == "<redacted>"


def test_every_claude_code_run_completed_and_stayed_on_loopback() -> None:
    for name, scenario in CLAUDE_CODE["scenarios"].items():
        assert scenario["returncode"] == 0, name
        if scenario["options"].get("essential_only", True):
            assert scenario["blocked_requests"] == [], name
    assert CLAUDE_CODE["scenarios"]["write_file"]["file_written"] == "hello\n"


def test_claude_code_request_shape() -> None:
    for name in CLAUDE_CODE["scenarios"]:
        for request in requests(CLAUDE_CODE, name):
            assert (request["method"], request["path"], request["query"]) == (
                "POST",
                "/v1/messages",
                "beta=true",
            )
            headers = request["headers"]
            body = request["body"]
            assert headers["anthropic-version"] == "2023-06-01"
            assert headers["anthropic-beta"].startswith("claude-code-20250219,")
            session = json.loads(body["metadata"]["user_id"])["session_id"]
            assert headers["X-Claude-Code-Session-Id"] == session
            assert body["stream"] is True
            assert body["thinking"] == {"type": "adaptive", "display": "omitted"}
            assert body["system"][0]["text"].startswith("x-anthropic-billing-header: cc_version=")
            assert "Write" in [t["name"] for t in body["tools"]]
            # A role "system" message inside `messages`, right after the first user turn.
            assert [m["role"] for m in body["messages"][:2]] == ["user", "system"]


def test_claude_code_sends_the_tool_result_back() -> None:
    first, second = requests(CLAUDE_CODE, "write_file")
    call = second["body"]["messages"][-2]["content"][-1]
    result = second["body"]["messages"][-1]["content"][0]
    assert call["type"] == "tool_use" and call["name"] == "Write"
    assert call["input"] == {"file_path": "/workspace/hello.txt", "content": "hello\n"}
    assert result["type"] == "tool_result" and result["tool_use_id"] == call["id"]
    # The mid-conversation system message is a block list on the first turn, a string later.
    assert isinstance(first["body"]["messages"][1]["content"], list)
    assert isinstance(second["body"]["messages"][1]["content"], str)


def test_claude_code_model_and_key_settings() -> None:
    (request,) = requests(CLAUDE_CODE, "text_glm_model_x_api_key")
    assert request["body"]["model"] == "glm-4.7"
    assert request["body"]["max_tokens"] == 32000
    assert "x-api-key" in request["headers"] and "Authorization" not in request["headers"]
    (default,) = requests(CLAUDE_CODE, "text")
    assert default["body"]["model"].startswith("claude-")
    assert "Authorization" in default["headers"]


def test_codex_request_shape_and_tool_round_trip() -> None:
    for name, scenario in CODEX["scenarios"].items():
        assert scenario["returncode"] == 0 and scenario["blocked_requests"] == [], name
    first, second = requests(CODEX, "exec_command")
    for request in (first, second):
        assert (request["method"], request["path"]) == ("POST", "/v1/responses")
        body = request["body"]
        assert body["stream"] is True and body["store"] is False
        assert body["prompt_cache_key"] == request["headers"]["session-id"]
        assert "instructions" not in body
        kinds = {t["type"] for t in body["tools"]}
        assert kinds == {"function", "namespace", "web_search"}
        assert [i["role"] for i in body["input"][:4]] == ["developer", "developer", "user", "user"]
    call, output = second["body"]["input"][-2:]
    assert call["type"] == "function_call" and call["name"] == "exec_command"
    assert json.loads(call["arguments"]) == {"cmd": "echo hello"}
    assert output["type"] == "function_call_output" and output["call_id"] == call["call_id"]
    assert "hello" in output["output"]
