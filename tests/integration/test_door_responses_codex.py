"""The recorded Codex CLI 0.171.0 requests (tests/fixtures/codex_0.171.0.json, recorded by
scripts/record_agent_fixtures.py) through the Responses door: decoded without a socket, and
replayed through the gateway on loopback against the simulators, scripted to answer as the
recording server did. The events the gateway sends are checked against the stream Codex
accepted in the recording, event type by event type."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from paths import FIXTURES
from responses_transcripts import parse_events

from gateway.dev.sim import ScriptedAnswer, ToolCallSpec
from gateway.doors.responses.decode import decode
from gateway.wire.validation import validate_chat_request

CODEX = json.loads((FIXTURES / "codex_0.171.0.json").read_text())


FUNCTIONS = [
    "exec_command",
    "write_stdin",
    "request_user_input",
    "view_image",
    "get_goal",
    "create_goal",
    "update_goal",
]


def exchanges(scenario: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = CODEX["scenarios"][scenario]["exchanges"]
    return result


def _text(item: dict[str, Any]) -> str:
    """A message item's text parts, one per line (as the door joins them)."""
    return "\n".join(part["text"] for part in item["content"])


def recorded_events(exchange: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return parse_events(b"".join(e.encode() for e in exchange["response"]["events"]))


@pytest.mark.parametrize(
    ("scenario", "turn"), [("text", 0), ("exec_command", 0), ("exec_command", 1)]
)
def test_recorded_requests_decode(scenario: str, turn: int) -> None:
    request = exchanges(scenario)[turn]["request"]
    body = request["body"]
    decoded = decode(body, {k.lower(): v for k, v in request["headers"].items()})
    chat = decoded.body
    validate_chat_request(chat, max_messages=1000)
    # Codex 0.171.0 sends no `instructions`: its base prompt is the first developer message.
    assert "instructions" not in body
    developer = [i for i in body["input"] if i.get("role") == "developer"]
    system = chat["messages"][0]
    assert system["role"] == "system"
    assert system["content"] == "\n\n".join(_text(i) for i in developer)
    assert [m["role"] for m in chat["messages"][:2]] == ["system", "user"]
    users = [i for i in body["input"] if i.get("role") == "user"]
    assert chat["messages"][1]["content"] == "\n\n".join(_text(i) for i in users)
    assert [t["function"]["name"] for t in chat["tools"]] == FUNCTIONS
    assert decoded.context.dropped_tools == ["namespace", "web_search"]
    assert decoded.conversation_id == request["headers"]["session-id"] == body["prompt_cache_key"]
    assert decoded.thinking is None
    assert (chat["tool_choice"], chat["parallel_tool_calls"]) == ("auto", True)
    if turn == 1:
        call = next(i for i in body["input"] if i["type"] == "function_call")
        output = next(i for i in body["input"] if i["type"] == "function_call_output")
        assert chat["messages"][2:] == [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call["call_id"],
                        "type": "function",
                        "function": {"name": "exec_command", "arguments": call["arguments"]},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call["call_id"], "content": output["output"]},
        ]


def _collapse(names: list[str]) -> list[str]:
    return [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]


async def _replay(gw: Any, client: Any, exchange: dict[str, Any]) -> list[tuple[str, Any]]:
    request = exchange["request"]
    headers = {
        k: v
        for k, v in request["headers"].items()
        if k.lower() not in ("host", "content-length", "authorization", "accept-encoding")
    }
    async with client.post(
        gw.url + "/responses", data=orjson.dumps(request["body"]), headers=headers
    ) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        return parse_events(await resp.read())


async def test_recorded_exec_command_turns_replayed(make_gateway, client, local_sim):
    """The recording server's answers replayed by the simulator: a tool call, then text. The
    gateway's events have the recorded sequence of types (runs of deltas collapsed), and the
    items Codex acts on are equal in what Codex reads."""
    first, second = exchanges("exec_command")
    recorded = recorded_events(first)
    call = recorded[-2][1]["item"]
    local_sim.options.script = {
        "*": ScriptedAnswer(
            tool_calls=[ToolCallSpec(call["name"], call["arguments"], id=call["call_id"])]
        )
    }
    gw = await make_gateway("always_local")
    events = await _replay(gw, client, first)
    assert _collapse([n for n, _ in events]) == _collapse([n for n, _ in recorded])
    item = events[-2][1]["item"]
    assert {k: item[k] for k in ("type", "call_id", "name", "arguments", "status")} == {
        k: call[k] for k in ("type", "call_id", "name", "arguments", "status")
    }
    sent = local_sim.requests[-1].body
    assert [t["function"]["name"] for t in sent["tools"]] == FUNCTIONS

    recorded = recorded_events(second)
    text = recorded[-1][1]["response"]["output"][-1]["content"][0]["text"]
    local_sim.options.script = {"*": ScriptedAnswer(content=text)}
    events = await _replay(gw, client, second)
    assert _collapse([n for n, _ in events]) == _collapse([n for n, _ in recorded])
    final = events[-1][1]["response"]
    assert final["output"][-1]["content"][0]["text"] == text
    assert set(final["usage"]) >= {"input_tokens", "output_tokens", "total_tokens"}
    messages = local_sim.requests[-1].body["messages"]
    assert messages[-1]["role"] == "tool" and messages[-1]["tool_call_id"] == call["call_id"]
