"""The recorded Claude Code 2.1.332 and Codex 0.171.0 requests, replayed through the doors.

Every request of tests/fixtures/claude_code_2.1.332.json and codex_0.171.0.json is sent to the
gateway as recorded (path, query, headers, body; the redacted key replaced by a test key) with
the simulators scripting the agent loop (gateway.dev.sim.agents). Each must get a well-formed
stream in the door's own format: the first turn the agent's tool call, the turn carrying the tool
result the final text. Skips while the gateway has no such door (it answers 404).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from agent_sandbox import require_door
from paths import FIXTURES

from gateway.dev.sim import AgentLoop, SimServer

CLAUDE_CODE = json.loads((FIXTURES / "claude_code_2.1.332.json").read_text())


CODEX = json.loads((FIXTURES / "codex_0.171.0.json").read_text())


DROPPED_HEADERS = {"host", "content-length", "accept-encoding", "connection"}


LOOP = AgentLoop(
    write_path="/workspace/hello.txt",
    write_content="hello\n",
    command="echo hello",
    final_text="Replayed.",
)


def exchanges(fixture: dict[str, Any]) -> list[Any]:
    """(scenario, turn index, recorded request) of every exchange, with readable test ids."""
    return [
        pytest.param(name, index, exchange["request"], id=f"{name}-{index}")
        for name, scenario in fixture["scenarios"].items()
        for index, exchange in enumerate(scenario["exchanges"])
    ]


def replay_headers(request: dict[str, Any]) -> dict[str, str]:
    headers = {}
    for key, value in request["headers"].items():
        if key.lower() in DROPPED_HEADERS:
            continue
        if value == "<redacted>":
            value = "Bearer sk-test" if key.lower() == "authorization" else "sk-test"
        headers[key] = value
    return headers


def sse_events(raw: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    """(event name, data) of each SSE event; every event ends with a blank line."""
    text = raw.decode()
    assert text.endswith("\n\n"), text[-200:]
    events = []
    for block in text[:-2].split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


async def send(
    client: aiohttp.ClientSession, root: str, request: dict[str, Any]
) -> list[tuple[str | None, dict[str, Any]]]:
    url = root + request["path"] + (f"?{request['query']}" if request["query"] else "")
    async with client.post(url, json=request["body"], headers=replay_headers(request)) as resp:
        raw = await resp.read()
        assert resp.status == 200, raw[:2000]
        assert resp.content_type == "text/event-stream"
    return sse_events(raw)


Events = list[tuple[str | None, dict[str, Any]]]


@pytest.fixture
def replay(
    make_gateway: Any,
    client: aiohttp.ClientSession,
    local_sim: SimServer,
    cerebras_sim: SimServer,
) -> Callable[[str, dict[str, Any]], Awaitable[Events]]:
    """`replay(door, request)`: the request replayed through `door` of an always_local gateway
    whose upstreams play LOOP; skips while the gateway has no such door."""

    async def run(door: str, request: dict[str, Any]) -> Events:
        gw = await make_gateway("always_local")
        await require_door(client, gw.root, door)
        local_sim.options.agent_loop = cerebras_sim.options.agent_loop = LOOP
        return await send(client, gw.root, request)

    return run


@pytest.mark.parametrize(("scenario", "index", "request_"), exchanges(CLAUDE_CODE))
async def test_claude_code_requests_replayed_through_the_messages_door(
    scenario: str,
    index: int,
    request_: dict[str, Any],
    replay: Callable[[str, dict[str, Any]], Awaitable[Events]],
) -> None:
    events = await replay("/v1/messages", request_)
    names = [name for name, _ in events]
    assert all(name == data["type"] for name, data in events), names
    assert names[0] == "message_start" and names[-1] == "message_stop", names
    assert events[0][1]["message"]["usage"]["input_tokens"] > 0
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    stop = next(d["delta"]["stop_reason"] for n, d in events if n == "message_delta")
    # Every first turn carries Claude Code's tools and no tool result: the loop's Write call.
    if index == 0:
        assert [b["name"] for b in starts if b["type"] == "tool_use"] == ["Write"]
        arguments = "".join(
            d["delta"]["partial_json"]
            for n, d in events
            if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
        )
        assert json.loads(arguments) == {"file_path": LOOP.write_path, "content": "hello\n"}
        assert stop == "tool_use"
    else:
        text = "".join(
            d["delta"]["text"]
            for n, d in events
            if n == "content_block_delta" and d["delta"]["type"] == "text_delta"
        )
        assert (stop, text) == ("end_turn", "Replayed.")


@pytest.mark.parametrize(("scenario", "index", "request_"), exchanges(CODEX))
async def test_codex_requests_replayed_through_the_responses_door(
    scenario: str,
    index: int,
    request_: dict[str, Any],
    replay: Callable[[str, dict[str, Any]], Awaitable[Events]],
) -> None:
    events = await replay("/v1/responses", request_)
    kinds = [data["type"] for _, data in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
    done = [d["item"] for _, d in events if d["type"] == "response.output_item.done"]
    calls = [item for item in done if item["type"] == "function_call"]
    if index == 0:
        assert [c["name"] for c in calls] == ["exec_command"]
        assert json.loads(calls[0]["arguments"]) == {"cmd": "echo hello"}
    else:
        assert calls == []
        texts = [
            part["text"]
            for item in done
            if item["type"] == "message"
            for part in item["content"]
            if part["type"] == "output_text"
        ]
        assert texts == ["Replayed."]
    assert events[-1][1]["response"]["usage"]["input_tokens"] > 0
