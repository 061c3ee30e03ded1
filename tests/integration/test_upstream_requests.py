"""Upstream request building, chunk normalisation and error mapping, against aioresponses mocks.

aioresponses hands the whole body at once: these tests pin what is sent and how answers and errors
are mapped, not timing or streaming order (those need a real server on loopback).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
import pytest
from aioresponses import aioresponses
from yarl import URL

from gateway.accounting.records import UpstreamCall
from gateway.accounting.tokens import estimate_completion_tokens, estimate_prompt_tokens
from gateway.config import ModelConfig, parse_config
from gateway.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamStreamError,
)
from gateway.upstreams import (
    CerebrasUpstream,
    LlamaCppUpstream,
    OpenAICompatibleUpstream,
    build_upstream,
)

LOCAL_URL = "http://127.0.0.1:41447/v1/chat/completions"


CEREBRAS_URL = "https://api.cerebras.ai/v1/chat/completions"


KEY = "csk-test-0123456789"


ENV = {"CEREBRAS_API_KEY": KEY}


GATEWAY_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}


# llama.cpp connections are pooled too (a stale one is retried, see gateway.upstreams.client)
LOCAL_HEADERS = GATEWAY_HEADERS


USER = [{"role": "user", "content": "What is 2+2?"}]


def model(
    name: str, section: Mapping[str, Any] | None = None, env: Mapping[str, str] = ENV
) -> ModelConfig:
    data = {"models": {name: dict(section)}} if section is not None else None
    return parse_config(data, env=env).models[name]


def sse(*events: Any, done: bool = True) -> bytes:
    out = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
    return out + (b"data: [DONE]\n\n" if done else b"")


def chunk(delta: Mapping[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "upstream-model",
        "choices": [{"index": 0, "delta": dict(delta), "finish_reason": finish}],
        **extra,
    }


ANSWER = (
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "4"}),
    chunk({}, "stop"),
)


def local(session: aiohttp.ClientSession, **section: Any) -> OpenAICompatibleUpstream:
    return build_upstream("local", model("local", section), session, max_event_bytes=1 << 20)


def cerebras(
    session: aiohttp.ClientSession, env: Mapping[str, str] = ENV, **section: Any
) -> OpenAICompatibleUpstream:
    cfg = model("cerebras", section, env)
    return build_upstream("cerebras", cfg, session, max_event_bytes=1 << 20)


async def drain(
    upstream: OpenAICompatibleUpstream,
    body: Mapping[str, Any],
    calls: list[UpstreamCall] | None = None,
    **kwargs: Any,
) -> tuple[list[dict[str, Any]], Any]:
    chunks: list[dict[str, Any]] = []
    opening = upstream.open_stream(body, **kwargs)
    if calls is not None:
        calls.append(opening.call)
    async with opening as stream:
        async for c in stream:
            chunks.append(c.data)
    return chunks, stream


def sent(mocked: aioresponses, url: str) -> tuple[dict[str, Any], dict[str, str]]:
    requests = mocked.requests[("POST", URL(url))]
    assert len(requests) == 1
    kwargs = requests[0].kwargs
    return orjson.loads(kwargs["data"]), dict(kwargs["headers"])


async def send_body(
    mocked: aioresponses, upstream: OpenAICompatibleUpstream, url: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    mocked.post(url, body=sse(*ANSWER), content_type="text/event-stream")
    await drain(upstream, body)
    return sent(mocked, url)[0]


def test_build_upstream_picks_the_class_of_the_kind(session: aiohttp.ClientSession) -> None:
    assert type(local(session)) is LlamaCppUpstream
    assert type(cerebras(session)) is CerebrasUpstream
    openai = build_upstream(
        "local", model("local", {"kind": "openai"}), session, max_event_bytes=1024
    )
    assert type(openai) is OpenAICompatibleUpstream
    assert local(session).config.chat_url == LOCAL_URL
    assert cerebras(session).config.chat_url == CEREBRAS_URL


PASSTHROUGH: dict[str, Any] = {
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "read_file",
                "description": "Read a file",
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
            },
        }
    ],
    "tool_choice": "auto",
    "response_format": {"type": "json_object"},
    "stop": ["\n\nUser:", "</answer>"],
    "seed": 1234,
    "top_p": 0.9,
    "logprobs": True,
    "top_logprobs": 3,
    "parallel_tool_calls": False,
    "user": "someone",
    "some_vendor_field": {"nested": [1, 2, 3]},
}


@pytest.mark.parametrize("which", ["local", "cerebras"])
async def test_body_owns_model_stream_and_usage_and_passes_the_rest(
    which: str, session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    client = {
        "model": "gpt-4o",
        "messages": USER,
        "stream": False,
        "stream_options": {"include_usage": False},
        **PASSTHROUGH,
    }
    upstream = local(session) if which == "local" else cerebras(session)
    url = LOCAL_URL if which == "local" else CEREBRAS_URL
    body = await send_body(mocked, upstream, url, client)
    assert body["model"] == upstream.config.model
    assert body["model"] != "gpt-4o"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == USER
    for key, value in PASSTHROUGH.items():
        assert body[key] == value, key
    owned = {"model", "stream", "stream_options", "messages", "max_completion_tokens"}
    assert set(body) - owned == set(PASSTHROUGH)
    assert client["stream"] is False  # the client's dict is not modified
    assert client["stream_options"] == {"include_usage": False}


async def test_body_adds_stream_options_when_the_client_sent_none(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    body = await send_body(mocked, local(session), LOCAL_URL, {"messages": USER})
    assert body == {
        "messages": USER,
        "model": "local-model",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_configured_model_name_is_sent(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    upstream = local(session, model="unsloth_GLM-4.7-Flash-GGUF_GLM-4.7-Flash-Q4_K_M")
    body = await send_body(mocked, upstream, LOCAL_URL, {"model": "x", "messages": USER})
    assert body["model"] == "unsloth_GLM-4.7-Flash-GGUF_GLM-4.7-Flash-Q4_K_M"
    body = await send_body(
        mocked, cerebras(session), CEREBRAS_URL, {"model": "x", "messages": USER}
    )
    assert body["model"] == "zai-glm-4.7"


@pytest.mark.parametrize(
    ("client", "cap", "expected"),
    [
        ({"max_tokens": 100}, None, 100),
        ({"max_tokens": 50_000}, None, 8192),
        ({}, None, 8192),
        ({"max_completion_tokens": 300}, None, 300),
        ({"max_completion_tokens": 300, "max_tokens": 7}, None, 300),
        ({"max_completion_tokens": 40_000}, None, 8192),
        ({"max_tokens": 2000}, 1000, 1000),
        ({"max_tokens": 500}, 1000, 500),
        ({}, 1000, 1000),
    ],
)
async def test_cerebras_max_completion_tokens_mapped_and_capped(
    client: dict[str, Any],
    cap: int | None,
    expected: int,
    session: aiohttp.ClientSession,
    mocked: aioresponses,
) -> None:
    section = {"max_completion_tokens_cap": cap} if cap is not None else {}
    body = await send_body(
        mocked, cerebras(session, **section), CEREBRAS_URL, {"messages": USER, **client}
    )
    assert "max_tokens" not in body
    assert body["max_completion_tokens"] == expected


@pytest.mark.parametrize(
    ("temperature", "expected"), [(0, 0), (0.7, 0.7), (1.5, 1.5), (1.51, 1.5), (2, 1.5)]
)
async def test_cerebras_temperature_clamped_to_1_5(
    temperature: float, expected: float, session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    body = await send_body(
        mocked, cerebras(session), CEREBRAS_URL, {"messages": USER, "temperature": temperature}
    )
    assert body["temperature"] == expected


async def test_local_temperature_not_clamped(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    body = await send_body(
        mocked, local(session), LOCAL_URL, {"messages": USER, "temperature": 2.0}
    )
    assert body["temperature"] == 2.0


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        ({"max_completion_tokens": 256}, 256),
        ({"max_tokens": 64}, 64),
        ({"max_tokens": 64, "max_completion_tokens": 256}, 64),
        ({"max_tokens": 50_000}, 50_000),  # no cap on the local server
    ],
)
async def test_llamacpp_max_completion_tokens_becomes_max_tokens(
    client: dict[str, Any], expected: int, session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    body = await send_body(mocked, local(session), LOCAL_URL, {"messages": USER, **client})
    assert "max_completion_tokens" not in body
    assert body["max_tokens"] == expected


async def test_llamacpp_sends_no_limit_when_the_client_sent_none(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    body = await send_body(mocked, local(session), LOCAL_URL, {"messages": USER})
    assert "max_tokens" not in body
    assert "max_completion_tokens" not in body


async def test_cerebras_headers_are_the_gateways_with_its_own_bearer_key(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.post(CEREBRAS_URL, body=sse(*ANSWER), content_type="text/event-stream")
    await drain(cerebras(session), {"messages": USER})
    _, headers = sent(mocked, CEREBRAS_URL)
    assert headers == {**GATEWAY_HEADERS, "Authorization": f"Bearer {KEY}"}


async def test_local_gets_no_authorization_header(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.post(LOCAL_URL, body=sse(*ANSWER), content_type="text/event-stream")
    await drain(local(session), {"messages": USER})
    _, headers = sent(mocked, LOCAL_URL)
    assert headers == LOCAL_HEADERS
    assert not any(k.lower() == "authorization" for k in headers)


async def test_request_id_is_the_only_extra_header(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.post(LOCAL_URL, body=sse(*ANSWER), content_type="text/event-stream")
    await drain(local(session), {"messages": USER}, request_id="req-42")
    _, headers = sent(mocked, LOCAL_URL)
    assert headers == {**LOCAL_HEADERS, "X-Request-Id": "req-42"}


async def test_client_fields_never_become_headers(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    client = {
        "messages": USER,
        "headers": {"Authorization": "Bearer client-key"},
        "extra_headers": {"X-Conversation-Id": "abc"},
    }
    mocked.post(CEREBRAS_URL, body=sse(*ANSWER), content_type="text/event-stream")
    await drain(cerebras(session), client)
    _, headers = sent(mocked, CEREBRAS_URL)
    assert headers == {**GATEWAY_HEADERS, "Authorization": f"Bearer {KEY}"}
    assert "client-key" not in repr(headers)


async def test_cerebras_without_key_makes_no_call(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    upstream = cerebras(session, env={})
    assert upstream.config.api_key == ""
    calls: list[UpstreamCall] = []
    with pytest.raises(UpstreamHTTPError) as info:
        await drain(upstream, {"messages": USER}, calls)
    assert mocked.requests == {}
    exc = info.value
    assert exc.status == 401
    assert exc.fallback_ok is True
    assert exc.upstream == "cerebras"
    assert set(exc.body()["error"]) >= {"message", "type", "param", "code"}
    assert len(calls) == 1
    assert calls[0].upstream == "cerebras"
    assert calls[0].status == "error"
    assert calls[0].prompt_tokens == 0


@pytest.mark.parametrize(
    ("api_key", "env", "expected"),
    [
        ("${CEREBRAS_API_KEY}", {"CEREBRAS_API_KEY": "csk-from-ref"}, "csk-from-ref"),
        ("", {"CEREBRAS_API_KEY": "csk-from-env"}, "csk-from-env"),
        ("your-api-key", {"CEREBRAS_API_KEY": "csk-from-env"}, "csk-from-env"),
        ("csk-literal", {"CEREBRAS_API_KEY": "csk-from-env"}, "csk-literal"),
    ],
)
async def test_cerebras_key_sources(
    api_key: str,
    env: dict[str, str],
    expected: str,
    session: aiohttp.ClientSession,
    mocked: aioresponses,
) -> None:
    mocked.post(CEREBRAS_URL, body=sse(*ANSWER), content_type="text/event-stream")
    await drain(cerebras(session, env=env, api_key=api_key), {"messages": USER})
    _, headers = sent(mocked, CEREBRAS_URL)
    assert headers["Authorization"] == f"Bearer {expected}"


@pytest.mark.parametrize("api_key", ["${CEREBRAS_API_KEY}", "your-api-key", ""])
async def test_cerebras_placeholder_key_without_env_makes_no_call(
    api_key: str, session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    with pytest.raises(UpstreamHTTPError) as info:
        await drain(cerebras(session, env={}, api_key=api_key), {"messages": USER})
    assert info.value.status == 401
    assert mocked.requests == {}


async def test_cerebras_chunks_normalised_and_usage_captured(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    time_info = {"queue_time": 0.001, "prompt_time": 0.01, "completion_time": 0.2}
    usage = {
        "prompt_tokens": 120,
        "completion_tokens": 9,
        "total_tokens": 129,
        "prompt_tokens_details": {"cached_tokens": 64},
    }
    events = [
        chunk({"role": "assistant", "content": ""}, time_info=time_info),
        chunk({"reasoning": "Two plus two"}, time_info=time_info),
        chunk({"content": "4"}),
        chunk({}, "stop", time_info=time_info),
        {"id": "chatcmpl-1", "usage": usage, "time_info": time_info},  # no "choices"
    ]
    mocked.post(CEREBRAS_URL, body=sse(*events), content_type="text/event-stream")
    calls: list[UpstreamCall] = []
    chunks, stream = await drain(cerebras(session), {"messages": USER}, calls)
    assert len(chunks) == 4
    assert all("time_info" not in c and "usage" not in c for c in chunks)
    assert chunks[1]["choices"][0]["delta"] == {"reasoning_content": "Two plus two"}
    assert chunks[2]["choices"][0]["delta"] == {"content": "4"}
    assert chunks[3]["choices"][0]["finish_reason"] == "stop"
    assert stream.usage == usage
    assert stream.saw_done is True
    assert stream.finish_reasons == {0: "stop"}
    assert stream.extras["time_info"] == time_info
    assert len(calls) == 1
    call = calls[0]
    assert (call.upstream, call.role, call.status, call.http_status) == (
        "cerebras",
        "answer",
        "ok",
        200,
    )
    assert (call.prompt_tokens, call.completion_tokens, call.cached_tokens) == (120, 9, 64)
    assert call.estimated is False
    assert call.error is None


async def test_cerebras_usage_chunk_with_empty_choices_also_swallowed(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    events = [*ANSWER, {"id": "chatcmpl-1", "choices": [], "usage": usage}]
    mocked.post(CEREBRAS_URL, body=sse(*events), content_type="text/event-stream")
    chunks, stream = await drain(cerebras(session), {"messages": USER})
    assert len(chunks) == 3
    assert stream.usage == usage


async def test_llamacpp_timings_removed_and_usage_captured(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    timings = {"prompt_n": 17, "predicted_n": 2, "predicted_per_second": 42.0, "cache_n": 3}
    usage = {"prompt_tokens": 17, "completion_tokens": 2, "total_tokens": 19}
    events = [
        chunk({"role": "assistant", "content": None}),
        chunk({"reasoning_content": "hmm"}),
        chunk({"content": "4"}),
        chunk({}, "stop", timings=timings),
        {"id": "chatcmpl-1", "choices": [], "usage": usage, "timings": timings},
    ]
    mocked.post(LOCAL_URL, body=sse(*events), content_type="text/event-stream")
    calls: list[UpstreamCall] = []
    chunks, stream = await drain(local(session), {"messages": USER}, calls)
    assert len(chunks) == 4
    assert all("timings" not in c and "usage" not in c for c in chunks)
    assert chunks[1]["choices"][0]["delta"] == {"reasoning_content": "hmm"}
    assert stream.extras["timings"] == timings
    # cache_n is reported the standard way (the usage had no prompt_tokens_details)
    assert stream.usage == {**usage, "prompt_tokens_details": {"cached_tokens": 3}}
    assert calls[0].status == "ok"
    assert (calls[0].prompt_tokens, calls[0].completion_tokens) == (17, 2)
    assert calls[0].cached_tokens == 3
    assert calls[0].estimated is False


async def test_no_usage_settles_with_flagged_estimates(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    events = [chunk({"content": "Hello"}), chunk({"content": " world"}), chunk({}, "stop")]
    mocked.post(LOCAL_URL, body=sse(*events), content_type="text/event-stream")
    calls: list[UpstreamCall] = []
    client = {"messages": [{"role": "user", "content": "Say hello to the whole world"}]}
    _, stream = await drain(local(session), client, calls)
    assert stream.usage is None
    call = calls[0]
    assert call.status == "ok"
    assert call.estimated is True
    body, _ = sent(mocked, LOCAL_URL)
    assert call.prompt_tokens == estimate_prompt_tokens(body) > 0
    assert call.completion_tokens == estimate_completion_tokens(len("Hello world"), 2) == 3


async def test_finish_reason_without_done_is_a_complete_answer(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.post(LOCAL_URL, body=sse(*ANSWER, done=False), content_type="text/event-stream")
    calls: list[UpstreamCall] = []
    chunks, stream = await drain(local(session), {"messages": USER}, calls)
    assert len(chunks) == 3
    assert stream.saw_done is False
    assert calls[0].status == "ok"


async def test_tool_call_chunks_pass_through(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    first = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "read_file", "arguments": ""},
    }
    later = {"index": 0, "function": {"arguments": '{"path": "a.py"}'}}
    events = [
        chunk({"role": "assistant", "content": None, "tool_calls": [first]}),
        chunk({"tool_calls": [later]}),
        chunk({}, "tool_calls"),
    ]
    mocked.post(LOCAL_URL, body=sse(*events), content_type="text/event-stream")
    chunks, stream = await drain(local(session), {"messages": USER})
    assert [c["choices"][0]["delta"].get("tool_calls") for c in chunks] == [
        [first],
        [later],
        None,
    ]
    assert stream.finish_reasons == {0: "tool_calls"}


async def raise_from(
    upstream: OpenAICompatibleUpstream, calls: list[UpstreamCall] | None = None
) -> UpstreamError:
    with pytest.raises(UpstreamError) as info:
        await drain(upstream, {"messages": USER}, calls)
    return info.value


CONTEXT_TOO_LONG = {
    "message": "Please reduce the length of the messages or completion.",
    "type": "invalid_request_error",
    "param": "messages",
    "code": "context_length_exceeded",
}
LLAMACPP_OVERFLOW = {
    "code": 400,
    "message": "the request exceeds the available context size, try increasing it",
    "type": "exceed_context_size_error",
    "n_prompt_tokens": 40_960,
    "n_ctx": 32_768,
}
# name -> (upstream, status, the upstream's error body, may fall back, the error the client gets)
HTTP_ERRORS: dict[str, tuple[str, int, dict[str, Any], bool, dict[str, Any]]] = {
    # Cerebras' flat error object is wrapped as is; a bad request is the client's to fix.
    "cerebras_flat_400_is_wrapped": (
        "cerebras",
        400,
        CONTEXT_TOO_LONG,
        False,
        CONTEXT_TOO_LONG,
    ),
    "cerebras_invalid_request_is_not_fallback_ok": (
        "cerebras",
        400,
        {
            "message": "tools[0].function.name is invalid",
            "type": "invalid_request_error",
            "param": "tools",
            "code": "wrong_api_format",
        },
        False,
        {"type": "invalid_request_error", "code": "wrong_api_format"},
    ),
    "cerebras_500_flat_is_fallback_ok": (
        "cerebras",
        500,
        {"message": "Internal error", "type": "server_error", "param": None, "code": None},
        True,
        {"message": "Internal error", "type": "server_error", "param": None, "code": None},
    ),
    # llama.cpp's context overflow keeps its wording and may fall back to a larger context.
    "llamacpp_context_overflow": (
        "local",
        400,
        {"error": LLAMACPP_OVERFLOW},
        True,
        {k: LLAMACPP_OVERFLOW[k] for k in ("message", "type", "code", "n_prompt_tokens")},
    ),
    "llamacpp_other_400_is_not_fallback_ok": (
        "local",
        400,
        {"error": {"code": 400, "message": "bad tool schema", "type": "invalid_request_error"}},
        False,
        {"message": "bad tool schema"},
    ),
}


@pytest.mark.parametrize("name", list(HTTP_ERRORS))
async def test_an_http_error_keeps_the_upstreams_words(
    session: aiohttp.ClientSession, mocked: aioresponses, name: str
) -> None:
    upstream, status, payload, fallback_ok, expected = HTTP_ERRORS[name]
    url = LOCAL_URL if upstream == "local" else CEREBRAS_URL
    mocked.post(url, status=status, payload=payload)
    calls: list[UpstreamCall] = []
    built = local(session) if upstream == "local" else cerebras(session)
    exc = await raise_from(built, calls)
    assert type(exc) is UpstreamHTTPError
    assert (exc.status, exc.fallback_ok) == (status, fallback_ok)
    error = exc.body()["error"]
    assert {key: error[key] for key in expected} == expected
    if expected == payload:
        assert exc.body() == {"error": payload}  # nothing added to a flat error object
    message = (payload.get("error") or payload)["message"]
    assert exc.message == message
    assert (calls[0].status, calls[0].http_status, calls[0].error) == ("error", status, message)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_fallback_ok(
    status: int, session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    error = {"code": status, "message": "Loading model", "type": "unavailable_error"}
    mocked.post(LOCAL_URL, status=status, payload={"error": error})
    calls: list[UpstreamCall] = []
    exc = await raise_from(local(session), calls)
    assert type(exc) is UpstreamHTTPError
    assert exc.status == status
    assert exc.fallback_ok is True
    assert exc.body()["error"]["message"] == "Loading model"
    assert exc.body()["error"]["type"] == "unavailable_error"
    assert calls[0].status == "error"
    assert calls[0].http_status == status


async def test_non_json_error_body_keeps_its_text(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.post(LOCAL_URL, status=502, body=b"Bad Gateway from nginx", content_type="text/html")
    exc = await raise_from(local(session))
    assert isinstance(exc, UpstreamHTTPError)
    assert exc.status == 502
    assert exc.message == "Bad Gateway from nginx"
    assert set(exc.body()["error"]) == {"message", "type", "param", "code"}


CEREBRAS_429 = {
    "message": "Requests per minute limit exceeded - too many requests sent.",
    "type": "too_many_requests_error",
    "param": "quota",
    "code": "request_quota_exceeded",
}


RL_HEADERS = {
    "x-ratelimit-limit-requests-day": "14400",
    "x-ratelimit-limit-tokens-minute": "500000",
    "x-ratelimit-remaining-requests-day": "14000",
    "x-ratelimit-remaining-tokens-minute": "0",
    "x-ratelimit-reset-requests-day": "33011.382867097855",
    "x-ratelimit-reset-tokens-minute": "11.382867097854614",
}


async def test_429_retry_after_from_minute_token_reset(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.post(CEREBRAS_URL, status=429, payload=CEREBRAS_429, headers=RL_HEADERS)
    calls: list[UpstreamCall] = []
    exc = await raise_from(cerebras(session), calls)
    assert type(exc) is UpstreamRateLimited
    assert exc.status == 429
    assert exc.fallback_ok is True
    assert exc.retry_after == pytest.approx(11.38, abs=0.5)
    assert exc.body() == {"error": CEREBRAS_429}
    assert exc.headers()["retry-after"] == "12"
    assert calls[0].status == "rate_limited"
    assert calls[0].http_status == 429


@pytest.mark.parametrize(
    ("headers", "retry_after"),
    [
        ({**RL_HEADERS, "x-ratelimit-remaining-requests-day": "0"}, 33011.38),
        ({**RL_HEADERS, "retry-after": "7"}, 7.0),
        ({}, None),
    ],
    ids=["from_exhausted_daily_requests", "retry_after_header_wins", "none_without_headers"],
)
async def test_429_retry_after(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    headers: dict[str, str],
    retry_after: float | None,
) -> None:
    mocked.post(CEREBRAS_URL, status=429, payload=CEREBRAS_429, headers=headers)
    exc = await raise_from(cerebras(session))
    assert isinstance(exc, UpstreamRateLimited)
    if retry_after is None:
        assert exc.retry_after is None
        assert "retry-after" not in exc.headers()
    else:
        assert exc.retry_after == pytest.approx(retry_after, abs=0.5)


async def test_rate_limit_headers_of_a_success_are_observed(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.post(
        CEREBRAS_URL, body=sse(*ANSWER), content_type="text/event-stream", headers=RL_HEADERS
    )
    upstream = cerebras(session)
    await drain(upstream, {"messages": USER})
    headroom = upstream.watcher.headroom()
    assert headroom["tokens-minute"] == 0.0
    assert headroom["requests-day"] == pytest.approx(14000 / 14400)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_on_a_real_closed_port(session: aiohttp.ClientSession) -> None:
    port = closed_port()
    cfg = model("local", {"endpoint": f"http://127.0.0.1:{port}/v1"})
    upstream = build_upstream("local", cfg, session, max_event_bytes=1024)
    calls: list[UpstreamCall] = []
    exc = await raise_from(upstream, calls)
    assert type(exc) is UpstreamConnectError
    assert exc.fallback_ok is True
    assert exc.upstream == "local"
    assert calls[0].status == "error"
    assert calls[0].error == exc.message
    assert calls[0].prompt_tokens == 0


@pytest.mark.parametrize(
    "error",
    [
        aiohttp.ClientConnectorError(
            aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 41447, False, True, None, None, None),
            ConnectionRefusedError(111, "Connection refused"),
        ),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientConnectionError("reset"),
    ],
    ids=["connector", "disconnected", "connection"],
)
async def test_connection_errors_map_to_connect_error(
    error: Exception, session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.post(LOCAL_URL, exception=error)
    calls: list[UpstreamCall] = []
    exc = await raise_from(local(session), calls)
    assert type(exc) is UpstreamConnectError
    assert exc.fallback_ok is True
    assert calls[0].status == "error"


async def test_mid_stream_error_event(session: aiohttp.ClientSession, mocked: aioresponses) -> None:
    error = {"code": 500, "message": "slot crashed", "type": "server_error"}
    body = sse(chunk({"content": "Hel"}), {"error": error}, done=False)
    mocked.post(LOCAL_URL, body=body, content_type="text/event-stream")
    calls: list[UpstreamCall] = []
    got: list[dict[str, Any]] = []
    with pytest.raises(UpstreamStreamError) as info:
        opening = local(session).open_stream({"messages": USER})
        calls.append(opening.call)
        async with opening as stream:
            async for c in stream:
                got.append(c.data)
    assert len(got) == 1
    exc = info.value
    assert exc.message == "slot crashed"
    assert exc.body()["error"]["type"] == "server_error"
    assert calls[0].status == "error"
    assert calls[0].error == "slot crashed"
    assert calls[0].estimated is True
    assert calls[0].completion_tokens >= 1


# Streams that break the protocol: each ends the call as an error, its tokens estimated.
BROKEN_STREAMS = {
    "malformed_json_event": sse(chunk({"content": "ok"}), done=False) + b'data: {"choices": [\n\n',
    "event_that_is_not_an_object": b"data: [1, 2]\n\n",
    "cut_without_done_and_without_finish_reason": sse(
        chunk({"role": "assistant", "content": ""}), chunk({"content": "4"}), done=False
    ),
    "empty_stream": b"",
    "event_over_the_size_limit": sse(chunk({"content": "x" * 4000}), chunk({}, "stop")),
}


@pytest.mark.parametrize("name", list(BROKEN_STREAMS))
@pytest.mark.parametrize("upstream", ["local", "cerebras"])
async def test_a_broken_stream_is_a_protocol_error(
    session: aiohttp.ClientSession, mocked: aioresponses, upstream: str, name: str
) -> None:
    built = build_upstream(upstream, model(upstream), session, max_event_bytes=1024)
    url = LOCAL_URL if upstream == "local" else CEREBRAS_URL
    mocked.post(url, body=BROKEN_STREAMS[name], content_type="text/event-stream")
    calls: list[UpstreamCall] = []
    exc = await raise_from(built, calls)
    assert type(exc) is UpstreamProtocolError
    assert calls[0].status == "error"
    assert calls[0].estimated is True


async def test_leaving_early_settles_the_call_as_cancelled(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    # The answer is still open (no finish_reason, no [DONE]) when the caller walks away.
    unfinished = sse(ANSWER[0], ANSWER[1], done=False)
    mocked.post(LOCAL_URL, body=unfinished, content_type="text/event-stream")
    calls: list[UpstreamCall] = []
    opening = local(session).open_stream({"messages": USER})
    calls.append(opening.call)
    async with opening as stream:
        async for _ in stream:
            break
    assert calls[0].status == "cancelled"
    assert calls[0].estimated is True


def test_cerebras_gets_history_reasoning_as_its_reasoning_field() -> None:
    from gateway.config import parse_config
    from gateway.upstreams.cerebras import CerebrasUpstream

    config = parse_config({"models": {"cerebras": {"api_key": "csk-x"}}}, env={})
    upstream = CerebrasUpstream("cerebras", config.cerebras, session=None)  # type: ignore[arg-type]
    history = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a", "reasoning_content": "thought"},
        {"role": "user", "content": "q2"},
    ]
    body = upstream.build_body({"messages": history})
    assert body["messages"][1] == {"role": "assistant", "content": "a", "reasoning": "thought"}
    assert history[1]["reasoning_content"] == "thought"  # the client's body is untouched
    plain = [{"role": "user", "content": "q"}]
    assert upstream.build_body({"messages": plain})["messages"] is plain
