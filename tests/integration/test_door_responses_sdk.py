"""The Responses door on loopback, in front of the simulators: the official openai SDK's
`client.responses.create` (streamed and not), Codex-shaped requests byte by byte, errors, and
every strategy of the registry."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import orjson
import pytest
from openai import AsyncOpenAI, BadRequestError
from responses_transcripts import HEADERS, PROMPT, THREAD, first_turn, parse_events, second_turn

from gateway.dev.sim import ScriptedAnswer, SimServer, ToolCallSpec
from gateway.strategies import describe

TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "exec_command",
        "description": "Run a shell command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
        "strict": False,
    }
]


CALL = ToolCallSpec(name="exec_command", arguments='{"cmd": "ls"}', id="call_sim1")


def _script(sims: tuple[SimServer, ...], prompt: str, answer: ScriptedAnswer) -> None:
    for sim in sims:
        sim.options.script = {prompt: answer}


@pytest.mark.parametrize("strategy", ["always_local", "always_cerebras"])
async def test_sdk_stream_text_and_reasoning(make_gateway, local_sim, cerebras_sim, strategy):
    _script(
        (local_sim, cerebras_sim),
        "Why?",
        ScriptedAnswer(content="Because it is so.", reasoning="Let me think."),
    )
    gw = await make_gateway(strategy)
    client = AsyncOpenAI(base_url=gw.url, api_key="anything", max_retries=0)
    stream = await client.responses.create(model="glm-4.7", input="Why?", stream=True)
    kinds, text, reasoning, final = [], "", "", None
    async for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        elif event.type == "response.reasoning_text.delta":
            reasoning += event.delta
        elif event.type == "response.completed":
            final = event.response
    await client.close()
    assert text == "Because it is so."
    assert reasoning == "Let me think."
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert final is not None and final.status == "completed"
    assert final.output_text == "Because it is so."
    assert [item.type for item in final.output] == ["reasoning", "message"]
    sim = local_sim if strategy == "always_local" else cerebras_sim
    assert final.usage is not None
    assert final.usage.output_tokens == sim.requests[-1].completion_tokens_sent
    assert final.usage.total_tokens == final.usage.input_tokens + final.usage.output_tokens
    stats = await _stats(gw)
    assert stats["requests"]["by_door"]["responses"] == 1


async def _stats(gw: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(gw.root + "/stats") as resp:
        result: dict[str, Any] = await resp.json()
        return result


async def test_sdk_non_stream(make_gateway, local_sim):
    _script((local_sim,), "Why?", ScriptedAnswer(content="Because.", reasoning="Hmm."))
    gw = await make_gateway("always_local")
    client = AsyncOpenAI(base_url=gw.url, api_key="anything", max_retries=0)
    response = await client.responses.create(
        model="glm-4.7", input="Why?", instructions="Be brief.", max_output_tokens=50
    )
    await client.close()
    assert response.object == "response" and response.status == "completed"
    assert response.id.startswith("resp_")
    assert response.output_text == "Because."
    assert response.model == "glm-4.7"
    assert response.instructions == "Be brief."
    assert response.usage is not None and response.usage.output_tokens > 0
    sent = local_sim.requests[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["max_tokens"] == 50


async def test_sdk_streamed_function_call_and_round_trip(make_gateway, local_sim):
    _script((local_sim,), "list files", ScriptedAnswer(content="", tool_calls=[CALL]))
    gw = await make_gateway("always_local")
    client = AsyncOpenAI(base_url=gw.url, api_key="anything", max_retries=0)
    stream = await client.responses.create(
        model="glm-4.7", input="list files", tools=TOOLS, stream=True, parallel_tool_calls=True
    )
    deltas, done_items, kinds = "", [], []
    async for event in stream:
        kinds.append(event.type)
        if event.type == "response.function_call_arguments.delta":
            deltas += event.delta
        elif event.type == "response.output_item.done":
            done_items.append(event.item)
    assert json.loads(deltas) == {"cmd": "ls"}
    assert "response.function_call_arguments.done" in kinds
    (call,) = done_items
    assert call.type == "function_call" and call.name == "exec_command"
    assert call.call_id == "call_sim1" and json.loads(call.arguments) == {"cmd": "ls"}
    assert local_sim.requests[-1].body["tools"][0]["function"]["name"] == "exec_command"

    _script((local_sim,), "list files", ScriptedAnswer(content="There is a.py."))
    response = await client.responses.create(
        model="glm-4.7",
        input=[
            {"role": "user", "content": "list files"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "a.py\n"},
        ],
        tools=TOOLS,
    )
    await client.close()
    assert response.output_text == "There is a.py."
    messages = local_sim.requests[-1].body["messages"]
    assert messages[-2]["tool_calls"][0]["id"] == "call_sim1"
    assert messages[-1] == {"role": "tool", "tool_call_id": "call_sim1", "content": "a.py\n"}


async def test_sdk_errors_are_openai_shaped(make_gateway):
    gw = await make_gateway("always_local")
    client = AsyncOpenAI(base_url=gw.url, api_key="anything", max_retries=0)
    with pytest.raises(BadRequestError) as caught:
        await client.responses.create(model="m", input="x", previous_response_id="resp_1")
    assert caught.value.status_code == 400
    body: Any = caught.value.body
    assert body["param"] == "previous_response_id"
    assert "stores no responses" in body["message"]
    with pytest.raises(BadRequestError) as caught:
        await client.responses.create(
            model="m", input="x", tools=[{"type": "file_search", "vector_store_ids": ["v"]}]
        )
    body = caught.value.body
    assert body["param"] == "tools[0].type" and "file_search" in body["message"]
    await client.close()


async def _post(gw: Any, body: Any, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gw.url + "/responses",
            data=data,
            headers={"Content-Type": "application/json", **(headers or {})},
        ) as resp,
    ):
        return resp.status, await resp.read()


async def test_codex_turns_byte_level(make_gateway, local_sim):
    """Codex's own request shapes: the stream Codex parses, frame by frame."""
    local_sim.options.script = {
        "*": ScriptedAnswer(
            reasoning="Run it.",
            tool_calls=[ToolCallSpec(name="exec_command", arguments='{"cmd":"printf hi"}')],
        )
    }
    gw = await make_gateway("always_local")
    status, raw = await _post(gw, first_turn(), HEADERS)
    assert status == 200
    events = parse_events(raw)
    names = [name for name, _ in events]
    # Runs of deltas collapsed: how many the simulator splits an answer into is its business.
    assert [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    call = events[-2][1]["item"]
    assert call["type"] == "function_call" and call["arguments"] == '{"cmd":"printf hi"}'
    sent = local_sim.requests[-1].body
    assert sent["messages"][-1]["content"].endswith(PROMPT)
    assert {t["function"]["name"] for t in sent["tools"]} == {
        "exec_command",
        "write_stdin",
        "view_image",
    }
    assert "x-conversation-id" not in {k.lower() for k in local_sim.requests[-1].headers}

    local_sim.options.script = {"*": ScriptedAnswer(content="Done: hello.txt holds hi.")}
    status, raw = await _post(gw, second_turn(), HEADERS)
    events = parse_events(raw)
    final = events[-1][1]["response"]
    assert final["status"] == "completed"
    assert final["output"][-1]["content"][0]["text"] == "Done: hello.txt holds hi."
    assert local_sim.requests[-1].body["messages"][-1]["role"] == "tool"


async def test_codex_session_id_names_the_conversation(make_gateway, local_sim):
    """Learning keys the turn by Codex's `session-id` header, else its `prompt_cache_key`."""
    gw = await make_gateway("smart_routing")
    learning = gw.services.learning
    assert learning is not None
    seen: list[dict[str, str]] = []
    begin = learning.tracker.begin

    def spy(request_id: str, body: dict[str, Any], headers: Any) -> Any:
        seen.append(dict(headers))
        return begin(request_id, body, headers)

    learning.tracker.begin = spy  # type: ignore[method-assign]
    body = {**first_turn(), "stream": False}
    assert (await _post(gw, body, HEADERS))[0] == 200
    assert (await _post(gw, {**body, "prompt_cache_key": "thread-2"}))[0] == 200
    assert seen == [{"x-conversation-id": THREAD}, {"x-conversation-id": "thread-2"}]


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[]", 400, "invalid_json"),
        (b'{"input": {"a": 1}}', 400, "invalid_type"),
        (b'{"input": [1]}', 400, "invalid_type"),
        (b'{"input": "x", "stream": "yes"}', 400, "invalid_type"),
    ],
)
async def test_malformed_bodies_get_400(make_gateway, raw, status, code):
    gw = await make_gateway("always_local")
    got, body = await _post(gw, raw)
    assert got == status
    error = orjson.loads(body)["error"]
    assert error["code"] == code and error["message"]


