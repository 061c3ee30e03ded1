"""JSON nested deeper than the gateway can write back is refused once, for every door, with a
400 in that door's shape (orjson reads 1024 levels but writes only 254)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import BadRequest
from gateway.wire.validation import MAX_NESTING, parse_body


def nested(levels: int) -> bytes:
    """A JSON object `levels` objects deep (written by hand: orjson cannot write it)."""
    return b'{"a":' * (levels - 1) + b"{}" + b"}" * (levels - 1)


def with_deep(template: str, levels: int) -> bytes:
    return template.replace("DEEP", "@").encode().replace(b"@", nested(levels))


MESSAGES = '{"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "a"}], %s}'


USE = (
    '"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": '
    '[{"type": "tool_use", "id": "t1", "name": "f", "input": DEEP}]}, {"role": "user", '
    '"content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}]'
)


CASES = [
    # (path, body template, field of the door's error shape)
    (
        "/v1/chat/completions",
        '{"model": "m", "messages": [{"role": "user", "content": "a"}], '
        '"tools": [{"type": "function", "function": {"name": "f", "parameters": DEEP}}]}',
        "openai",
    ),
    ("/v1/messages", MESSAGES % '"tools": [{"name": "f", "input_schema": DEEP}]', "anthropic"),
    ("/v1/messages", '{"model": "m", "max_tokens": 8, ' + USE + "}", "anthropic"),
    ("/v1/messages/count_tokens", '{"model": "m", ' + USE + "}", "anthropic"),
    (
        "/v1/responses",
        '{"model": "m", "input": "a", "tools": [{"type": "function", '
        '"name": "f", "parameters": DEEP}]}',
        "openai",
    ),
    (
        "/v1/responses",
        '{"model": "m", "input": "a", "text": {"format": {"type": '
        '"json_schema", "name": "x", "schema": DEEP}}}',
        "openai",
    ),
]


@pytest.mark.parametrize(("path", "template", "shape"), CASES)
async def test_too_deep_is_a_400_in_the_doors_shape(
    make_gateway: Any, client: Any, local_sim: Any, path: str, template: str, shape: str
) -> None:
    gw = await make_gateway("always_local")
    headers = {"Content-Type": "application/json"}
    for levels in (300, MAX_NESTING + 1):
        async with client.post(
            gw.root + path, data=with_deep(template, levels), headers=headers
        ) as resp:
            assert resp.status == 400, await resp.text()
            body = await resp.json()
        if shape == "anthropic":
            assert body["type"] == "error"
            assert body["error"]["type"] == "invalid_request_error"
        else:
            assert body["error"]["code"] == "invalid_json"
        assert "too deeply" in body["error"]["message"]
    assert local_sim.requests == []
    # Just within the limit, the request is served.
    async with client.post(
        gw.root + path, data=with_deep(template, MAX_NESTING - 8), headers=headers
    ) as resp:
        assert resp.status == 200, await resp.text()


def test_parse_body_refuses_what_it_cannot_write_back() -> None:
    assert parse_body(b'{"x": ' + nested(MAX_NESTING - 1) + b"}")
    with pytest.raises(BadRequest) as caught:
        parse_body(b'{"x": ' + nested(MAX_NESTING) + b"}")
    assert caught.value.code == "invalid_json" and caught.value.status == 400
