"""The official `anthropic` SDK through the Messages door, against a gateway on 127.0.0.1 in
front of the simulators: text, a streamed tool call, a tool-result round trip, thinking,
count_tokens, errors, pings; and every strategy of the registry through the door."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import pytest
from anthropic_support import check_grammar, parse_events, transcript

from gateway.dev.sim import ScriptedAnswer, ToolCallSpec
from gateway.dev.sim.text import estimate_prompt_tokens
from gateway.http.anthropic import MESSAGES_DOOR_KEY
from gateway.strategies import strategy_names

CLIENT_KEY = "client-key-0123456789"


WRITE = {
    "name": "Write",
    "description": "Writes a file",
    "input_schema": {
        "type": "object",
        "properties": {"file_path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["file_path", "content"],
    },
}


def sdk(gw: Any, **kwargs: Any) -> anthropic.AsyncAnthropic:
    options: dict[str, Any] = {"base_url": gw.root, "api_key": "unused-key", "max_retries": 0}
    options.update(kwargs)
    return anthropic.AsyncAnthropic(**options)


def ask(text: str, *, model: str = "m", max_tokens: int = 50, **fields: Any) -> dict[str, Any]:
    """A streamed Messages request with one user turn (`fields` override or add keys)."""
    return {
        "model": model,
        "max_tokens": max_tokens,
        "stream": True,
        **fields,
        "messages": [{"role": "user", "content": text}],
    }


async def post_messages(client: Any, url: str, body: dict[str, Any], **kwargs: Any) -> bytes:
    """POST `body` to the Messages door at `url`; the raw body of its 200 answer."""
    async with client.post(url, json=body, **kwargs) as resp:
        assert resp.status == 200, await resp.text()
        return bytes(await resp.read())


def script(*sims: Any, **answers: ScriptedAnswer) -> None:
    for sim in sims:
        sim.options.script = {k.replace("_", " "): v for k, v in answers.items()}


async def test_text_plain_and_streamed(make_gateway, local_sim) -> None:
    script(local_sim, Say_hello=ScriptedAnswer(content="Hello there."))
    gw = await make_gateway("always_local")
    async with sdk(gw) as client:
        message = await client.messages.create(
            model="glm-4.7",
            max_tokens=100,
            system="Be brief.",
            messages=[{"role": "user", "content": "Say hello"}],
        )
        assert message.content[0].type == "text"
        assert message.content[0].text == "Hello there."
        assert message.stop_reason == "end_turn" and message.model == "glm-4.7"
        assert message.id.startswith("msg_")
        assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
        async with client.messages.stream(
            model="glm-4.7", max_tokens=100, messages=[{"role": "user", "content": "Say hello"}]
        ) as stream:
            texts = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
    assert "".join(texts) == "Hello there."
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == local_sim.requests[-1].completion_tokens_sent
    sent = local_sim.requests[-1].body
    assert sent["messages"][0]["role"] == "user" and "thinking" not in sent


async def test_streamed_tool_call_and_tool_result_round_trip(make_gateway, local_sim) -> None:
    args = '{"file_path": "/tmp/hello.txt", "content": "hello"}'
    script(
        local_sim,
        Write_hello=ScriptedAnswer(
            content="Writing it.", tool_calls=[ToolCallSpec("Write", args, id="call_w1")]
        ),
        ok=ScriptedAnswer(content="Done."),
    )
    gw = await make_gateway("always_local")
    async with sdk(gw) as client:
        async with client.messages.stream(
            model="glm-4.7",
            max_tokens=200,
            tools=[WRITE],
            messages=[{"role": "user", "content": "Write hello"}],
        ) as stream:
            kinds = [event.type async for event in stream]
            first = await stream.get_final_message()
        assert "content_block_start" in kinds and kinds[-1] == "message_stop"
        assert [b.type for b in first.content] == ["text", "tool_use"]
        call = first.content[1]
        assert call.name == "Write" and call.id == "call_w1"
        assert call.input == {"file_path": "/tmp/hello.txt", "content": "hello"}
        assert first.stop_reason == "tool_use"
        second = await client.messages.create(
            model="glm-4.7",
            max_tokens=200,
            tools=[WRITE],
            messages=[
                {"role": "user", "content": "Write hello"},
                {"role": "assistant", "content": [b.model_dump() for b in first.content]},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": call.id, "content": "written"},
                        {"type": "text", "text": "ok"},
                    ],
                },
            ],
        )
    assert second.content[0].text == "Done."
    sent = local_sim.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "user"]
    assert sent[1]["tool_calls"][0]["id"] == "call_w1"
    assert sent[2] == {"role": "tool", "tool_call_id": "call_w1", "content": "written"}
    assert sent[3]["content"] == "ok"


async def test_thinking_blocks_and_thinking_disabled(make_gateway, local_sim) -> None:
    script(local_sim, Why=ScriptedAnswer(content="Because.", reasoning="Let me think."))
    gw = await make_gateway("always_local")
    async with sdk(gw) as client:
        message = await client.messages.create(
            model="glm-4.7",
            max_tokens=2000,
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=[{"role": "user", "content": "Why"}],
        )
        assert [b.type for b in message.content] == ["thinking", "text"]
        assert message.content[0].thinking == "Let me think."
        assert message.content[0].signature
        assert "chat_template_kwargs" not in local_sim.requests[-1].body
        async with client.messages.stream(
            model="glm-4.7",
            max_tokens=2000,
            thinking={"type": "disabled"},
            messages=[
                {"role": "user", "content": "Why"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "earlier thought", "signature": "s"},
                        {"type": "text", "text": "Earlier."},
                    ],
                },
                {"role": "user", "content": "Why"},
            ],
        ) as stream:
            final = await stream.get_final_message()
    sent = local_sim.requests[-1].body
    assert sent["chat_template_kwargs"] == {"enable_thinking": False}
    assert sent["messages"][1]["reasoning_content"] == "earlier thought"
    assert [b.type for b in final.content] == ["text"]


async def test_count_tokens_exact_then_estimate(make_gateway, local_sim, client) -> None:
    gw = await make_gateway("always_local")
    body = transcript("claude_code_first_turn")["body"]
    for key in ("max_tokens", "stream", "metadata", "context_management"):
        body.pop(key)
    async with sdk(gw) as sdk_client:
        counted = await sdk_client.messages.count_tokens(**body)
    decoded = gw.app[MESSAGES_DOOR_KEY].decode({**body, "max_tokens": 1, "stream": False}, {}).body
    assert counted.input_tokens == estimate_prompt_tokens(decoded)
    url = gw.root + "/v1/messages/count_tokens"
    async with client.post(url, json=body) as resp:
        assert resp.status == 200
        assert resp.headers["x-gateway-token-count"] == "exact"
    gw2 = await make_gateway(
        "always_local", models={"local": {"endpoint": "http://127.0.0.1:9/v1"}}
    )
    async with client.post(gw2.root + "/v1/messages/count_tokens", json=body) as resp:
        assert resp.status == 200
        assert resp.headers["x-gateway-token-count"] == "estimate"
        assert (await resp.json())["input_tokens"] > 0


async def test_errors_in_the_anthropic_shape(make_gateway, local_sim, cerebras_sim) -> None:
    gw = await make_gateway("always_local", auth={"api_keys": [CLIENT_KEY]})
    async with sdk(gw, api_key="wrong-key-000") as client:
        with pytest.raises(anthropic.AuthenticationError) as auth:
            await client.messages.create(
                model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            )
    assert auth.value.body["type"] == "error"
    assert auth.value.body["error"]["type"] == "authentication_error"
    async with sdk(gw, api_key=CLIENT_KEY) as client:  # sent as x-api-key
        with pytest.raises(anthropic.BadRequestError) as bad:
            await client.messages.create(
                model="m",
                max_tokens=5,
                tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
                messages=[{"role": "user", "content": "hi"}],
            )
        assert "web_search_20250305" in bad.value.body["error"]["message"]
        assert bad.value.body["error"]["type"] == "invalid_request_error"
        with pytest.raises(anthropic.NotFoundError) as missing:
            await client.get("/v1/nothing-here", cast_to=object)
        assert missing.value.body["error"]["type"] == "not_found_error"
        local_sim.inject("http_500", count=2)
        cerebras_sim.inject("http_500", count=2)
        with pytest.raises(anthropic.APIStatusError) as failed:
            await client.messages.create(
                model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            )
        assert failed.value.body["type"] == "error"
        assert (failed.value.status_code, failed.value.body["error"]["type"]) in (
            (500, "api_error"),
            (529, "overloaded_error"),
        )
        assert failed.value.body["error"]["message"]


async def test_error_event_mid_stream(make_gateway, local_sim, cerebras_sim, client) -> None:
    script(local_sim, go=ScriptedAnswer(content="one two three four five six seven eight"))
    gw = await make_gateway("always_local", routing={"fallback": {"mid_stream": "error"}})
    local_sim.inject("error_event", after_chunks=3)
    events = parse_events(await post_messages(client, gw.root + "/v1/messages", ask("go")))
    assert events[0][0] == "message_start"
    assert events[-1][0] == "error"
    assert "message_stop" not in [name for name, _ in events]


async def test_ping_events_during_long_waits(make_gateway, local_sim, client) -> None:
    script(local_sim, slow=ScriptedAnswer(content="a b c d"))
    local_sim.options.tps = 8  # about 0.4 s for the answer
    gw = await make_gateway("always_local")
    gw.app[MESSAGES_DOOR_KEY].keepalive_interval = 0.05
    raw = await post_messages(client, gw.root + "/v1/messages?beta=true", ask("slow"))
    events = parse_events(raw)
    assert ("ping", {"type": "ping"}) in events
    assert b'event: ping\ndata: {"type": "ping"}\n\n' in raw
    assert check_grammar(events) == [{"type": "text", "text": "a b c d"}]


async def test_stop_sequence_through_the_gateway_stops_the_upstream(
    make_gateway, local_sim, client
) -> None:
    words = " ".join(f"w{i}" for i in range(40))
    script(local_sim, count=ScriptedAnswer(content="one two three STOP " + words))
    local_sim.options.tps = 40  # a second for the whole answer: the door stops it early
    gw = await make_gateway("always_local")
    body = ask("count", stop_sequences=["STOP"])
    events = parse_events(await post_messages(client, gw.root + "/v1/messages", body))
    assert check_grammar(events) == [{"type": "text", "text": "one two three "}]
    delta = next(d for n, d in events if n == "message_delta")["delta"]
    assert delta == {"stop_reason": "stop_sequence", "stop_sequence": "STOP"}
    assert "stop" not in local_sim.requests[-1].body
    await asyncio.sleep(0.1)
    upstream = local_sim.requests[-1]
    assert upstream.disconnected_at is not None and not upstream.finished
    assert upstream.completion_tokens_sent < 20
    async with sdk(gw) as sdk_client:
        message = await sdk_client.messages.create(**{**body, "stream": False})
    assert message.content[0].text == "one two three "
    assert message.stop_sequence == "STOP"


async def test_models_in_the_anthropic_shape_and_head_root(make_gateway, local_sim, client):
    gw = await make_gateway("always_local")
    async with sdk(gw) as sdk_client:
        page = await sdk_client.models.list()
    ids = [model.id for model in page.data]
    assert "glm-token-saver" in ids and all(m.type == "model" for m in page.data)
    async with client.get(gw.url + "/models") as resp:
        assert (await resp.json())["object"] == "list"  # the OpenAI shape without the header
    async with client.head(gw.root + "/") as resp:
        assert resp.status == 200


async def test_claude_code_transcript_and_session_as_conversation(
    make_gateway, local_sim, client
) -> None:
    script(local_sim, **{"*": ScriptedAnswer(content="ok")})
    gw = await make_gateway("always_local")
    t = transcript("claude_code_first_turn")
    async with client.post(gw.root + t["path"], json=t["body"], headers=t["headers"]) as resp:
        assert resp.status == 200
        events = parse_events(await resp.read())
    check_grammar(events)
    start = events[0][1]["message"]["usage"]["input_tokens"]
    assert start > 100  # the estimate of a ~2 KB prompt, never 0
    sent = local_sim.requests[-1].body
    assert not sent["messages"][0]["content"].startswith("x-anthropic-billing-header")
    stats = await (await client.get(gw.root + "/stats")).json()
    assert stats["requests"]["by_door"] == {"messages": 1}


@pytest.mark.parametrize("strategy", strategy_names())
async def test_every_strategy_through_the_door(
    make_gateway, local_sim, cerebras_sim, client, strategy
) -> None:
    script(local_sim, cerebras_sim, **{"*": ScriptedAnswer(content="The answer is four.")})
    gw = await make_gateway(strategy)
    headers = {"anthropic-version": "2023-06-01"}
    for stream in (True, False):
        body = ask("What is 2+2?", model="glm-4.7", max_tokens=64, stream=stream)
        async with client.post(gw.root + "/v1/messages", json=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.headers["x-gateway-strategy"] == strategy
            if stream:
                blocks = check_grammar(parse_events(await resp.read()))
                text = "".join(b.get("text", "") for b in blocks)
            else:
                message = await resp.json()
                text = "".join(b.get("text", "") for b in message["content"])
        assert text == "The answer is four."
    await asyncio.sleep(0)


async def test_long_wait_for_the_first_token_announces_the_message_and_pings(
    make_gateway, local_sim, client
) -> None:
    """A prompt the local model takes long to read: message_start and pings go out before the
    first content, and the SDK reads the stream as usual."""
    script(local_sim, slow=ScriptedAnswer(content="finally"))
    local_sim.options.ttft = 0.4
    gw = await make_gateway("always_local")
    gw.app[MESSAGES_DOOR_KEY].keepalive_interval = 0.05
    body = ask("slow")
    events = parse_events(await post_messages(client, gw.root + "/v1/messages", body))
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[1] == "ping"
    assert names.index("content_block_start") > 2  # several pings while waiting
    assert check_grammar(events) == [{"type": "text", "text": "finally"}]
    async with sdk(gw) as sdk_client:
        message = await sdk_client.messages.create(**{**body, "stream": False})
        async with sdk_client.messages.stream(
            **{k: v for k, v in body.items() if k != "stream"}
        ) as s:
            streamed = await s.get_final_message()
    assert message.content[0].text == streamed.content[0].text == "finally"


async def test_failure_after_the_announcement_is_one_error_event(
    make_gateway, local_sim, client
) -> None:
    gw = await make_gateway(
        "always_local",
        timeouts={"connect": 1, "first_token": 0.3, "idle": 1},
        routing={"fallback": {"to_cerebras": False}},
    )
    gw.app[MESSAGES_DOOR_KEY].keepalive_interval = 0.05
    local_sim.inject("slow_first_token", delay=2.0)
    events = parse_events(await post_messages(client, gw.root + "/v1/messages", ask("hi")))
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-1] == "error"
    assert set(names[1:-1]) <= {"ping"}
    assert events[-1][1]["error"]["type"] == "timeout_error"
    await asyncio.sleep(0.1)  # the record is written after the response ended
    await gw.services.ledger.flush()
    (row,) = gw.services.ledger.rows()
    assert (row.outcome, row.http_status, row.door) == ("error", 200, "messages")


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole-body"])
async def test_verification_samples_read_the_doors_answer(
    make_gateway, client, local_sim, cerebras_sim, stream
) -> None:
    """A local answer drawn as a verification sample through the Messages door is compared with
    Cerebras' like any other (the door's sinks keep the answer they send)."""
    answer = "Hello there, friend."
    script(local_sim, cerebras_sim, say_hello=ScriptedAnswer(content=answer))
    gw = await make_gateway("smart_routing", routing={"learn": {"verify_sample": 1.0}})
    body = ask("say hello", model="glm-4.7", stream=stream)
    async with client.post(gw.root + "/v1/messages", json=body) as resp:
        assert resp.status == 200
        assert resp.headers["x-gateway-model-used"] == "local"
        await resp.read()
    verifier = gw.services.verifier
    assert verifier is not None
    await verifier.drain()
    assert len(cerebras_sim.requests) == 1
    assert cerebras_sim.requests[0].body["messages"] == [{"role": "user", "content": "say hello"}]
    samples = verifier.snapshot()
    assert samples["samples"] == 1 and samples["good"] == 1


async def test_cerebras_cut_mid_answer_is_continued_by_local_in_the_same_block(
    make_gateway, local_sim, cerebras_sim, client
) -> None:
    """Cerebras breaks after text reached the client: local finishes the same message from the
    partial answer, in the same text block, and the stream ends as any other."""
    cerebras_sim.inject("cut", after_chunks=4)
    gw = await make_gateway("always_cerebras")
    body = ask("Explain deadlocks step by step.", model="glm-4.7", max_tokens=200)
    events = parse_events(await post_messages(client, gw.root + "/v1/messages", body))
    blocks = check_grammar(events)
    (continued,) = [r for r in local_sim.requests if r.prefill]
    assert blocks == [{"type": "text", "text": continued.prefill + continued.planned_content}]
    assert next(d for n, d in events if n == "message_delta")["delta"]["stop_reason"] == "end_turn"
    rows = gw.services.ledger.rows()
    assert [(r.outcome, r.model_used, r.door) for r in rows] == [("ok", "local", "messages")]
