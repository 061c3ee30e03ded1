"""The real Claude Code 2.1.332 requests (tests/fixtures/claude_code_2.1.332.json) replayed through
the Messages door of a gateway on 127.0.0.1 in front of the simulators."""

from __future__ import annotations

from typing import Any

import pytest
from anthropic_support import CLAUDE_CODE_REQUESTS as REQUESTS
from anthropic_support import check_grammar, parse_events

from gateway.dev.sim import ScriptedAnswer

DROPPED = {"host", "content-length", "accept-encoding", "connection", "authorization", "x-api-key"}


@pytest.mark.parametrize(("name", "request_"), REQUESTS, ids=[n for n, _ in REQUESTS])
async def test_recorded_request_through_the_gateway(
    make_gateway, client, local_sim, name: str, request_: dict[str, Any]
) -> None:
    local_sim.options.script = {"*": ScriptedAnswer(content="Done.", reasoning="Thinking.")}
    gw = await make_gateway("always_local")
    headers = {k: v for k, v in request_["headers"].items() if k.lower() not in DROPPED}
    url = gw.root + request_["path"] + (f"?{request_['query']}" if request_["query"] else "")
    async with client.post(url, json=request_["body"], headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = parse_events(await resp.read())
    blocks = check_grammar(events)
    assert blocks[0] == {"type": "thinking", "thinking": "", "signature": blocks[0]["signature"]}
    assert blocks[1] == {"type": "text", "text": "Done."}
    assert events[0][1]["message"]["model"] == request_["body"]["model"]
    assert events[0][1]["message"]["usage"]["input_tokens"] > 1000
    sent = local_sim.requests[-1].body
    assert not sent["messages"][0]["content"].startswith("x-anthropic-billing-header")
    rows = gw.services.ledger.rows()
    assert [r.door for r in rows] == ["messages"]
