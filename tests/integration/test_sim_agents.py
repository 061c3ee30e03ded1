"""The simulators' agent loop: a recognised coding agent gets its own tool call, then text.

The tool lists are the ones the real CLIs sent (tests/fixtures), turned into chat tools as a
door would: Claude Code 2.1.332, Codex 0.171.0 and Cline 3.0.65.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import orjson
import pytest
from paths import FIXTURES
from support import SSEReply, post_stream

from gateway.dev.sim import AgentLoop, Profile, ScriptedAnswer, SimOptions, running_sim
from gateway.dev.sim.agents import after_tool_result, agent_turn, detect_agent


def _function(name: str, description: str = "", parameters: Any = None) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters or {}},
    }


def claude_code_tools() -> list[dict[str, Any]]:
    fixture = json.loads((FIXTURES / "claude_code_2.1.332.json").read_text())
    body = fixture["scenarios"]["write_file"]["exchanges"][0]["request"]["body"]
    return [_function(t["name"], t["description"], t["input_schema"]) for t in body["tools"]]


def codex_tools() -> list[dict[str, Any]]:
    fixture = json.loads((FIXTURES / "codex_0.171.0.json").read_text())
    body = fixture["scenarios"]["exec_command"]["exchanges"][0]["request"]["body"]
    return [
        _function(t["name"], t["description"], t["parameters"])
        for t in body["tools"]
        if t["type"] == "function"
    ]


def cline_tools() -> list[dict[str, Any]]:
    fixture = json.loads((FIXTURES / "cline_3.0.65.json").read_text())
    names = fixture["scenarios"]["good_tool_call"]["requests"][0]["tools"]
    return [_function(name) for name in names]


LOOP = AgentLoop(
    write_path="/workspace/hello.txt", write_content="hello\n", command="echo hello",
    final_text="All done.",
)  # fmt: skip


def first_turn(tools: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": "m",
        "stream": True,
        "tools": tools,
        "messages": [
            {"role": "system", "content": "You are an agent."},
            {"role": "user", "content": [{"type": "text", "text": "make hello.txt"}]},
            {"role": "system", "content": "# Environment"},
        ],
    }


def second_turn(first: dict[str, Any], name: str, arguments: str) -> dict[str, Any]:
    call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}
    return {
        **first,
        "messages": [
            *first["messages"],
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
            {"role": "user", "content": "<system-reminder>keep going</system-reminder>"},
        ],
    }


def tool_call(reply: SSEReply) -> tuple[str, dict[str, Any], str | None]:
    """(name, parsed arguments, finish_reason) of the streamed answer's single tool call."""
    name, arguments, finish = "", "", None
    for chunk in reply.chunks:
        for choice in chunk.get("choices") or []:
            finish = choice.get("finish_reason") or finish
            for call in choice.get("delta", {}).get("tool_calls") or []:
                name += call.get("function", {}).get("name") or ""
                arguments += call.get("function", {}).get("arguments") or ""
    return name, (json.loads(arguments) if arguments else {}), finish


def test_agents_are_told_apart_by_their_recorded_tools() -> None:
    assert detect_agent({"tools": claude_code_tools()}) == "claude_code"
    assert detect_agent({"tools": codex_tools()}) == "codex"
    assert detect_agent({"tools": cline_tools()}) == "cline"
    assert detect_agent({"tools": [_function("Write"), _function("get_weather")]}) is None
    assert detect_agent({"messages": []}) is None
    assert detect_agent({"tools": "junk"}) is None


def test_a_tool_result_followed_by_reminders_still_counts_as_after_the_tool() -> None:
    assert after_tool_result([{"role": "tool"}, {"role": "user"}, {"role": "system"}])
    assert not after_tool_result([{"role": "tool"}, {"role": "assistant"}, {"role": "user"}])
    assert not after_tool_result([{"role": "user"}, "junk", None])


@pytest.mark.parametrize(
    ("tools", "name", "arguments"),
    [
        (claude_code_tools, "Write", {"file_path": "/workspace/hello.txt", "content": "hello\n"}),
        (codex_tools, "exec_command", {"cmd": "echo hello"}),
        (cline_tools, "run_commands", {"commands": ["echo hello"]}),
    ],
    ids=["claude_code", "codex", "cline"],
)
@pytest.mark.parametrize("profile", ["llamacpp", "cerebras"])
async def test_agent_gets_its_tool_call_then_the_final_text(
    tools: Any, name: str, arguments: dict[str, Any], profile: Profile
) -> None:
    async with (
        running_sim(SimOptions(profile=profile, agent_loop=LOOP)) as sim,
        aiohttp.ClientSession() as session,
    ):
        first = first_turn(tools())
        reply = await post_stream(session, sim.url, first)
        assert reply.status == 200
        got_name, got_args, finish = tool_call(reply)
        assert (got_name, got_args, finish) == (name, arguments, "tool_calls")
        second = second_turn(first, name, orjson.dumps(arguments).decode())
        reply = await post_stream(session, sim.url, second)
        assert reply.text == "All done."
        assert tool_call(reply) == ("", {}, "stop")


async def test_other_requests_keep_the_prompt_script() -> None:
    options = SimOptions(
        profile="llamacpp", agent_loop=LOOP, script={"*": ScriptedAnswer(content="Scripted")}
    )
    async with running_sim(options) as sim, aiohttp.ClientSession() as session:
        plain = {"stream": True, "messages": [{"role": "user", "content": "hi"}]}
        assert (await post_stream(session, sim.url, plain)).text == "Scripted"
        # An agent the loop has no action for falls back to the script too.
        sim.options.agent_loop = AgentLoop(command="echo hello")
        reply = await post_stream(session, sim.url, first_turn(claude_code_tools()))
        assert reply.text == "Scripted"


def test_agent_turn_without_an_action_is_none() -> None:
    assert agent_turn(first_turn(codex_tools()), AgentLoop(write_path="/x")) is None


async def test_agent_loop_is_set_and_checked_over_http() -> None:
    async with running_sim(SimOptions(profile="llamacpp")) as sim:
        async with aiohttp.ClientSession() as session:
            root = sim.url.removesuffix("/v1")
            good = {"agent_loop": {"command": "ls", "final_text": "Listed."}}
            async with session.post(root + "/_sim/options", json=good) as resp:
                assert resp.status == 200, await resp.text()
            assert sim.options.agent_loop == AgentLoop(command="ls", final_text="Listed.")
            for bad in ({"agent_loop": {"cmd": "ls"}}, {"agent_loop": {"command": 3}}):
                async with session.post(root + "/_sim/options", json=bad) as resp:
                    assert resp.status == 400
                    assert "agent_loop" in (await resp.json())["error"]
            async with session.post(root + "/_sim/options", json={"agent_loop": None}) as resp:
                assert resp.status == 200
            assert sim.options.agent_loop is None
