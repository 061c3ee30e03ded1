"""The Responses door in front of the real llama-server (scripts/setup_local_model.sh): a
Codex-shaped request is accepted by the real chat template and streamed back as Responses
events with llama.cpp's own token counts, and a context overflow reaches a Codex client with the
code Codex acts on and llama.cpp's wording."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from llamacpp_support import GREEDY, timings_of
from openai import AsyncOpenAI
from responses_transcripts import HEADERS, first_turn, parse_events

from system.test_llamacpp import (  # noqa: F401  (fixtures)
    OVERFLOW_PROMPT,
    llama_tap,
    real_gateway,
    tiny_llama_server,
)

pytestmark = pytest.mark.llamacpp


async def test_sdk_stream_with_llamacpp_counts(real_gateway, llama_tap):  # noqa: F811
    gw = await real_gateway("always_local", local_url=llama_tap.url)
    client = AsyncOpenAI(base_url=gw.url, api_key="unused", max_retries=0)
    try:
        stream = await client.responses.create(
            model="glm-token-saver",
            instructions="Answer in one short line.",
            input="Name three colours of the rainbow.",
            max_output_tokens=24,
            stream=True,
            extra_body=GREEDY,
        )
        pieces, final = [], None
        async for event in stream:
            if event.type == "response.output_text.delta":
                pieces.append(event.delta)
            elif event.type in ("response.completed", "response.incomplete"):
                final = event.response
    finally:
        await client.close()
    assert len(pieces) >= 3 and "".join(pieces).strip()
    assert final is not None and final.usage is not None
    (record,) = llama_tap.chat_records()
    timings = timings_of(record.payloads)
    assert final.usage.output_tokens == timings["predicted_n"]
    assert final.usage.input_tokens == timings["prompt_n"] + timings.get("cache_n", 0)


async def test_codex_shaped_request_through_the_real_template(real_gateway):  # noqa: F811
    """Codex's item and tool shapes (developer messages, two user messages, function tools with
    namespace and web_search dropped), shortened to fit the test server's context."""
    gw = await real_gateway("always_local")
    body: dict[str, Any] = first_turn()
    body["instructions"] = "You are a coding agent. Answer briefly."
    body["input"][0]["content"][0]["text"] = "Sandbox: none."
    body["input"][2]["content"][0]["text"] = "Say hello."
    body["max_output_tokens"] = 16
    body.update(GREEDY)
    async with (
        aiohttp.ClientSession() as session,
        session.post(gw.url + "/responses", data=orjson.dumps(body), headers=HEADERS) as resp,
    ):
        assert resp.status == 200, await resp.text()
        events = parse_events(await resp.read())
    name, data = events[-1]
    assert name in ("response.completed", "response.incomplete")
    output = data["response"]["output"]
    assert any(item["type"] in ("message", "function_call") for item in output)
    assert data["response"]["usage"]["output_tokens"] > 0


async def test_context_overflow_reaches_codex_with_its_code(
    real_gateway,  # noqa: F811
    tiny_llama_server,  # noqa: F811
    cerebras_sim,
):
    gw = await real_gateway(
        "always_local",
        local_url=tiny_llama_server.url,
        routing={"fallback": {"to_cerebras": False}},
    )
    body = {"model": "glm-token-saver", "input": OVERFLOW_PROMPT, "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(gw.url + "/responses", json=body) as resp,
    ):
        status, error = resp.status, (await resp.json())["error"]
    assert status == 400
    assert error["code"] == "context_length_exceeded"  # what Codex reads to compact or stop
    assert error["type"] == "exceed_context_size_error"  # llama.cpp's own wording kept
    assert error["message"]
    assert cerebras_sim.requests == []
