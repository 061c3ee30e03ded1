"""Hostile input through the Responses door: generated bodies never produce a 5xx or a crash;
every refusal is an OpenAI-shaped error; every stream ends in exactly one final event.

Uses tests/integration/test_fuzz.py's gateway (a background thread's event loop on 127.0.0.1 in
front of both simulators) and its JSON generators.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration.test_fuzz import (
    CONTENT_TYPES,
    check_refusal,
    gateway_port,
    json_value,
    raw_bodies,
)
from integration.test_fuzz import send as fuzz_send

__all__ = ["gateway_port"]  # the module-scoped gateway fixture, shared with test_fuzz

SETTINGS = settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)


FINAL = (b"response.completed", b"response.incomplete", b"response.failed")


def send(port: int, body: bytes, content_type: str = "application/json") -> tuple[int, bytes, str]:
    return fuzz_send(port, body, content_type, path="/v1/responses")


def check_reply(status: int, raw: bytes, content_type: str) -> None:
    if check_refusal(status, raw):
        return
    assert status == 200
    if content_type.startswith("text/event-stream"):
        frames = [f for f in raw.split(b"\n\n") if f and not f.startswith(b":")]
        names = [f.split(b"\n", 1)[0].removeprefix(b"event: ") for f in frames]
        assert names[0] == b"response.created", names[:3]
        finals = [n for n in names if n in FINAL]
        assert len(finals) == 1 and names[-1] == finals[0], names[-3:]
        for frame in frames:
            json.loads(frame.split(b"\n", 1)[1].removeprefix(b"data: "))
    else:
        assert json.loads(raw)["object"] == "response"


ITEM_TYPES = ["message", "function_call", "function_call_output", "reasoning", "item_reference"]


ROLES = ["developer", "system", "user", "assistant", "tool", "", "USER"]


PART_TYPES = ["input_text", "output_text", "input_image", "input_file", "refusal", "text", "x"]


TOOL_TYPES = ["function", "web_search", "namespace", "file_search", "custom", "local_shell"]


part = st.fixed_dictionaries(
    {"type": st.sampled_from(PART_TYPES) | json_value},
    optional={"text": st.text(max_size=30) | json_value, "image_url": json_value},
)


item = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(ITEM_TYPES) | json_value,
        "role": st.sampled_from(ROLES) | json_value,
        "content": st.text(max_size=60) | st.lists(part, max_size=3) | json_value,
        "call_id": st.sampled_from(["c1", "c2"]) | json_value,
        "name": st.text(max_size=10) | json_value,
        "arguments": st.just("{}") | json_value,
        "output": st.text(max_size=30) | st.lists(part, max_size=2) | json_value,
        "summary": json_value,
    },
)


tool = st.fixed_dictionaries(
    {"type": st.sampled_from(TOOL_TYPES) | json_value},
    optional={
        "name": st.text(max_size=10) | json_value,
        "parameters": st.just({"type": "object"}) | json_value,
        "strict": json_value,
        "tools": json_value,
    },
)


responses_body = st.fixed_dictionaries(
    {"input": st.text(max_size=60) | st.lists(item, max_size=5) | json_value},
    optional={
        "model": json_value,
        "instructions": st.text(max_size=40) | json_value,
        "stream": st.booleans() | json_value,
        "store": json_value,
        "tools": st.lists(tool, max_size=3) | json_value,
        "tool_choice": st.sampled_from(["auto", "none", "required"]) | json_value,
        "parallel_tool_calls": json_value,
        "reasoning": st.fixed_dictionaries({}, optional={"effort": json_value}) | json_value,
        "max_output_tokens": st.integers(min_value=-2, max_value=40) | json_value,
        "temperature": st.floats(min_value=-1, max_value=3) | json_value,
        "text": json_value,
        "include": json_value,
        "metadata": json_value,
        "prompt_cache_key": json_value,
        "previous_response_id": st.none() | json_value,
    },
)


@SETTINGS
@given(body=responses_body)
def test_generated_responses_bodies(gateway_port: int, body: dict[str, Any]) -> None:
    check_reply(*send(gateway_port, json.dumps(body).encode()))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    raw=raw_bodies(responses_body),
    content_type=st.sampled_from(CONTENT_TYPES),
)
def test_raw_bytes_and_content_types(gateway_port: int, raw: bytes, content_type: str) -> None:
    check_reply(*send(gateway_port, raw, content_type))


def test_deeply_nested_json(gateway_port: int) -> None:
    for depth in (100, 300, 1000, 100_000):
        nest = b"[" * depth + b"]" * depth
        check_reply(*send(gateway_port, nest))
        for field in (b"input", b"tools", b"metadata", b"text", b"tool_choice", b"reasoning"):
            check_reply(*send(gateway_port, b'{"input": "hi", "' + field + b'": ' + nest + b"}"))
        deep = b'{"a":' * depth + b"1" + b"}" * depth
        tool = b'{"type": "function", "name": "f", "parameters": ' + deep + b"}"
        check_reply(*send(gateway_port, b'{"input": "hi", "tools": [' + tool + b"]}"))
