"""The Responses door's translator, without sockets: Codex requests into the internal chat
request, and internal chunks into Responses events, checked byte by byte."""

from __future__ import annotations

from typing import Any


async def test_server_max_messages_holds_the_input_items(
    make_gateway: Any, client: Any, local_sim: Any
) -> None:
    """`server.max_messages` counts the client's own `input` items, told in this door's words."""
    gw = await make_gateway("always_local", server={"max_messages": 5})
    items: list[dict[str, Any]] = []
    for i in range(3):
        items += [{"role": "user", "content": f"u{i}"}, {"role": "assistant", "content": f"a{i}"}]
    async with client.post(gw.root + "/v1/responses", json={"input": items}) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["param"] == "input" and error["code"] == "too_many_messages"
    assert error["message"] == "'input' has 6 items; the limit is 5"
    assert local_sim.requests == []
    # Instructions add a system message, which the client did not send: not counted.
    body = {"input": items[:5], "instructions": "be brief"}
    async with client.post(gw.root + "/v1/responses", json=body) as resp:
        assert resp.status == 200
