"""A prompt too long for the upstream's context: llama.cpp and Cerebras word it differently, their
modules tag it once (CONTEXT_LENGTH_EXCEEDED), and each door gives its client's compaction cue:
"prompt is too long" on the Messages door, `context_length_exceeded` on the Responses door."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support import gateway_config

from gateway.dev.sim import SimServer
from gateway.errors import CONTEXT_LENGTH_EXCEEDED, UpstreamHTTPError
from gateway.upstreams import build_upstream

LONG = "word " * 400


SHAPES = {
    # upstream shape: (strategy, config sections)
    "llamacpp": ("always_local", {"models": {"cerebras": {"enabled": False}}}),
    "cerebras": ("always_cerebras", {}),
}


REQUESTS = {
    "messages": (
        "/v1/messages",
        {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": LONG}]},
    ),
    "responses": ("/v1/responses", {"model": "m", "input": LONG}),
    "chat": (
        "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": LONG}]},
    ),
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("door", list(REQUESTS))
@pytest.mark.parametrize("stream", [False, True])
async def test_an_overflow_is_the_doors_compaction_cue(
    make_gateway: Any,
    client: Any,
    local_sim: SimServer,
    cerebras_sim: SimServer,
    shape: str,
    door: str,
    stream: bool,
) -> None:
    strategy, sections = SHAPES[shape]
    sim = local_sim if shape == "llamacpp" else cerebras_sim
    sim.options.n_ctx = 64
    gw = await make_gateway(strategy, **sections)
    path, body = REQUESTS[door]
    async with client.post(gw.root + path, json={**body, "stream": stream}) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert sim.requests  # the upstream itself refused it
    if door == "messages":
        assert error["type"] == "invalid_request_error"
        assert error["message"].startswith("prompt is too long: ")
    elif door == "responses":
        assert error["code"] == "context_length_exceeded"
    else:  # the chat door keeps the upstream's own wording and code
        wording = "context size" if shape == "llamacpp" else "reduce the length"
        assert wording in error["message"]
        assert "prompt is too long" not in error["message"]


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_the_upstream_module_tags_its_own_overflow(
    tmp_path: Path, local_sim: SimServer, cerebras_sim: SimServer, shape: str
) -> None:
    """Each upstream's wording (llama.cpp's `exceed_context_size_error`, Cerebras' "Please reduce
    the length of the messages") becomes one condition; any other refusal carries none."""
    sim = local_sim if shape == "llamacpp" else cerebras_sim
    sim.options.n_ctx = 64
    name = "local" if shape == "llamacpp" else "cerebras"
    config = gateway_config(tmp_path, local_sim.url, cerebras_sim.url)
    body = {"messages": [{"role": "user", "content": LONG}], "max_tokens": 4}
    async with aiohttp.ClientSession() as session:
        upstream = build_upstream(name, config.models[name], session, max_event_bytes=1 << 20)
        with pytest.raises(UpstreamHTTPError) as caught:
            async with upstream.open_stream(body, role="answer"):
                pass
        assert caught.value.status == 400
        assert caught.value.condition == CONTEXT_LENGTH_EXCEEDED
        sim.options.n_ctx = 1_000_000
        with pytest.raises(UpstreamHTTPError) as caught:
            async with upstream.open_stream({"messages": "not a list"}, role="answer"):
                pass
        assert caught.value.status == 400 and caught.value.condition is None