@pytest.mark.parametrize("strategy", sorted(describe()))
async def test_every_strategy_through_the_door(make_gateway, local_sim, cerebras_sim, strategy):
    _script((local_sim, cerebras_sim), "Say hi.", ScriptedAnswer(content="Hi there."))
    gw = await make_gateway(strategy)
    client = AsyncOpenAI(base_url=gw.url, api_key="anything", max_retries=0)
    stream = await client.responses.create(model="glm-4.7", input="Say hi.", stream=True)
    text, final = "", None
    async for event in stream:
        if event.type == "response.output_text.delta":
            text += event.delta
        elif event.type == "response.completed":
            final = event.response
    response = await client.responses.create(model="glm-4.7", input="Say hi.")
    await client.close()
    assert text == "Hi there."
    assert final is not None and final.output_text == "Hi there."
    assert response.output_text == "Hi there."


@pytest.mark.parametrize("stream", [True, False])
async def test_verification_samples_read_the_door_answer(
    make_gateway, local_sim, cerebras_sim, stream
):
    """A sampled local answer through the Responses door is kept and compared like a chat one."""
    hello = "Hello! How can I help you with your project today?"
    _script((local_sim, cerebras_sim), "say hello", ScriptedAnswer(content=hello))
    gw = await make_gateway("smart_routing", routing={"learn": {"verify_sample": 1.0}})
    labels = gw.services.learning.labels
    real = labels.learner
    learned: list[tuple[str, bool, str]] = []

    def learner(request_id: str, bad: bool, source: str, weight: float) -> bool:
        learned.append((request_id, bad, source))
        return bool(real(request_id, bad, source, weight))

    labels.learner = learner
    body = {"model": "glm-token-saver", "input": "say hello", "stream": stream}
    async with (
        aiohttp.ClientSession() as session,
        session.post(gw.url + "/responses", json=body) as resp,
    ):
        assert resp.status == 200
        request_id = resp.headers["x-request-id"]
        assert hello.encode() in await resp.read()
    await gw.services.verifier.drain()
    assert len(cerebras_sim.requests) == 1
    assert learned == [(request_id, False, "verify_sample")]


