"""The official openai Python client reads the gateway's stream and assembles it correctly."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai import APIStatusError, AsyncOpenAI

from gateway.dev.sim import ScriptedAnswer, ToolCallSpec

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
        },
    }
]


def sdk(gw: Any) -> AsyncOpenAI:
    """The official client on the gateway `gw` (any key; no retries, so errors show)."""
    return AsyncOpenAI(base_url=gw.url, api_key="anything", max_retries=0)


@pytest.mark.parametrize("strategy", ["always_local", "always_cerebras"])
async def test_stream_text_reasoning_usage(make_gateway, local_sim, cerebras_sim, strategy):
    for sim in (local_sim, cerebras_sim):
        sim.options.script = {
            "Why?": ScriptedAnswer(content="Because it is so.", reasoning="Let me think.")
        }
    gw = await make_gateway(strategy)
    client = sdk(gw)
    stream = await client.chat.completions.create(
        model="glm-token-saver",
        messages=[{"role": "user", "content": "Why?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, reasoning, usages, finish = "", "", [], []
    async for chunk in stream:
        if chunk.usage is not None:
            usages.append(chunk.usage)
        for choice in chunk.choices:
            text += choice.delta.content or ""
            reasoning += getattr(choice.delta, "reasoning_content", None) or ""
            if choice.finish_reason:
                finish.append(choice.finish_reason)
    await client.close()
    assert text == "Because it is so."
    assert reasoning == "Let me think."
    assert finish == ["stop"]
    assert len(usages) == 1
    sim = local_sim if strategy == "always_local" else cerebras_sim
    assert usages[0].completion_tokens == sim.requests[-1].completion_tokens_sent
    assert usages[0].total_tokens == usages[0].prompt_tokens + usages[0].completion_tokens


@pytest.mark.parametrize("strategy", ["always_local", "always_cerebras"])
async def test_stream_tool_calls(make_gateway, local_sim, cerebras_sim, strategy):
    for sim in (local_sim, cerebras_sim):
        sim.options.script = {
            "read it": ScriptedAnswer(
                content="Reading.",
                tool_calls=[ToolCallSpec(name="read_file", arguments='{"path": "a.py"}')],
            )
        }
    gw = await make_gateway(strategy)
    client = sdk(gw)
    stream = await client.chat.completions.create(
        model="glm-token-saver",
        messages=[{"role": "user", "content": "read it"}],
        tools=TOOLS,
        tool_choice="auto",
        stream=True,
        stream_options={"include_usage": True},
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in stream:
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += tc.id or ""
                if tc.function:
                    entry["name"] += tc.function.name or ""
                    entry["arguments"] += tc.function.arguments or ""
            finish = choice.finish_reason or finish
    await client.close()
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["name"] == "read_file"
    assert json.loads(calls[0]["arguments"]) == {"path": "a.py"}
    assert calls[0]["id"]


async def test_non_stream_and_helpers(make_gateway, local_sim):
    local_sim.options.script = {"hi": ScriptedAnswer(content="Hello there.")}
    gw = await make_gateway("always_local")
    client = sdk(gw)
    completion = await client.chat.completions.create(
        model="glm-token-saver", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "Hello there."
    assert completion.usage is not None and completion.usage.completion_tokens == 2
    assert completion.model_extra and completion.model_extra["model_used"] == "local"
    models = await client.models.list()
    ids = [m.id for m in models.data]
    assert "glm-token-saver" in ids and "always_local" in ids
    await client.close()


async def test_sdk_sees_http_error_status(make_gateway, local_sim):
    local_sim.options.n_ctx = 5
    gw = await make_gateway("always_local", routing={"fallback": {"to_cerebras": False}})
    client = sdk(gw)
    with pytest.raises(APIStatusError) as caught:
        await client.chat.completions.create(
            model="glm-token-saver",
            messages=[{"role": "user", "content": "word " * 100}],
            stream=True,
        )
    await client.close()
    assert caught.value.status_code == 400
    assert "context" in caught.value.message
