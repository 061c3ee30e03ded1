"""Errors and fallback (docs/wire.md, "Errors"): before the first byte the other upstream
serves or the client gets a real HTTP status; after it, one error event and a clean close."""

from __future__ import annotations

import time
from typing import Any

import pytest
from support import chat, eventually, post_stream, read_then_leave, refused_url

from gateway.dev.sim import SimServer


def assert_openai_error(body: dict) -> dict:
    assert set(body) == {"error"}
    error = body["error"]
    assert {"message", "type", "param", "code"} <= set(error)
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.mark.parametrize(
    ("fault", "params"),
    [
        ("http_500", {}),
        ("http_503_loading", {}),
        ("drop", {}),
        ("cut", {"after_chunks": 0}),
        ("malformed_event", {"after_chunks": 0}),
        ("error_event", {"after_chunks": 0}),
    ],
)
async def test_local_fault_before_first_byte_falls_back(
    make_gateway, client, local_sim: SimServer, cerebras_sim: SimServer, fault, params
) -> None:
    local_sim.inject(fault, **params)
    gw = await make_gateway("always_local")
    reply = await post_stream(client, gw.url, chat(stream=True))
    assert reply.status == 200, reply.raw
    assert reply.data[-1] == "[DONE]"
    assert reply.chunks[-1]["model_used"] == "cerebras"
    assert len(cerebras_sim.requests) == 1
    stats = gw.services.stats.get_statistics()
    assert stats["requests"]["by_model"]["cerebras"] == 1
    assert stats["errors"]["by_model"]["local"] == 1


async def test_refused_connection_falls_back(make_gateway, client, tmp_path, cerebras_sim) -> None:
    from support import gateway_config

    with refused_url() as local_url:
        config = gateway_config(tmp_path, local_url, cerebras_sim.url, strategy="always_local")
        gw = await make_gateway(config=config)
        reply = await post_stream(client, gw.url, chat(stream=True))
    assert reply.status == 200
    assert reply.chunks[-1]["model_used"] == "cerebras"


