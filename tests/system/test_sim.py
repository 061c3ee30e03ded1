"""Simulated upstreams: both dialects byte for byte, scripts, quota, faults, disconnects, CLI."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from paths import REPO_ROOT as ROOT
from support import eventually

from gateway.dev.sim import (
    Profile,
    ScriptedAnswer,
    SimOptions,
    SimServer,
    ToolCallSpec,
    create_sim_app,
    running_sim,
    start_sim,
)

DONE = b"data: [DONE]\n\n"


RATE_HEADERS = (
    "x-ratelimit-limit-requests-day",
    "x-ratelimit-limit-tokens-minute",
    "x-ratelimit-remaining-requests-day",
    "x-ratelimit-remaining-tokens-minute",
    "x-ratelimit-reset-requests-day",
    "x-ratelimit-reset-tokens-minute",
)


SCRIPT = {
    "hello": ScriptedAnswer(content="Hi there, friend.", reasoning="The user greets me."),
    "weather?": ScriptedAnswer(
        tool_calls=[
            ToolCallSpec("get_weather", '{"city": "Paris", "unit": "celsius"}', id="call_1"),
            ToolCallSpec("get_time", '{"tz": "CET"}'),
        ]
    ),
    "sure?": ScriptedAnswer(content="Yes indeed", logprob=-1.5),
}


PROFILES: tuple[Profile, ...] = ("llamacpp", "cerebras")


def chat(text: Any, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **extra}


def split_events(raw: bytes) -> list[bytes]:
    """SSE payloads (after `data: `); fails on anything that is not `data: ...\\n\\n` framed."""
    assert raw.endswith(b"\n\n"), raw[-80:]
    parts = raw[:-2].split(b"\n\n")
    assert all(p.startswith(b"data: ") for p in parts), parts
    return [p[6:] for p in parts]


def chunks(raw: bytes) -> list[dict[str, Any]]:
    """The JSON chunks of a complete stream, which must end with exactly one [DONE]."""
    events = split_events(raw)
    assert events.count(b"[DONE]") == 1 and events[-1] == b"[DONE]"
    return [orjson.loads(e) for e in events[:-1]]


def deltas(parsed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in parsed if c.get("choices")]


@pytest.fixture
async def llama() -> AsyncIterator[SimServer]:
    async with running_sim(SimOptions(profile="llamacpp", script=SCRIPT)) as sim:
        yield sim


@pytest.fixture
async def cerebras() -> AsyncIterator[SimServer]:
    async with running_sim(SimOptions(profile="cerebras", script=SCRIPT)) as sim:
        yield sim


@pytest.fixture(params=PROFILES)
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[SimServer]:
    async with running_sim(SimOptions(profile=request.param, script=SCRIPT)) as server:
        yield server


async def post(
    session: aiohttp.ClientSession, sim: SimServer, body: Any, **kw: Any
) -> tuple[int, Any, bytes]:
    async with session.post(sim.url + "/chat/completions", json=body, **kw) as resp:
        return resp.status, resp.headers, await resp.read()


async def stream(session: aiohttp.ClientSession, sim: SimServer, body: dict[str, Any]) -> bytes:
    status, headers, raw = await post(session, sim, {**body, "stream": True})
    assert status == 200, raw
    assert headers["Content-Type"] == "text/event-stream"
    return raw


def text_of(parsed: list[dict[str, Any]], key: str = "content") -> str:
    return "".join(d.get(key) or "" for d in deltas(parsed))


# --- dialects -------------------------------------------------------------------------------------
async def test_llamacpp_stream_bytes(session: aiohttp.ClientSession, llama: SimServer) -> None:
    raw = await stream(session, llama, chat("hello"))
    assert raw.startswith(
        b'data: {"choices":[{"finish_reason":null,"index":0,'
        b'"delta":{"role":"assistant","content":null}}],"created":'
    )
    assert raw.endswith(b"}\n\ndata: [DONE]\n\n") and raw.count(DONE) == 1
    parsed = chunks(raw)
    first = parsed[0]
    assert list(first) == ["choices", "created", "id", "model", "system_fingerprint", "object"]
    assert first["id"].startswith("chatcmpl-") and first["model"] == "sim-local"
    assert first["system_fingerprint"] == "b4000-sim"
    assert {c["id"] for c in parsed} == {first["id"]}
    assert all(c["object"] == "chat.completion.chunk" for c in parsed)
    assert deltas(parsed)[1:-1] == [
        {"reasoning_content": "The"},
        {"reasoning_content": " user"},
        {"reasoning_content": " greets"},
        {"reasoning_content": " me."},
        {"content": "Hi"},
        {"content": " there,"},
        {"content": " friend."},
    ]
    last = parsed[-1]
    assert last["choices"] == [{"finish_reason": "stop", "index": 0, "delta": {}}]
    assert set(last["timings"]) == {
        "prompt_n",
        "prompt_ms",
        "predicted_n",
        "predicted_ms",
        "predicted_per_second",
        "cache_n",
    }
    assert last["timings"]["predicted_n"] == 7 and last["timings"]["prompt_n"] == 2
    assert all("usage" not in c for c in parsed)
    log = llama.requests[-1]
    assert log.finished and log.stream and log.status == 200
    assert log.completion_tokens_sent == 7 and log.prompt_tokens == 2
    assert log.disconnected_at is None and log.first_byte_at is not None


async def test_llamacpp_usage_chunk_only_when_asked(
    session: aiohttp.ClientSession, llama: SimServer
) -> None:
    parsed = chunks(
        await stream(session, llama, chat("hello", stream_options={"include_usage": True}))
    )
    usage = parsed[-1]
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 2, "completion_tokens": 7, "total_tokens": 9}
    assert usage["id"] == parsed[0]["id"] and usage["object"] == "chat.completion.chunk"
    assert parsed[-2]["choices"][0]["finish_reason"] == "stop"
    assert sum("usage" in c for c in parsed) == 1
    no_usage = chunks(
        await stream(session, llama, chat("hello", stream_options={"include_usage": False}))
    )
    assert all("usage" not in c for c in no_usage)


async def test_cerebras_stream_bytes(session: aiohttp.ClientSession, cerebras: SimServer) -> None:
    raw = await stream(session, cerebras, chat("hello", stream_options={"include_usage": True}))
    assert raw.startswith(b'data: {"id":"chatcmpl-')
    assert b"reasoning_content" not in raw and raw.count(DONE) == 1
    parsed = chunks(raw)
    assert parsed[0]["choices"] == [{"delta": {"role": "assistant"}, "index": 0}]
    assert list(parsed[0]) == ["id", "choices", "created", "model", "system_fingerprint", "object"]
    assert parsed[0]["model"] == "zai-glm-4.7" and parsed[0]["system_fingerprint"] == "fp_sim"
    assert text_of(parsed, "reasoning") == "The user greets me."
    assert text_of(parsed) == "Hi there, friend."
    assert all("finish_reason" not in c["choices"][0] for c in parsed[:-2])
    assert parsed[-2]["choices"] == [{"delta": {}, "finish_reason": "stop", "index": 0}]
    usage = parsed[-1]
    assert "choices" not in usage
    assert usage["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": 7,
        "total_tokens": 9,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert set(usage["time_info"]) == {
        "queue_time",
        "prompt_time",
        "completion_time",
        "total_time",
        "created",
    }
    plain = chunks(await stream(session, cerebras, chat("hello")))
    assert all("usage" not in c for c in plain) and len(plain) == len(parsed) - 1


async def test_tool_calls_stream(session: aiohttp.ClientSession, sim: SimServer) -> None:
    parsed = chunks(await stream(session, sim, chat("weather?")))
    calls = [d["tool_calls"] for d in deltas(parsed) if "tool_calls" in d]
    assert all(len(c) == 1 for c in calls)
    heads = [c[0] for c in calls if "id" in c[0]]
    assert heads[0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert heads[1]["index"] == 1 and heads[1]["function"]["name"] == "get_time"
    assert 0 < len(heads[1]["id"]) <= 40 and heads[1]["type"] == "function"
    args = ["", ""]
    for (call,) in calls:
        if "id" not in call:
            assert set(call) == {"index", "function"} and set(call["function"]) == {"arguments"}
            args[call["index"]] += call["function"]["arguments"]
    assert args == ['{"city": "Paris", "unit": "celsius"}', '{"tz": "CET"}']
    assert len(calls) > 4  # arguments arrive in several pieces
    assert parsed[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert sim.requests[-1].completion_tokens_sent == len(calls)


@pytest.mark.parametrize("profile", PROFILES)
async def test_non_stream(session: aiohttp.ClientSession, profile: Profile) -> None:
    async with running_sim(SimOptions(profile=profile, script=SCRIPT)) as sim:
        status, _, raw = await post(session, sim, chat("hello"))
        assert status == 200
        body = orjson.loads(raw)
        reasoning_key = "reasoning_content" if profile == "llamacpp" else "reasoning"
        assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
        assert body["choices"] == [
            {
                "finish_reason": "stop",
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hi there, friend.",
                    reasoning_key: "The user greets me.",
                },
            }
        ]
        assert body["usage"]["completion_tokens"] == 7 and body["usage"]["total_tokens"] == 9
        if profile == "llamacpp":
            assert body["timings"]["predicted_n"] == 7 and "time_info" not in body
        else:
            assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
            assert "total_time" in body["time_info"] and "timings" not in body
        status, _, raw = await post(session, sim, chat("weather?"))
        choice = orjson.loads(raw)["choices"][0]
        assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
        assert [c["function"] for c in choice["message"]["tool_calls"]] == [
            {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
            {"name": "get_time", "arguments": '{"tz": "CET"}'},
        ]
        log = sim.requests[-1]
        assert not log.stream and log.finished and log.completion_tokens_sent == 8


async def test_script_matches_last_user_message_and_list_content(
    session: aiohttp.ClientSession, llama: SimServer
) -> None:
    body = {
        "messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "ok"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}],
            },
        ]
    }
    assert text_of(chunks(await stream(session, llama, body))) == "Hi there, friend."
    generated = text_of(chunks(await stream(session, llama, chat("hello!"))))
    assert generated != "Hi there, friend." and len(generated.split()) == 40
    llama.options.script = {"*": ScriptedAnswer(content="Always this")}
    assert text_of(chunks(await stream(session, llama, chat("anything")))) == "Always this"


async def test_generated_answers_are_deterministic_per_seed(
    session: aiohttp.ClientSession, llama: SimServer
) -> None:
    llama.options.answer_tokens = 25

    async def answer(**extra: Any) -> str:
        parsed = chunks(await stream(session, llama, chat("tell me", **extra)))
        assert parsed[-1]["choices"][0]["finish_reason"] == "stop"
        assert len([d for d in deltas(parsed) if d.get("content")]) == 25
        return text_of(parsed)

    first = await answer()
    assert first == await answer()
    assert not first.startswith(" ") and len(first.split(" ")) == 25
    assert await answer(seed=1) == await answer(seed=1) != await answer(seed=2)
    assert await answer(seed=1) != first
    llama.options.seed = 7
    assert await answer() != first


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
async def test_max_tokens_caps_with_finish_length(
    session: aiohttp.ClientSession, sim: SimServer, key: str
) -> None:
    parsed = chunks(
        await stream(
            session, sim, chat("tell me", stream_options={"include_usage": True}, **{key: 5})
        )
    )
    assert len([d for d in deltas(parsed) if d.get("content")]) == 5
    assert parsed[-2]["choices"][0]["finish_reason"] == "length"
    assert parsed[-1]["usage"]["completion_tokens"] == 5
    # reasoning tokens count against the cap too
    parsed = chunks(await stream(session, sim, chat("hello", **{key: 5})))
    assert text_of(parsed) == "Hi"
    assert parsed[-1]["choices"][0]["finish_reason"] == "length"
    status, _, raw = await post(session, sim, chat("tell me", **{key: 3}))
    body = orjson.loads(raw)
    assert body["choices"][0]["finish_reason"] == "length"
    assert len(body["choices"][0]["message"]["content"].split()) == 3


async def test_logprobs(session: aiohttp.ClientSession, sim: SimServer) -> None:
    parsed = chunks(await stream(session, sim, chat("hello", logprobs=True, top_logprobs=3)))
    choices = [c["choices"][0] for c in parsed]
    content = [c for c in choices if "content" in c["delta"] and c["delta"]["content"]]
    assert len(content) == 3
    for choice in content:
        (entry,) = choice["logprobs"]["content"]
        token = choice["delta"]["content"]
        assert entry["token"] == token and entry["logprob"] == -0.05
        assert entry["bytes"] == list(token.encode())
        top = entry["top_logprobs"]
        assert len(top) == 3 and top[0] == {k: entry[k] for k in ("token", "logprob", "bytes")}
        assert all(t["logprob"] <= entry["logprob"] for t in top)
    assert all("logprobs" not in c for c in choices if "content" not in c["delta"])
    scripted = chunks(await stream(session, sim, chat("sure?", logprobs=True)))
    lps = [c["choices"][0]["logprobs"]["content"][0] for c in scripted[1:-1]]
    assert [lp["logprob"] for lp in lps] == [-1.5, -1.5] and lps[0]["top_logprobs"] == []
    plain = await stream(session, sim, chat("hello"))
    assert b"logprobs" not in plain
    _, _, raw = await post(session, sim, chat("sure?", logprobs=True, top_logprobs=1))
    entries = orjson.loads(raw)["choices"][0]["logprobs"]["content"]
    assert [e["token"] for e in entries] == ["Yes", " indeed"]


async def test_timing_ttft_and_tps(session: aiohttp.ClientSession, llama: SimServer) -> None:
    llama.options.ttft = 0.2
    llama.options.tps = 40
    await stream(session, llama, chat("tell me", max_tokens=10))
    log = llama.requests[-1]
    assert log.first_byte_at is not None and log.ended_at is not None
    assert log.first_byte_at - log.started_at >= 0.2
    assert log.ended_at - log.first_byte_at >= 9 / 40
    llama.options.ttft = llama.options.tps = 0
    await stream(session, llama, chat("tell me", max_tokens=10))
    log = llama.requests[-1]
    assert log.ended_at is not None and log.ended_at - log.started_at < 0.2


# --- errors ---------------------------------------------------------------------------------------
async def test_loading(session: aiohttp.ClientSession) -> None:
    loading = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
    async with running_sim(SimOptions(profile="llamacpp", loading_seconds=30)) as sim:
        async with session.get(sim.base_url + "/health") as resp:
            assert resp.status == 503 and await resp.json() == loading
        status, _, raw = await post(session, sim, chat("hi", stream=True))
        assert status == 503 and orjson.loads(raw) == loading
        sim.state.loading_origin -= 30  # as if 30 s had passed
        async with session.get(sim.base_url + "/health") as resp:
            assert resp.status == 200 and await resp.json() == {"status": "ok"}
        assert (await post(session, sim, chat("hi")))[0] == 200
        async with session.post(sim.base_url + "/_sim/options", json={"loading_seconds": 30}):
            pass
        async with session.get(sim.base_url + "/health") as resp:
            assert resp.status == 503


async def test_context_overflow(session: aiohttp.ClientSession) -> None:
    body = chat("x" * 100)  # 25 prompt tokens
    async with running_sim(SimOptions(profile="llamacpp", n_ctx=10)) as sim:
        status, _, raw = await post(session, sim, body)
        assert status == 400
        assert orjson.loads(raw) == {
            "error": {
                "code": 400,
                "message": "the request exceeds the available context size, try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 25,
                "n_ctx": 10,
            }
        }
        assert (await post(session, sim, chat("x" * 40)))[0] == 200
    async with running_sim(SimOptions(profile="cerebras", n_ctx=10)) as sim:
        status, _, raw = await post(session, sim, {**body, "stream": True})
        assert status == 400
        assert orjson.loads(raw) == {
            "message": "Please reduce the length of the messages or completion.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }


async def test_api_key(session: aiohttp.ClientSession) -> None:
    async with running_sim(SimOptions(profile="cerebras", api_key="sk-1")) as sim:
        status, _, raw = await post(session, sim, chat("hi"))
        assert status == 401
        assert orjson.loads(raw) == {
            "message": "Wrong API Key",
            "type": "invalid_request_error",
            "param": "api_key",
            "code": "wrong_api_key",
        }
        bad = {"Authorization": "Bearer sk-2"}
        assert (await post(session, sim, chat("hi"), headers=bad))[0] == 401
        good = {"Authorization": "Bearer sk-1"}
        assert (await post(session, sim, chat("hi"), headers=good))[0] == 200
        assert sim.requests[-1].headers["Authorization"] == "Bearer sk-1"
    async with running_sim(SimOptions(profile="llamacpp", api_key="k")) as sim:
        status, _, raw = await post(session, sim, chat("hi"))
        assert status == 401 and orjson.loads(raw)["error"]["code"] == 401


async def test_cerebras_temperature_and_bad_bodies(
    session: aiohttp.ClientSession, cerebras: SimServer
) -> None:
    for temperature, expected in ((1.6, 400), (-0.1, 400), (0, 200), (1.5, 200)):
        status, _, raw = await post(session, cerebras, chat("hi", temperature=temperature))
        assert status == expected, raw
    status, _, raw = await post(session, cerebras, chat("hi", temperature=2))
    assert orjson.loads(raw)["param"] == "temperature" and "type" in orjson.loads(raw)
    assert (await post(session, cerebras, {"messages": []}))[0] == 400
    async with session.post(cerebras.url + "/chat/completions", data=b"{not json") as resp:
        assert resp.status == 400


# --- quota ----------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_quota_headers_and_refund(session: aiohttp.ClientSession) -> None:
    options = SimOptions(
        profile="cerebras", script=SCRIPT, quota_tokens_per_minute=1000, quota_requests_per_day=10
    )
    async with running_sim(options) as sim:
        sim.quota.clock = FakeClock()
        status, headers, _ = await post(
            session, sim, chat("hello", stream=True, max_completion_tokens=100)
        )
        assert status == 200
        assert {h: headers[h] for h in RATE_HEADERS} == {
            "x-ratelimit-limit-requests-day": "10.0",
            "x-ratelimit-limit-tokens-minute": "1000.0",
            "x-ratelimit-remaining-requests-day": "9.0",
            "x-ratelimit-remaining-tokens-minute": "898.0",  # 1000 - (2 prompt + 100 reserved)
            "x-ratelimit-reset-requests-day": "8640.0",
            "x-ratelimit-reset-tokens-minute": "6.12",
        }
        assert "retry-after" not in headers
        assert sim.requests[-1].reserved_tokens == 102
        assert sim.quota.tokens_minute is not None
        assert sim.quota.tokens_minute.level == 1000 - 2 - 7  # unused reservation refunded
    async with running_sim(
        SimOptions(
            profile="cerebras", quota_tokens_per_minute=100_000, default_max_completion_tokens=500
        )
    ) as sim:  # without max tokens the default reservation applies
        sim.quota.clock = FakeClock()
        _, headers, _ = await post(session, sim, chat("hello"))
        assert sim.requests[-1].reserved_tokens == 502
        assert headers["x-ratelimit-remaining-tokens-minute"] == "99498.0"
        assert "x-ratelimit-limit-requests-day" not in headers  # unlimited dimension: omitted
    async with running_sim(SimOptions(profile="cerebras")) as sim:
        _, headers, _ = await post(session, sim, chat("hello"))
        assert not any(h.startswith("x-ratelimit") for h in headers)


async def test_quota_429_and_refill(session: aiohttp.ClientSession) -> None:
    options = SimOptions(profile="cerebras", answer_tokens=400, quota_tokens_per_minute=1000)
    async with running_sim(options) as sim:
        clock = FakeClock()
        sim.quota.clock = clock
        body = chat("hi", max_completion_tokens=500)  # reserves 501, uses 401
        assert (await post(session, sim, body))[0] == 200
        assert (await post(session, sim, body))[0] == 200
        status, headers, raw = await post(session, sim, {**body, "stream": True})
        assert status == 429
        assert orjson.loads(raw) == {
            "message": "Tokens per minute limit exceeded - too many tokens processed.",
            "type": "too_many_requests_error",
            "param": "quota",
            "code": "token_quota_exceeded",
        }
        assert headers["x-ratelimit-remaining-tokens-minute"] == "198.0"
        assert headers["x-ratelimit-reset-tokens-minute"] == "48.12"
        assert sim.requests[-1].reserved_tokens == 0
        clock.now += 30  # refills 500 tokens
        status, headers, _ = await post(session, sim, body)
        assert status == 200
        assert headers["x-ratelimit-remaining-tokens-minute"] == str(698.0 - 501)
    options = SimOptions(profile="cerebras", quota_requests_per_day=2, quota_requests_per_minute=50)
    async with running_sim(options) as sim:
        sim.quota.clock = FakeClock()
        assert [(await post(session, sim, chat("hi")))[0] for _ in range(3)] == [200, 200, 429]
        _, headers, raw = await post(session, sim, chat("hi"))
        assert orjson.loads(raw)["code"] == "request_quota_exceeded"
        assert headers["x-ratelimit-remaining-requests-day"] == "0.0"
        assert "x-ratelimit-limit-tokens-minute" not in headers


# --- faults ---------------------------------------------------------------------------------------
async def test_status_faults_fifo_and_shapes(
    session: aiohttp.ClientSession, llama: SimServer
) -> None:
    llama.inject("http_500", count=2)
    llama.inject("http_503_loading")
    llama.inject("http_429_bare")
    results = [await post(session, llama, chat("hello", stream=True)) for _ in range(5)]
    assert [r[0] for r in results] == [500, 500, 503, 429, 200]
    assert orjson.loads(results[0][2]) == {
        "error": {"code": 500, "message": "Internal server error", "type": "server_error"}
    }
    assert orjson.loads(results[2][2])["error"]["message"] == "Loading model"
    bare = orjson.loads(results[3][2])
    assert bare["type"] == "too_many_requests_error" and "error" not in bare
    assert not any(h.startswith("x-ratelimit") for h in results[3][1])
    assert [r.fault for r in llama.requests] == [
        "http_500",
        "http_500",
        "http_503_loading",
        "http_429_bare",
        None,
    ]
    with pytest.raises(ValueError):
        llama.inject("nope")
    with pytest.raises(ValueError):
        llama.inject("cut", after=3)


async def test_http_429_fault_headers(session: aiohttp.ClientSession, cerebras: SimServer) -> None:
    cerebras.inject("http_429")
    cerebras.inject("http_429", reset_seconds=5, kind="requests")
    cerebras.inject("http_500")
    status, headers, raw = await post(session, cerebras, chat("hi"))
    assert status == 429 and orjson.loads(raw)["code"] == "token_quota_exceeded"
    assert all(h in headers for h in RATE_HEADERS)
    assert headers["x-ratelimit-reset-tokens-minute"] == "30.0"
    assert headers["x-ratelimit-remaining-tokens-minute"] == "0.0"
    status, headers, raw = await post(session, cerebras, chat("hi"))
    assert orjson.loads(raw)["code"] == "request_quota_exceeded"
    assert headers["x-ratelimit-reset-requests-day"] == "5.0"
    assert headers["x-ratelimit-remaining-requests-day"] == "0.0"
    status, _, raw = await post(session, cerebras, chat("hi"))
    assert status == 500 and orjson.loads(raw)["type"] == "server_error"
    assert "error" not in orjson.loads(raw)


async def test_slow_first_token(session: aiohttp.ClientSession, llama: SimServer) -> None:
    llama.inject("slow_first_token", delay=0.3)
    started = time.monotonic()
    async with session.post(llama.url + "/chat/completions", json=chat("hi", stream=True)) as r:
        assert time.monotonic() - started >= 0.3  # headers waited too (the sim slept first)
        chunks(await r.read())
    await stream(session, llama, chat("hi"))
    assert [log.fault for log in llama.requests] == ["slow_first_token", None], "the next only"


async def next_event(resp: aiohttp.ClientResponse, timeout: float = 10.0) -> bytes:
    return await asyncio.wait_for(resp.content.readuntil(b"\n\n"), timeout)


async def test_stall_holds_after_its_chunks(
    session: aiohttp.ClientSession, llama: SimServer
) -> None:
    llama.inject("stall", after_chunks=3, seconds=3600)
    async with session.post(llama.url + "/chat/completions", json=chat("hello", stream=True)) as r:
        events = [await next_event(r) for _ in range(3)]  # role + 2 tokens arrive
        log = llama.requests[-1]
        assert log.fault == "stall"
        await eventually(lambda: log.completion_tokens_sent >= 2, "the sim counts what it sent")
        # silent from here; a missing stall would send the rest at once (it is never late)
        with pytest.raises(asyncio.TimeoutError):
            await next_event(r, timeout=0.5)
        assert log.completion_tokens_sent == 2 and log.ended_at is None
        r.close()
    assert orjson.loads(split_events(b"".join(events))[0])["choices"][0]["delta"]["role"]


async def test_stall_then_resume(session: aiohttp.ClientSession, llama: SimServer) -> None:
    llama.inject("stall", after_chunks=3, seconds=0.4)
    started = time.monotonic()
    async with session.post(llama.url + "/chat/completions", json=chat("hello", stream=True)) as r:
        events = [await next_event(r) for _ in range(3)]
        fourth = await next_event(r)
        resumed = time.monotonic()
        rest = await r.read()
    assert resumed - started >= 0.4, "the 4th event waited out the stall"
    assert text_of(chunks(b"".join(events) + fourth + rest)) == "Hi there, friend."
    assert llama.requests[-1].finished


async def test_hold_keeps_answers_until_released(
    session: aiohttp.ClientSession, llama: SimServer
) -> None:
    release = llama.hold()
    streamed = asyncio.create_task(stream(session, llama, chat("hello")))
    answered = asyncio.create_task(post(session, llama, chat("hello")))
    await eventually(lambda: len(llama.requests) == 2, "both requests arrive")
    assert not streamed.done() and not answered.done()
    assert all(log.first_byte_at is None for log in llama.requests), "nothing sent while held"
    release.set()
    assert text_of(chunks(await streamed)) == "Hi there, friend."
    status, _, raw = await answered
    assert status == 200 and orjson.loads(raw)["choices"][0]["message"]["content"]
    assert all(log.finished for log in llama.requests)


async def test_cut(session: aiohttp.ClientSession, sim: SimServer) -> None:
    sim.inject("cut", after_chunks=3)
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.post(
            sim.url + "/chat/completions", json=chat("hello", stream=True)
        ) as r:
            async for data in r.content.iter_any():
                received += data
    assert len(split_events(received)) == 3 and DONE not in received
    log = sim.requests[-1]
    assert log.fault == "cut" and not log.finished and log.completion_tokens_sent == 2
    assert log.disconnected_at is None
    await stream(session, sim, chat("hello"))  # the sim keeps serving


async def test_malformed_event(session: aiohttp.ClientSession, llama: SimServer) -> None:
    llama.inject("malformed_event")
    raw = await stream(session, llama, chat("hello"))
    events = split_events(raw)
    assert events[2] == b'{"choices": [{"delta": {"content": '
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(events[2])
    good = raw.replace(b'data: {"choices": [{"delta": {"content": \n\n', b"", 1)
    assert text_of(chunks(good)) == "Hi there, friend."


async def test_garbage(session: aiohttp.ClientSession, cerebras: SimServer) -> None:
    cerebras.inject("garbage")
    _, _, raw = await post(session, cerebras, chat("hello", stream=True))
    head, _, tail = raw.rpartition(b"\n\n")
    assert len(split_events(head + b"\n\n")) == 2
    assert len(tail) == 4096 and b"\n" not in tail and b"\r" not in tail
    with pytest.raises(UnicodeDecodeError):
        tail.decode()
    assert not cerebras.requests[-1].finished


async def test_huge_event(session: aiohttp.ClientSession, llama: SimServer) -> None:
    llama.inject("huge_event")
    parsed = chunks(await stream(session, llama, chat("hello")))
    assert len(parsed[1]["choices"][0]["delta"]["content"]) == 1_200_000
    assert text_of(parsed).endswith("Hi there, friend.")
    llama.inject("huge_event", size=10)
    _, _, raw = await post(session, llama, chat("hello"))
    assert orjson.loads(raw)["choices"][0]["message"]["content"] == "x" * 10 + "Hi there, friend."


async def test_error_event(session: aiohttp.ClientSession, sim: SimServer) -> None:
    sim.inject("error_event", after_chunks=2)
    raw = await stream(session, sim, chat("hello"))
    events = split_events(raw)
    assert len(events) == 3 and DONE not in raw
    error = orjson.loads(events[2])["error"]
    assert error["message"] == "Internal server error" and error["type"] == "server_error"
    assert not sim.requests[-1].finished


async def test_drop(session: aiohttp.ClientSession, sim: SimServer) -> None:
    sim.inject("drop")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(session, sim, chat("hello", stream=True))
    assert sim.requests[-1].fault == "drop" and sim.requests[-1].status == 0
    assert (await post(session, sim, chat("hello")))[0] == 200


async def test_faults_without_stream(session: aiohttp.ClientSession, llama: SimServer) -> None:
    llama.inject("malformed_event")
    llama.inject("garbage")
    llama.inject("error_event")
    llama.inject("stall", seconds=0.2)
    _, _, raw = await post(session, llama, chat("hello"))
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    _, _, raw = await post(session, llama, chat("hello"))
    assert len(raw) == 4096 and b"\n" not in raw
    status, _, raw = await post(session, llama, chat("hello"))
    assert status == 500 and orjson.loads(raw)["error"]["type"] == "server_error"
    started = time.monotonic()
    status, _, raw = await post(session, llama, chat("hello"))
    assert status == 200 and time.monotonic() - started >= 0.2
    assert orjson.loads(raw)["choices"][0]["message"]["content"] == "Hi there, friend."
    llama.inject("cut")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(session, llama, chat("hello"))
    assert [r.finished for r in llama.requests] == [False, False, False, True, False]


# --- disconnects ----------------------------------------------------------------------------------
async def wait_disconnect(sim: SimServer, closed_at: float) -> None:
    """Wait until the sim saw the client of its last request leave (after `closed_at`)."""
    log = sim.requests[-1]
    await eventually(lambda: log.disconnected_at is not None, "the sim records the disconnect")
    assert log.disconnected_at is not None and log.disconnected_at >= closed_at


async def test_client_disconnect_detected(session: aiohttp.ClientSession, llama: SimServer) -> None:
    llama.options.tps = 20
    llama.options.answer_tokens = 2000  # 100 s: only the disconnect ends it while the test waits
    async with session.post(llama.url + "/chat/completions", json=chat("x", stream=True)) as r:
        for _ in range(3):
            await r.content.readuntil(b"\n\n")
        r.close()
        closed_at = time.monotonic()
    await wait_disconnect(llama, closed_at)
    log = llama.requests[-1]
    assert not log.finished and 2 <= log.completion_tokens_sent < 2000


@pytest.mark.parametrize("where", ["stall", "ttft"])
async def test_disconnect_while_silent(
    session: aiohttp.ClientSession, cerebras: SimServer, where: str
) -> None:
    if where == "stall":
        cerebras.inject("stall", after_chunks=2)
    else:
        cerebras.options.ttft = 3600
    timeout = aiohttp.ClientTimeout(total=0.3)
    with pytest.raises(asyncio.TimeoutError):
        await post(session, cerebras, chat("x", stream=True), timeout=timeout)
    await wait_disconnect(cerebras, 0.0)  # nothing is written while silent: noticed anyway
    assert cerebras.requests[-1].status == (200 if where == "stall" else 0)


# --- control, other endpoints, app factory, CLI ---------------------------------------------------
async def test_http_control(session: aiohttp.ClientSession, cerebras: SimServer) -> None:
    base = cerebras.base_url
    async with session.post(base + "/_sim/inject", json={"fault": "http_500", "count": 2}) as r:
        assert r.status == 200
    async with session.post(base + "/_sim/inject", json={"fault": "bogus"}) as r:
        assert r.status == 400
    assert [(await post(session, cerebras, chat("hi")))[0] for _ in range(3)] == [500, 500, 200]
    changes = {"answer_tokens": 3, "tps": 0, "script": {"q": {"content": "A b"}}}
    async with session.post(base + "/_sim/options", json=changes) as r:
        assert r.status == 200 and (await r.json())["answer_tokens"] == 3
    async with session.post(base + "/_sim/options", json={"profile": "llamacpp"}) as r:
        assert r.status == 400
    assert text_of(chunks(await stream(session, cerebras, chat("q")))) == "A b"
    assert len(text_of(chunks(await stream(session, cerebras, chat("z")))).split()) == 3
    async with session.get(base + "/_sim/requests") as r:
        log = await r.json()
    assert [e["fault"] for e in log] == ["http_500", "http_500", None, None, None]
    assert log[-1]["body"]["messages"][0]["content"] == "z" and log[-1]["finished"] is True
    async with session.post(base + "/_sim/options", json={"quota_tokens_per_minute": 500}):
        pass
    assert (await post(session, cerebras, chat("q")))[0] == 429  # default reservation > 500
    async with session.post(base + "/_sim/clear") as r:
        assert r.status == 200
    assert cerebras.requests == []


async def test_other_endpoints(
    session: aiohttp.ClientSession, llama: SimServer, cerebras: SimServer
) -> None:
    async with session.get(llama.url + "/models") as r:
        assert (await r.json())["data"][0]["id"] == "sim-local"
    async with session.get(cerebras.url + "/models") as r:
        assert (await r.json())["data"][0]["id"] == "zai-glm-4.7"
    async with session.get(llama.base_url + "/props") as r:
        assert (await r.json())["default_generation_settings"]["n_ctx"] == 1_000_000
    async with session.get(cerebras.base_url + "/health") as r:
        assert await r.json() == {"status": "ok"}
    async with session.get(cerebras.base_url + "/slots") as r:
        assert r.status == 404
    llama.options.tps = 20
    async with session.post(llama.url + "/chat/completions", json=chat("x", stream=True)) as resp:
        await resp.content.readuntil(b"\n\n")
        async with session.get(llama.base_url + "/slots") as r:
            assert await r.json() == [{"id": 0, "is_processing": True}]
        resp.close()
    await wait_disconnect(llama, 0)
    async with session.get(llama.base_url + "/slots") as r:
        assert await r.json() == [{"id": 0, "is_processing": False}]


async def test_create_sim_app_with_fixture(aiohttp_client: Any) -> None:
    app, state = create_sim_app(SimOptions(profile="llamacpp", script=SCRIPT))
    client = await aiohttp_client(app)
    resp = await client.post("/v1/chat/completions", json=chat("hello", stream=True))
    assert text_of(chunks(await resp.read())) == "Hi there, friend."
    assert state.requests[-1].finished


async def test_start_sim_context_manager(session: aiohttp.ClientSession) -> None:
    async with await start_sim(SimOptions(profile="cerebras")) as sim:
        assert sim.url == f"http://127.0.0.1:{sim.port}/v1" and sim.port > 0
        assert (await post(session, sim, chat("hi")))[0] == 200
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(session, sim, chat("hi"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_cli(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_bytes(orjson.dumps({"ping": {"content": "pong pong", "reasoning": "hm"}}))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.dev.sim",
        "--profile",
        "llamacpp",
        "--port",
        str(port),
        "--script",
        str(script),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        assert f"http://127.0.0.1:{port}/v1".encode() in line
        async with session.get(f"http://127.0.0.1:{port}/health") as r:
            assert r.status == 200
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        async with session.post(url, json=chat("ping", stream=True)) as r:
            parsed = chunks(await r.read())
        assert text_of(parsed) == "pong pong" and text_of(parsed, "reasoning_content") == "hm"
    finally:
        if proc.returncode is None:
            proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0


def test_prompt_token_estimate() -> None:
    from gateway.dev.sim.text import estimate_prompt_tokens, split_tokens

    tools = [{"type": "function", "function": {"name": "f"}}]
    body = {"messages": [{"role": "user", "content": "abcdefgh"}, {"role": "user", "content": "x"}]}
    assert estimate_prompt_tokens(body) == 3
    assert estimate_prompt_tokens({**body, "tools": tools}) == math.ceil(
        (9 + len(orjson.dumps(tools))) / 4
    )
    assert estimate_prompt_tokens({"messages": [{"role": "user", "content": ""}]}) == 1
    for odd in (True, 1.0, "calls", {"name": "f"}):  # found by tests/integration/test_fuzz.py
        odd_calls = {"messages": [{"role": "system", "content": "abcd", "tool_calls": odd}]}
        assert estimate_prompt_tokens(odd_calls) == 1, "tool_calls that are not a list count 0"
    for text in ("", "a", " lead", "a  b\n\nc ", "x\ty"):
        assert "".join(split_tokens(text)) == text
    assert split_tokens("Hi there, friend.") == ["Hi", " there,", " friend."]