@pytest.mark.parametrize("strategy", ["always_local", "speculative_decoding"])
async def test_a_client_leaving_mid_stream_stops_the_upstream(
    make_gateway, local_sim, cerebras_sim, strategy
):
    for sim in (local_sim, cerebras_sim):
        sim.options.tps, sim.options.answer_tokens = 100.0, 200
    gw = await make_gateway(strategy)
    body = {"model": "glm-token-saver", "input": "Explain why the build fails.", "stream": True}
    session = aiohttp.ClientSession()
    resp = await session.post(gw.url + "/responses", json=body)
    deltas = 0
    async for line in resp.content:
        if line.startswith(b"event: response.output_text.delta"):
            deltas += 1
            if deltas == 5:
                break
    resp.close()
    await session.close()
    await asyncio.sleep(0.3)
    for sim in (local_sim, cerebras_sim):
        for log in sim.requests:
            assert log.finished or log.disconnected_at is not None
    ledger = gw.services.ledger
    await ledger.flush()
    (row,) = ledger.rows()
    assert (row.outcome, row.door, row.http_status) == ("client_disconnected", "responses", 499)


async def test_guard_and_aiohttp_errors_on_the_door_path(make_gateway, local_sim):
    """Client keys (Bearer, as Codex sends its env_key), and aiohttp's own 405, on
    /v1/responses: OpenAI-shaped, with the request id; a refused request is recorded as the
    door's."""
    key = "sk-door-key-0001"
    gw = await make_gateway("always_local", auth={"api_keys": [key]})
    body = {"model": "m", "input": "hi"}
    async with aiohttp.ClientSession() as session:
        async with session.post(gw.url + "/responses", json=body) as resp:
            assert resp.status == 401
            error = (await resp.json())["error"]
            assert error["code"] == "invalid_api_key" and "x-api-key" in error["message"]
            assert resp.headers["x-request-id"]
        headers = {"Authorization": f"Bearer {key}"}
        async with session.post(gw.url + "/responses", json=body, headers=headers) as resp:
            assert resp.status == 200
            assert (await resp.json())["object"] == "response"
        async with session.get(gw.url + "/responses", headers=headers) as resp:
            assert resp.status == 405
            assert set((await resp.json())["error"]) == {"message", "type", "param", "code"}
    stats = await _stats_with(gw, key)
    assert stats["requests"]["by_door"]["responses"] == 1


async def _stats_with(gw: Any, key: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(gw.root + "/stats", headers=headers) as resp,
    ):
        result: dict[str, Any] = await resp.json()
        return result
