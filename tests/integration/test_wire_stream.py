"""The stream format the gateway emits (docs/wire.md, "What a client sees on the wire"): one id,
the role chunk first, finish_reason in its own chunk, one usage chunk only when asked for, one
`data: [DONE]`; through a real gateway in front of the simulated llama.cpp and Cerebras servers."""

from __future__ import annotations

import time

import pytest
from support import chat, post_stream

from gateway.dev.sim import ScriptedAnswer, SimServer, ToolCallSpec

STRATEGY_OF = {"local": "always_local", "cerebras": "always_cerebras"}


UPSTREAMS = ["local", "cerebras"]


def sim_of(name: str, local_sim: SimServer, cerebras_sim: SimServer) -> SimServer:
    return local_sim if name == "local" else cerebras_sim


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_headers_and_framing(make_gateway, client, upstream: str) -> None:
    gw = await make_gateway(STRATEGY_OF[upstream])
    headers = {"Accept-Encoding": "gzip, deflate, br, zstd"}
    reply = await post_stream(client, gw.url, chat(stream=True), headers=headers)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/event-stream")
    assert reply.headers["Cache-Control"] == "no-cache"
    assert reply.headers["X-Accel-Buffering"] == "no"
    assert "Content-Encoding" not in reply.headers
    for event in reply.events:
        assert not event.startswith(b"event:"), event
        assert event.startswith(b"data: ") or event.startswith(b":"), event
        assert b"\n" not in event, "each event is one data line"
    assert reply.raw.endswith(b"data: [DONE]\n\n")
    assert reply.raw.count(b"data: [DONE]") == 1


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_chunk_envelope(make_gateway, client, upstream: str) -> None:
    gw = await make_gateway(STRATEGY_OF[upstream])
    reply = await post_stream(client, gw.url, chat(stream=True))
    chunks = reply.chunks
    assert len(chunks) >= 3
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1
    for c in chunks:
        assert c["object"] == "chat.completion.chunk"
        assert isinstance(c["created"], int) and not isinstance(c["created"], bool)
        assert isinstance(c["model"], str) and c["model"]
        assert isinstance(c["choices"], list)
    first = chunks[0]["choices"][0]
    assert first["delta"] == {"role": "assistant", "content": ""}
    for c in chunks[1:]:
        for choice in c["choices"]:
            assert choice["delta"].get("role") in (None, "assistant")


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_finish_reason_in_empty_delta_chunk(make_gateway, client, upstream: str) -> None:
    gw = await make_gateway(STRATEGY_OF[upstream])
    reply = await post_stream(client, gw.url, chat(stream=True))
    finishing = [c for c in reply.chunks if c["choices"] and c["choices"][0].get("finish_reason")]
    assert len(finishing) == 1
    assert finishing[0]["choices"][0]["delta"] == {}
    assert finishing[0]["choices"][0]["finish_reason"] == "stop"
    assert reply.chunks.index(finishing[0]) == len(reply.chunks) - 1


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_usage_exactly_once_when_asked(
    make_gateway, client, upstream, local_sim, cerebras_sim
) -> None:
    gw = await make_gateway(STRATEGY_OF[upstream])
    body = chat(stream=True, stream_options={"include_usage": True})
    reply = await post_stream(client, gw.url, body)
    data = reply.data
    assert data[-1] == "[DONE]"
    usage_chunks = [c for c in reply.chunks if c.get("usage")]
    assert len(usage_chunks) == 1
    assert usage_chunks[0] == data[-2], "usage chunk comes right before [DONE]"
    assert usage_chunks[0]["choices"] == []
    for c in reply.chunks[:-1]:
        assert "usage" in c and c["usage"] is None
    sim = sim_of(upstream, local_sim, cerebras_sim)
    usage = usage_chunks[0]["usage"]
    assert usage["completion_tokens"] == sim.requests[-1].completion_tokens_sent
    assert usage["prompt_tokens"] == sim.requests[-1].prompt_tokens
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_no_usage_chunk_unless_asked(
    make_gateway, client, upstream, local_sim, cerebras_sim
) -> None:
    gw = await make_gateway(STRATEGY_OF[upstream])
    reply = await post_stream(client, gw.url, chat(stream=True))
    assert all("usage" not in c for c in reply.chunks)
    sent = sim_of(upstream, local_sim, cerebras_sim).requests[-1].body
    assert sent["stream_options"] == {"include_usage": True}, "usage is always asked upstream"


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_reasoning_goes_out_as_reasoning_content(
    make_gateway, client, upstream, local_sim, cerebras_sim
) -> None:
    sim = sim_of(upstream, local_sim, cerebras_sim)
    sim.options.script = {"think": ScriptedAnswer(content="Answer is 4.", reasoning="two plus two")}
    gw = await make_gateway(STRATEGY_OF[upstream])
    reply = await post_stream(client, gw.url, chat("think", stream=True))
    assert reply.reasoning == "two plus two"
    assert reply.text == "Answer is 4."
    for c in reply.chunks:
        for choice in c["choices"]:
            assert "reasoning" not in choice["delta"]


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_tool_calls_pass_through(
    make_gateway, client, upstream, local_sim, cerebras_sim
) -> None:
    sim = sim_of(upstream, local_sim, cerebras_sim)
    calls = [
        ToolCallSpec(name="read_file", arguments='{"path": "src/app.py"}', id="call_a1"),
        ToolCallSpec(
            name="list_files", arguments='{"path": ".", "recursive": false}', id="call_b2"
        ),
    ]
    sim.options.script = {"use tools": ScriptedAnswer(tool_calls=calls)}
    gw = await make_gateway(STRATEGY_OF[upstream])
    tools = [{"type": "function", "function": {"name": "read_file", "parameters": {}}}]
    reply = await post_stream(
        client, gw.url, chat("use tools", stream=True, tools=tools, tool_choice="auto")
    )
    fragments = [
        tc
        for c in reply.chunks
        for choice in c["choices"]
        for tc in choice["delta"].get("tool_calls") or []
    ]
    assert fragments, "tool calls reached the client"
    seen: dict[int, dict[str, str]] = {}
    for fragment in fragments:
        assert isinstance(fragment["function"], dict)
        index = fragment["index"]
        if index not in seen:
            assert fragment["id"] and len(fragment["id"]) <= 40
            assert fragment["type"] == "function"
            seen[index] = {"name": fragment["function"]["name"], "arguments": ""}
        seen[index]["arguments"] += fragment["function"].get("arguments") or ""
    assert seen == {
        0: {"name": "read_file", "arguments": '{"path": "src/app.py"}'},
        1: {"name": "list_files", "arguments": '{"path": ".", "recursive": false}'},
    }
    finish = [c["choices"][0]["finish_reason"] for c in reply.chunks if c["choices"]]
    assert finish[-1] == "tool_calls"
    sent = sim.requests[-1].body
    assert sent["tools"] == tools and sent["tool_choice"] == "auto"


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_model_used_on_final_chunk_and_header(make_gateway, client, upstream) -> None:
    gw = await make_gateway(STRATEGY_OF[upstream])
    for include_usage in (False, True):
        body = chat(stream=True, stream_options={"include_usage": include_usage})
        reply = await post_stream(client, gw.url, body)
        final = reply.chunks[-1]
        assert final["model_used"] == upstream
        assert all("model_used" not in c for c in reply.chunks[:-1])
        assert reply.headers["x-gateway-model-used"] == upstream


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_non_stream_completion(
    make_gateway, client, upstream, local_sim, cerebras_sim
) -> None:
    sim = sim_of(upstream, local_sim, cerebras_sim)
    sim.options.script = {"q": ScriptedAnswer(content="The answer.", reasoning="hmm")}
    gw = await make_gateway(STRATEGY_OF[upstream])
    async with client.post(gw.url + "/chat/completions", json=chat("q")) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert body["object"] == "chat.completion"
    assert body["model_used"] == upstream
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "The answer."
    assert choice["message"]["reasoning_content"] == "hmm"
    assert choice["finish_reason"] == "stop"
    log = sim.requests[-1]
    assert body["usage"]["completion_tokens"] == log.completion_tokens_sent
    assert body["usage"]["prompt_tokens"] == log.prompt_tokens


