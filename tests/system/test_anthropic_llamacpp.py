"""The Anthropic Messages door in front of a real llama.cpp `llama-server` (marker `llamacpp`):
a text answer through the official SDK, count_tokens equal to what llama-server bills for the
same prompt, and its context overflow as "prompt is too long"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from llamacpp_support import running_llama
from support import Gateway, GatewayFactory, gateway_config, start_gateway

from gateway.dev.llama_server import LlamaServer
from gateway.dev.sim import SimServer

pytestmark = pytest.mark.llamacpp

TIMEOUTS = {"connect": 2, "first_token": 30, "idle": 15}


@pytest.fixture(scope="module")
def tiny_llama(
    llama_install: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    with running_llama(llama_install, tmp_path_factory.mktemp("llama-tiny"), ctx=256) as server:
        yield server


@pytest.fixture
def gateway_on(aiohttp_server: Any, tmp_path: Path, cerebras_sim: SimServer) -> GatewayFactory:
    async def factory(local_url: str, **sections: Any) -> Gateway:
        sections.setdefault("timeouts", TIMEOUTS)
        config = gateway_config(tmp_path, local_url, cerebras_sim.url, **sections)
        return await start_gateway(aiohttp_server, config)

    return factory


def sdk(gw: Gateway) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gw.root, api_key="unused", max_retries=0)


REQUEST: dict[str, Any] = {
    "model": "glm-4.7",
    "system": "You are a terse assistant.",
    "messages": [{"role": "user", "content": "What is the capital of France? One word."}],
}


async def test_text_answer_and_exact_count(gateway_on, llama_server, cerebras_sim) -> None:
    gw = await gateway_on(llama_server.url)
    async with sdk(gw) as client:
        async with client.messages.stream(max_tokens=16, **REQUEST) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            message = await stream.get_final_message()
        counted = await client.messages.count_tokens(**REQUEST)
        raw = await client.messages.with_raw_response.count_tokens(**REQUEST)
    assert text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert raw.headers["x-gateway-token-count"] == "exact"
    # what llama-server's own tokenizer says is what it billed for the same prompt (Anthropic's
    # input_tokens excludes the cached part)
    billed = message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0)
    assert counted.input_tokens == billed
    assert cerebras_sim.requests == []


async def test_context_overflow_is_prompt_too_long(gateway_on, tiny_llama, cerebras_sim) -> None:
    gw = await gateway_on(tiny_llama.url, routing={"fallback": {"to_cerebras": False}})
    long = {**REQUEST, "messages": [{"role": "user", "content": "word " * 600}]}
    async with sdk(gw) as client:
        with pytest.raises(anthropic.BadRequestError) as raised:
            await client.messages.create(max_tokens=8, **long)
    assert raised.value.status_code == 400
    assert raised.value.body["error"]["type"] == "invalid_request_error"
    assert raised.value.body["error"]["message"].startswith("prompt is too long")
