"""The upstream body is written from the client's parsed members: the bytes must be exactly those
a full `orjson.dumps` of the same body writes, for any body a client may send."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import parse_config
from gateway.errors import BadRequest
from gateway.serving.continuation import continuation_body
from gateway.upstreams import OpenAICompatibleUpstream, build_upstream
from gateway.upstreams.base import streamed_body
from gateway.wire.body import Derived, ParsedBody, encode
from gateway.wire.validation import parse_body

# Keys the gateway or a provider reads or sets, and any others.
KEYS = st.sampled_from(
    [
        "model",
        "stream",
        "stream_options",
        "messages",
        "tools",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "chat_template_kwargs",
        "reasoning_effort",
        "seed",
    ]
) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant"]), "content": st.text()},
        optional={"reasoning_content": st.text(), "tool_calls": VALUES},
    ),
    max_size=3,
)
WHITESPACE = st.sampled_from(["", " ", "\n", "\t ", "\r\n  "])


@st.composite
def client_bytes(draw: st.DrawFn) -> bytes:
    """A JSON object as a client may write it: any spacing, escaped or raw unicode, duplicate
    keys (the last one wins), members in any order."""
    members = draw(st.lists(st.tuples(KEYS, VALUES | MESSAGES), max_size=8))
    ascii_only = draw(st.booleans())
    parts = []
    for key, value in members:
        ws = [draw(WHITESPACE) for _ in range(3)]
        text = json.dumps(value, ensure_ascii=ascii_only, indent=draw(st.sampled_from([None, 1])))
        parts.append(f"{ws[0]}{json.dumps(key, ensure_ascii=ascii_only)}{ws[1]}:{ws[2]}{text}")
    return ("{" + ",".join(parts) + draw(WHITESPACE) + "}").encode("utf-8")


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, OpenAICompatibleUpstream]]:
    loop = asyncio.new_event_loop()

    async def session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    opened = loop.run_until_complete(session())
    config = parse_config(
        {"models": {"cerebras": {"max_completion_tokens_cap": 500}}},
        env={"CEREBRAS_API_KEY": "csk-test"},
    )
    yield {
        name: build_upstream(name, config.models[name], opened, max_event_bytes=1 << 20)
        for name in ("local", "cerebras")
    }
    loop.run_until_complete(opened.close())
    loop.close()


@settings(max_examples=400, deadline=None)
@given(
    raw=client_bytes(),
    name=st.sampled_from(["local", "cerebras"]),
    no_think=st.booleans(),
    overrides=st.dictionaries(KEYS, VALUES, max_size=3),
)
def test_upstream_bytes_are_those_of_a_full_encode(
    upstreams: dict[str, OpenAICompatibleUpstream],
    raw: bytes,
    name: str,
    no_think: bool,
    overrides: dict[str, Any],
) -> None:
    upstream = upstreams[name]
    parsed = parse_body(raw)
    plain = orjson.loads(raw)
    assert parsed == plain
    sent_before = upstream.build_body(plain)  # what the gateway sent before members were kept
    sent = upstream.build_body(parsed)
    for body in (sent_before, sent):
        if no_think:
            upstream.add_no_think(body)
        body.update(overrides)
    assert isinstance(sent, Derived)
    assert encode(sent) == orjson.dumps(sent_before)
    assert parsed == plain, "building the upstream body changed the client's body"


@settings(max_examples=200, deadline=None)
@given(raw=client_bytes())
def test_a_body_the_gateway_built_itself_is_written_in_full(raw: bytes) -> None:
    parsed = parse_body(raw)
    continued = continuation_body(parsed, "partial answer", 3)
    assert not isinstance(continued, Derived)
    assert encode(streamed_body(continued, "m")) == orjson.dumps(streamed_body(continued, "m"))


def test_a_member_replaced_at_the_top_level_is_written_afresh() -> None:
    parsed = parse_body(b'{"messages": [{"role": "user", "content": "hi"}], "seed": 1}')
    assert isinstance(parsed, ParsedBody)
    body = streamed_body(parsed, "m")
    body["messages"] = [{"role": "user", "content": "other"}]
    assert orjson.loads(encode(body))["messages"] == [{"role": "user", "content": "other"}]
    assert orjson.loads(encode(body))["seed"] == 1


def test_a_member_too_deep_to_write_back_is_refused() -> None:
    deep: Any = "x"
    for _ in range(300):
        deep = [deep]
    with pytest.raises(BadRequest, match="too deeply"):
        parse_body(orjson.dumps({"ok": 1})[:-1] + b',"deep":' + json.dumps(deep).encode() + b"}")