async def test_cerebras_429_falls_back_to_local(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    cerebras_sim.inject("http_429")
    gw = await make_gateway("always_cerebras")
    reply = await post_stream(client, gw.url, chat(stream=True))
    assert reply.status == 200
    assert reply.chunks[-1]["model_used"] == "local"
    stats = gw.services.stats.get_statistics()
    assert stats["rate_limits"]["total_hits"] == 1


async def test_slow_first_token_falls_back_within_timeout(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    local_sim.inject("slow_first_token", delay=30.0)
    gw = await make_gateway("always_local", timeouts={"first_token": 0.5})
    started = time.monotonic()
    reply = await post_stream(client, gw.url, chat(stream=True))
    elapsed = time.monotonic() - started
    assert reply.chunks[-1]["model_used"] == "cerebras"
    assert elapsed < 0.5 + 1.0


async def test_no_fallback_gives_real_http_status_with_upstream_wording(
    make_gateway, client, local_sim
) -> None:
    local_sim.options.n_ctx = 5
    gw = await make_gateway("always_local", routing={"fallback": {"to_cerebras": False}})
    long_prompt = "word " * 200
    for stream in (True, False):
        async with client.post(
            gw.url + "/chat/completions", json=chat(long_prompt, stream=stream)
        ) as resp:
            assert resp.status == 400
            assert resp.content_type == "application/json"
            error = assert_openai_error(await resp.json())
        assert error["type"] == "exceed_context_size_error"
        assert "context" in error["message"]


async def test_cerebras_flat_error_wrapped(make_gateway, client, cerebras_sim) -> None:
    cerebras_sim.options.n_ctx = 5
    gw = await make_gateway("always_cerebras", routing={"fallback": {"to_local": False}})
    async with client.post(
        gw.url + "/chat/completions", json=chat("word " * 200, stream=True)
    ) as resp:
        assert resp.status == 400
        error = assert_openai_error(await resp.json())
    assert error["message"] == "Please reduce the length of the messages or completion."
    assert error["code"] == "context_length_exceeded"


async def test_all_rate_limited_gives_429_with_retry_headers(
    make_gateway, client, cerebras_sim
) -> None:
    cerebras_sim.inject("http_429", reset_seconds=12.5)
    gw = await make_gateway("always_cerebras", routing={"fallback": {"to_local": False}})
    async with client.post(gw.url + "/chat/completions", json=chat(stream=True)) as resp:
        assert resp.status == 429
        assert_openai_error(await resp.json())
        assert resp.headers["retry-after"] == "13"
        assert 12000 <= int(resp.headers["retry-after-ms"]) <= 12500
        assert resp.headers["x-should-retry"] == "true"


@pytest.mark.parametrize(
    ("fault", "params"),
    [
        ("cut", {"after_chunks": 4}),
        ("error_event", {"after_chunks": 4}),
        ("malformed_event", {"after_chunks": 4}),
        ("garbage", {"after_chunks": 4}),
    ],
)
async def test_failure_after_first_byte_is_one_error_event(
    make_gateway, client, local_sim, cerebras_sim, fault, params
) -> None:
    local_sim.inject(fault, **params)
    gw = await make_gateway("always_local")
    reply = await post_stream(client, gw.url, chat(stream=True))
    assert reply.status == 200
    data = reply.data
    assert "[DONE]" not in data
    errors = [d for d in data if isinstance(d, dict) and "error" in d]
    assert len(errors) == 1 and data[-1] is not None and "error" in data[-1]
    assert_openai_error(data[-1])
    assert reply.text, "content had reached the client before the failure"
    assert len(cerebras_sim.requests) == 0, "no silent switch after content was sent"
    stats = gw.services.stats.get_statistics()
    assert stats["requests"]["by_outcome"] == {"error": 1}


async def test_idle_stall_ends_with_error_event(make_gateway, client, local_sim) -> None:
    local_sim.inject("stall", after_chunks=3, seconds=30)
    gw = await make_gateway("always_local", timeouts={"idle": 0.4})
    started = time.monotonic()
    reply = await post_stream(client, gw.url, chat(stream=True))
    assert time.monotonic() - started < 0.4 + 1.0
    assert "error" in reply.data[-1]
    assert reply.data[-1]["error"]["type"] == "upstream_timeout"


async def test_empty_answer_falls_back(make_gateway, client, local_sim, cerebras_sim) -> None:
    from gateway.dev.sim import ScriptedAnswer

    local_sim.options.script = {"*": ScriptedAnswer(content="")}
    gw = await make_gateway("always_local")
    reply = await post_stream(client, gw.url, chat(stream=True))
    assert reply.chunks[-1]["model_used"] == "cerebras"
    assert reply.text


async def test_client_disconnect_closes_the_upstream(make_gateway, client, local_sim) -> None:
    local_sim.options.tps = 50.0
    local_sim.options.answer_tokens = 2000  # 40 s: only the disconnect ends it while we wait
    gw = await make_gateway("always_local")
    closed_at = await read_then_leave(client, gw.url, chat(stream=True), 6)
    log = local_sim.requests[-1]
    await eventually(lambda: log.disconnected_at is not None, "the upstream sees the close")
    assert log.disconnected_at is not None and log.disconnected_at >= closed_at
    assert not log.finished

    def stats() -> dict[str, Any]:
        return gw.services.stats.get_statistics()

    await eventually(lambda: stats()["requests"]["total"], "the request is recorded")
    assert stats()["requests"]["by_outcome"] == {"client_disconnected": 1}
    assert stats()["tokens"]["by_model"]["local"]["completion"] >= 4


async def test_non_stream_fallback_after_mid_generation_cut(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    """A non-stream client has seen nothing until the end, so even a mid-answer cut falls back."""
    local_sim.inject("cut", after_chunks=5)
    gw = await make_gateway("always_local")
    async with client.post(gw.url + "/chat/completions", json=chat()) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["model_used"] == "cerebras"
    calls = gw.services.stats.get_statistics()["tokens"]["by_model"]["local"]
    assert calls["completion"] > 0, "the abandoned local tokens are still counted"