async def test_unknown_fields_pass_through(make_gateway, client, local_sim) -> None:
    gw = await make_gateway("always_local")
    extra = {
        "response_format": {"type": "json_object"},
        "stop": ["\n\n"],
        "seed": 7,
        "top_p": 0.9,
        "logprobs": True,
        "top_logprobs": 2,
        "parallel_tool_calls": False,
        "x_custom": {"nested": [1, 2]},
    }
    reply = await post_stream(client, gw.url, chat(stream=True, **extra))
    assert reply.status == 200
    sent = local_sim.requests[-1].body
    for key, value in extra.items():
        assert sent[key] == value
    assert sent["model"] == "test-local"


async def test_client_authorization_and_conversation_id_not_forwarded(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    headers = {"Authorization": "Bearer client-secret-xyz", "X-Conversation-Id": "conv-1"}
    for strategy, sim in (("always_local", local_sim), ("always_cerebras", cerebras_sim)):
        gw = await make_gateway(strategy)
        reply = await post_stream(client, gw.url, chat(stream=True), headers=headers)
        assert reply.status == 200
        seen = {k.lower(): v for k, v in sim.requests[-1].headers.items()}
        assert "x-conversation-id" not in seen
        assert "client-secret-xyz" not in str(seen)
    local_headers = {k.lower(): v for k, v in local_sim.requests[-1].headers.items()}
    assert "authorization" not in local_headers, "the Cerebras key never goes to llama.cpp"


async def test_stream_is_incremental(make_gateway, client, local_sim) -> None:
    """Chunks reach the client as the upstream produces them, not buffered to the end."""
    local_sim.options.tps = 20.0
    local_sim.options.answer_tokens = 10
    gw = await make_gateway("always_local")
    arrivals: list[float] = []
    async with client.post(gw.url + "/chat/completions", json=chat(stream=True)) as resp:
        async for line in resp.content:
            if line.startswith(b"data: {"):
                arrivals.append(time.monotonic())
    assert len(arrivals) >= 10
    spread = arrivals[-1] - arrivals[1]
    assert spread > 0.25, f"content chunks arrived over {spread:.3f}s, expected streaming"


async def test_demo_style_long_answer_and_max_tokens(make_gateway, client, cerebras_sim) -> None:
    cerebras_sim.options.answer_tokens = 50
    gw = await make_gateway("always_cerebras")
    reply = await post_stream(client, gw.url, chat(stream=True, max_tokens=5))
    finish = [c["choices"][0]["finish_reason"] for c in reply.chunks if c["choices"]]
    assert finish[-1] == "length"
    sent = cerebras_sim.requests[-1].body
    assert sent["max_completion_tokens"] == 5 and "max_tokens" not in sent
