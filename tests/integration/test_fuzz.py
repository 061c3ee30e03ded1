"""Hostile input: generated bodies never produce a 5xx or a crash; every refusal is in the shape of
the door it came through (OpenAI for chat completions, Anthropic for /v1/messages).

The gateway and both simulated upstreams run in a background thread's event loop on 127.0.0.1;
hypothesis drives a blocking HTTP client against them. More than 2,000 bodies per run.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import CEREBRAS_KEY, gateway_config

from gateway.dev.sim import SimOptions, running_sim
from gateway.http.app import create_app

SETTINGS = settings(
    max_examples=660,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)


ROLES = ["system", "user", "assistant", "tool", "developer", "function", "wizard", "", "USER"]


CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "",
    "multipart/form-data; boundary=xyz",
    "application/x-www-form-urlencoded",
    "application/vnd.api+json",
    "image/png",
]


@pytest.fixture(scope="module")
def gateway_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    ready: Future[int] = Future()
    loop = asyncio.new_event_loop()
    stop_event: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop_event
        stop_event = asyncio.Event()
        local_opts = SimOptions(profile="llamacpp", answer_tokens=4)
        cerebras_opts = SimOptions(profile="cerebras", answer_tokens=4, api_key=CEREBRAS_KEY)
        async with running_sim(local_opts) as local, running_sim(cerebras_opts) as cerebras:
            config = gateway_config(tmp, local.url, cerebras.url, server={"max_body_bytes": 65536})
            runner = web.AppRunner(create_app(config), handler_cancellation=True)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            ready.set_result(runner.addresses[0][1])
            await stop_event.wait()
            await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    port = ready.result(timeout=30)
    yield port
    assert stop_event is not None
    if SENT["bodies"]:  # the whole module ran (not a -k selection of one test)
        print(f"\nfuzz: {SENT['bodies']} generated bodies sent")
    loop.call_soon_threadsafe(stop_event.set)
    thread.join(timeout=30)
    loop.close()


SENT = {"bodies": 0}


def send(
    port: int,
    body: bytes,
    content_type: str = "application/json",
    path: str = "/v1/chat/completions",
) -> tuple[int, bytes, str]:
    SENT["bodies"] += 1
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": content_type} if content_type else {}
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheader("Content-Type", "")
    finally:
        conn.close()


def check_refusal(status: int, raw: bytes) -> bool:
    """No 5xx, and a 4xx is an OpenAI-shaped error; True when the reply was such a refusal."""
    assert status < 500, (status, raw[:500])
    if status < 400:
        return False
    body = json.loads(raw)
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return True


def check_reply(status: int, raw: bytes, content_type: str) -> None:
    if check_refusal(status, raw):
        return
    assert status == 200
    if content_type.startswith("text/event-stream"):
        events = [e for e in raw.split(b"\n\n") if e and not e.startswith(b":")]
        last = events[-1]
        assert last == b"data: [DONE]" or b'"error"' in last, last[-300:]
    else:
        assert json.loads(raw)["object"] == "chat.completion"


json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)


json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


content = st.one_of(
    st.text(max_size=200),
    st.lists(
        st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=40)}), max_size=3
    ),
    json_value,
)


message = st.fixed_dictionaries(
    {"role": st.sampled_from(ROLES) | json_value},
    optional={"content": content, "name": json_value, "tool_calls": json_value},
)


chat_body = st.fixed_dictionaries(
    {"messages": st.lists(message, max_size=4) | json_value},
    optional={
        "model": json_value,
        "stream": st.booleans() | json_value,
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}) | json_value,
        "max_tokens": st.integers(min_value=-5, max_value=50) | json_value,
        "temperature": st.floats(min_value=-1, max_value=3) | json_value,
        "tools": json_value,
        "tool_choice": json_value,
        "seed": json_value,
        "n": st.integers(min_value=-2, max_value=20) | json_value,
        "stop": json_value,
        "logprobs": json_value,
        "top_logprobs": json_value,
    },
)


@SETTINGS
@given(body=chat_body)
def test_generated_chat_bodies(gateway_port: int, body: dict[str, Any]) -> None:
    check_reply(*send(gateway_port, json.dumps(body).encode()))


@SETTINGS
@given(value=json_value)
def test_any_json_value(gateway_port: int, value: Any) -> None:
    check_reply(*send(gateway_port, json.dumps(value).encode()))


def truncated(bodies: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Bodies from `bodies` as JSON, cut short at any byte."""
    return bodies.map(lambda b: json.dumps(b).encode()).flatmap(
        lambda raw: st.integers(min_value=0, max_value=max(0, len(raw) - 1)).map(
            lambda cut: raw[:cut]
        )
    )


