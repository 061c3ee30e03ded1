"""Claude Code's billing line and llama.cpp's prompt cache, on the real llama-server (marker
`llamacpp`): two prompts of one session that differ only in the billing line's `cc_version`
suffix. With `doors.anthropic.strip_billing_header` the second prompt is served from the slot's
cache (its `timings.cache_n`, recorded as cached tokens in the ledger and /stats); without it the
prompts part after the first few tokens and the cache reuses (almost) nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prefix_cache_support import session_requests
from support import Gateway, GatewayFactory, gateway_config, start_gateway

from gateway.dev.sim import SimServer

pytestmark = pytest.mark.llamacpp

TIMEOUTS = {"connect": 2, "first_token": 120, "idle": 60}


HEADERS = {"anthropic-version": "2023-06-01"}


@pytest.fixture
def gateway_on(aiohttp_server: Any, tmp_path: Path, cerebras_sim: SimServer) -> GatewayFactory:
    async def factory(local_url: str, name: str, **sections: Any) -> Gateway:
        config = gateway_config(
            tmp_path / name, local_url, cerebras_sim.url, timeouts=TIMEOUTS, **sections
        )
        return await start_gateway(aiohttp_server, config)

    return factory


async def second_request_cached(gw: Gateway, bodies: list[dict[str, Any]]) -> tuple[int, int]:
    """(prompt tokens, cached tokens) the ledger recorded for the second of `bodies`, after
    checking /stats counted the same cached tokens over that request."""
    cached_before = 0
    async with aiohttp.ClientSession() as client:
        for i, body in enumerate(bodies):
            if i == 1:
                async with client.get(gw.root + "/stats") as resp:
                    cached_before = (await resp.json())["tokens"]["cached"]["local"]
            async with client.post(gw.root + "/v1/messages", json=body, headers=HEADERS) as resp:
                raw = await resp.read()
                assert resp.status == 200, raw[:300]
                assert b"event: message_stop" in raw, raw[-300:]
            await asyncio.sleep(0.1)  # the record is written after the response ended
        await gw.services.ledger.flush()
        rows = gw.services.ledger.rows()
        assert [row.door for row in rows] == ["messages", "messages"]
        second = rows[1]
        async with client.get(gw.root + "/stats") as resp:
            cached = (await resp.json())["tokens"]["cached"]
    assert cached["local"] - cached_before == second.local_cached_tokens
    assert cached["cerebras"] == 0 and second.cerebras_cached_tokens == 0
    return second.local_prompt_tokens, second.local_cached_tokens


async def test_stripping_the_billing_line_keeps_the_prompt_cache_warm(
    gateway_on, llama_server, cerebras_sim
) -> None:
    # ~400 tokens: the recorded Claude Code request cut down (billing line, SDK line, the start of
    # the system prompt, one tool, the user turn), small enough for the 270M model on one core
    bodies = session_requests(2, system_chars=900, tools=1, message_chars=300, max_tokens=2)
    assert bodies[0] != bodies[1]
    kept = await gateway_on(
        llama_server.url, "kept", doors={"anthropic": {"strip_billing_header": False}}
    )
    kept_prompt, kept_cached = await second_request_cached(kept, bodies)
    stripped = await gateway_on(
        llama_server.url, "stripped", doors={"anthropic": {"strip_billing_header": True}}
    )
    stripped_prompt, stripped_cached = await second_request_cached(stripped, bodies)

    assert stripped_prompt < kept_prompt  # the billing line is gone from the prompt
    # the two stripped prompts are identical: all but the last token or so comes from the cache
    assert stripped_cached >= stripped_prompt // 2, (stripped_cached, stripped_prompt)
    # kept, the prompts part at the billing suffix, a few dozen tokens in
    assert kept_cached < kept_prompt // 4, (kept_cached, kept_prompt)
    assert stripped_cached > kept_cached
    assert cerebras_sim.requests == []
