"""Review findings pinned: bugs inside the gateway still end streams cleanly; reasoning alone is
no answer; a client that leaves is billed and credited honestly; clients pick only allowed
strategies."""

from __future__ import annotations

import sqlite3

from support import chat, eventually, post_stream, read_then_leave

from gateway.dev.sim import ScriptedAnswer
from gateway.wire.chunk import read_chunk


async def test_unexpected_error_mid_stream_is_one_error_event(make_gateway, client) -> None:
    gw = await make_gateway("always_local")
    strategy = gw.services.strategies["always_local"]

    async def broken(ex) -> None:
        await ex.sink.emit(
            read_chunk({"model": "m", "choices": [{"index": 0, "delta": {"content": "partial"}}]})
        )
        raise RuntimeError("a bug")

    strategy.run = broken  # type: ignore[method-assign]
    reply = await post_stream(client, gw.url, chat(stream=True))
    assert reply.status == 200
    assert reply.text == "partial"
    last = reply.data[-1]
    assert "error" in last and last["error"]["code"] == "internal_error"
    assert "[DONE]" not in reply.data
    await gw.services.ledger.flush()
    assert [row.outcome for row in gw.services.ledger.rows()] == ["error"]


async def test_unexpected_error_before_stream_is_http_500(make_gateway, client) -> None:
    gw = await make_gateway("always_local")

    async def broken(ex) -> None:
        raise KeyError("a bug")

    gw.services.strategies["always_local"].run = broken  # type: ignore[method-assign]
    async with client.post(gw.url + "/chat/completions", json=chat(stream=True)) as resp:
        assert resp.status == 500
        body = await resp.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}


async def test_ledger_failure_does_not_break_a_delivered_answer(make_gateway, client) -> None:
    gw = await make_gateway("always_local")

    async def failing(record) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    gw.services.stats.record = failing  # type: ignore[method-assign]
    reply = await post_stream(client, gw.url, chat(stream=True))
    assert reply.data[-1] == "[DONE]"


async def test_reasoning_without_answer_is_an_error_not_done(
    make_gateway, client, local_sim
) -> None:
    local_sim.options.script = {"*": ScriptedAnswer(reasoning="thinking and thinking")}
    gw = await make_gateway("always_local")
    reply = await post_stream(client, gw.url, chat(stream=True))
    assert reply.reasoning == "thinking and thinking"
    assert "[DONE]" not in reply.data
    assert reply.data[-1]["error"]["type"] == "upstream_empty_response"


async def test_disconnect_counts_the_partial_answer_as_delivered(
    make_gateway, client, cerebras_sim
) -> None:
    cerebras_sim.options.tps = 100.0
    cerebras_sim.options.answer_tokens = 300
    gw = await make_gateway("always_cerebras")
    await read_then_leave(client, gw.url, chat(stream=True), 11)
    await eventually(
        lambda: gw.services.stats.get_statistics()["requests"]["total"], "the request is recorded"
    )
    stats = gw.services.stats.get_statistics()
    assert stats["requests"]["by_outcome"] == {"client_disconnected": 1}
    assert stats["requests"]["by_model"]["cerebras"] == 1
    assert stats["costs"]["total_cost_usd"] > 0
    assert stats["costs"]["cost_saved_usd"] == 0.0, "paid for what was delivered: no loss"


async def test_client_strategy_allowlist(make_gateway, client) -> None:
    gw = await make_gateway(
        "always_local", routing={"client_strategies": ["always_local", "smart_routing"]}
    )
    reply = await post_stream(client, gw.url, chat(stream=True, model="always_cerebras"))
    assert reply.headers["x-gateway-strategy"] == "always_local"
    assert reply.chunks[-1]["model_used"] == "local"
    reply = await post_stream(client, gw.url, chat(stream=True, model="smart_routing"))
    assert reply.headers["x-gateway-strategy"] == "smart_routing"


async def test_speculative_fast_failures_keep_their_http_status(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    """Both upstreams refusing at once: the client gets the status, not 200 + error event."""
    local_sim.options.n_ctx = 5
    cerebras_sim.options.n_ctx = 5
    gw = await make_gateway("speculative_decoding")
    async with client.post(
        gw.url + "/chat/completions", json=chat("word " * 100, stream=True)
    ) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    assert "reduce the length" in body["error"]["message"] or "context" in body["error"]["message"]