def raw_bodies(bodies: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Any bytes, any JSON value, or a body from `bodies` cut short."""
    return st.one_of(
        st.binary(max_size=300), json_value.map(lambda v: json.dumps(v).encode()), truncated(bodies)
    )


@SETTINGS
@given(
    raw=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
        truncated(chat_body),
        st.binary(min_size=1, max_size=8).map(
            lambda junk: b'{"messages": [{"role": "user", "content": "' + junk + b'"}]}'
        ),
        st.just(b'{"messages": [{"role": "user", "content": "a"}], "messages": 5}'),
        st.just(b'{"messages": 5, "messages": [{"role": "user", "content": "a"}]}'),
    ),
    content_type=st.sampled_from(CONTENT_TYPES),
)
def test_raw_bytes_and_content_types(gateway_port: int, raw: bytes, content_type: str) -> None:
    check_reply(*send(gateway_port, raw, content_type))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    size=st.integers(min_value=60_000, max_value=400_000), char=st.sampled_from("a\u00e9\U0001f600")
)
def test_huge_strings(gateway_port: int, size: int, char: str) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": char * size}]}).encode()
    status, raw, content_type = send(gateway_port, body)
    check_reply(status, raw, content_type)
    if len(body) > 65536:
        assert status == 413


def test_deeply_nested_json(gateway_port: int) -> None:
    for depth in (100, 1000, 100_000):
        raw = b"[" * depth + b"]" * depth
        check_reply(*send(gateway_port, raw))
        nested = (
            b'{"messages": [{"role": "user", "content": ' + b"[" * depth + b"]" * depth + b"}]}"
        )
        check_reply(*send(gateway_port, nested))


@pytest.mark.parametrize(
    "header",
    [b"X-Bad: a\rb", b"X-Request-Id: abc\ndef", b"X-Big: " + b"a" * 10_000],
)
def test_malformed_headers_are_refused(gateway_port: int, header: bytes) -> None:
    body = b'{"messages": [{"role": "user", "content": "hi"}]}'
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + body
    )
    with socket.create_connection(("127.0.0.1", gateway_port), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    assert 400 <= status < 500, reply[:200]


MESSAGES_PATHS = ["/v1/messages", "/v1/messages?beta=true", "/v1/messages/count_tokens"]


def check_anthropic_reply(status: int, raw: bytes, content_type: str, path: str) -> None:
    assert status < 500, (status, raw[:500])
    if status >= 400:
        body = json.loads(raw)
        assert set(body) == {"type", "error", "request_id"}, body
        assert body["type"] == "error"
        assert set(body["error"]) == {"type", "message"}, body
        assert body["error"]["message"]
        return
    assert status == 200
    if path.endswith("count_tokens"):
        assert json.loads(raw)["input_tokens"] >= 1
    elif content_type.startswith("text/event-stream"):
        assert raw.endswith(b"\n\n")
        last = raw[:-2].split(b"\n\n")[-1]
        assert last.startswith((b"event: message_stop\n", b"event: error\n")), last[-300:]
        assert raw.startswith(b"event: message_start\n")
    else:
        assert json.loads(raw)["type"] == "message"


BLOCK_TYPES = ["text", "image", "tool_use", "tool_result", "thinking", "document", "video", ""]


block = st.fixed_dictionaries(
    {"type": st.sampled_from(BLOCK_TYPES) | json_value},
    optional={
        "text": st.text(max_size=40) | json_value,
        "source": st.fixed_dictionaries(
            {"type": st.sampled_from(["base64", "url", "text", "file"]) | json_value},
            optional={"media_type": json_value, "data": json_value, "url": json_value},
        )
        | json_value,
        "id": st.text(max_size=12) | json_value,
        "name": st.text(max_size=12) | json_value,
        "input": json_value,
        "tool_use_id": st.text(max_size=12) | json_value,
        "content": st.text(max_size=40) | st.lists(json_value, max_size=3) | json_value,
        "is_error": json_value,
        "thinking": json_value,
        "cache_control": json_value,
    },
)


anthropic_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool", ""]) | json_value},
    optional={"content": st.text(max_size=80) | st.lists(block, max_size=4) | json_value},
)


anthropic_tool = st.fixed_dictionaries(
    {"name": st.text(max_size=12) | json_value},
    optional={
        "type": st.sampled_from(["custom", "web_search_20250305", "bash_20250124"]) | json_value,
        "description": json_value,
        "input_schema": st.just({"type": "object", "properties": {}}) | json_value,
    },
)


anthropic_body = st.fixed_dictionaries(
    {"messages": st.lists(anthropic_message, max_size=4) | json_value},
    optional={
        "model": st.just("claude-sonnet-4-5") | json_value,
        "max_tokens": st.integers(min_value=-5, max_value=50) | json_value,
        "stream": st.booleans() | json_value,
        "system": st.text(max_size=60) | st.lists(block, max_size=3) | json_value,
        "tools": st.lists(anthropic_tool, max_size=3) | json_value,
        "tool_choice": st.fixed_dictionaries(
            {"type": st.sampled_from(["auto", "any", "tool", "none", "x"])},
            optional={"name": json_value, "disable_parallel_tool_use": json_value},
        )
        | json_value,
        "thinking": st.fixed_dictionaries(
            {"type": st.sampled_from(["enabled", "adaptive", "disabled", "x"])},
            optional={"budget_tokens": json_value, "display": json_value},
        )
        | json_value,
        "stop_sequences": st.lists(st.text(max_size=5), max_size=3) | json_value,
        "temperature": st.floats(min_value=-1, max_value=3) | json_value,
        "top_p": json_value,
        "top_k": json_value,
        "metadata": st.fixed_dictionaries({"user_id": st.text(max_size=60) | json_value})
        | json_value,
    },
)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(body=anthropic_body, path=st.sampled_from(MESSAGES_PATHS))
def test_generated_messages_bodies(gateway_port: int, body: dict[str, Any], path: str) -> None:
    check_anthropic_reply(*send(gateway_port, json.dumps(body).encode(), path=path), path)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    raw=raw_bodies(anthropic_body),
    content_type=st.sampled_from(CONTENT_TYPES),
    path=st.sampled_from(MESSAGES_PATHS),
)
def test_messages_raw_bytes(gateway_port: int, raw: bytes, content_type: str, path: str) -> None:
    check_anthropic_reply(*send(gateway_port, raw, content_type, path), path)
