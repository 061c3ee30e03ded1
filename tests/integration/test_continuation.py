"""Continuing a broken stream on the other upstream: the seam, the exclusions, a disconnect."""

from __future__ import annotations

import asyncio
from typing import Any

from support import chat, eventually, post_stream, read_then_leave

from gateway.dev.sim import ScriptedAnswer, ToolCallSpec
from gateway.quota.admission import Refusal
from gateway.quota.gate import RateLimitGate, ReactiveGate

ASK = "Explain step by step why this code deadlocks: ```lock(a); lock(b)```"


async def _one_error_event(make_gateway, client, **sections: Any) -> None:
    gw = await make_gateway("always_cerebras", **sections)
    reply = await post_stream(client, gw.url, chat(ASK, stream=True))
    data = reply.data
    errors = [d for d in data if isinstance(d, dict) and "error" in d]
    assert errors == [data[-1]] and "[DONE]" not in data
    assert "continued" not in str(data)
    ledger = gw.services.ledger
    await ledger.flush()
    assert [r.outcome for r in ledger.rows()] == ["error"]


async def test_partly_streamed_tool_call_is_not_continued(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    args = '{"path": "src/some/long/file_name.py", "mode": "read"}'
    cerebras_sim.options.script = {
        "*": ScriptedAnswer(content="Reading it.", tool_calls=[ToolCallSpec("read", args)])
    }
    cerebras_sim.inject("cut", after_chunks=5)  # role, "Reading", " it.", head, one args piece
    await _one_error_event(make_gateway, client)
    assert not [r for r in local_sim.requests if r.prefill]


async def test_failure_during_reasoning_is_not_continued(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    cerebras_sim.options.reasoning_tokens = 10
    cerebras_sim.inject("cut", after_chunks=4)
    await _one_error_event(make_gateway, client)
    assert not local_sim.requests


async def test_fallback_forbidding_local_is_not_continued(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    cerebras_sim.inject("cut", after_chunks=4)
    await _one_error_event(make_gateway, client, routing={"fallback": {"to_local": False}})
    assert not local_sim.requests


async def test_gate_refusing_the_continuation_keeps_the_error_event(
    make_gateway, client, local_sim, cerebras_sim, monkeypatch
) -> None:
    asked: list[str] = []
    for gate in (RateLimitGate, ReactiveGate):
        admit = gate.admit

        async def refusing(self, upstream, body, *args, _admit=admit, **kwargs):  # type: ignore[no-untyped-def]
            if upstream == "local":
                asked.append(body["messages"][-1]["role"])
                return Refusal("local", "over budget (test)")
            return await _admit(self, upstream, body, *args, **kwargs)

        monkeypatch.setattr(gate, "admit", refusing)
    cerebras_sim.inject("cut", after_chunks=4)
    await _one_error_event(make_gateway, client)
    assert asked == ["assistant"], "the continuation asked the gate, with its prefill"
    assert not local_sim.requests


async def test_disconnect_during_continuation_closes_both_calls(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    local_sim.options.tps = 100.0
    local_sim.options.answer_tokens = 2000  # 20 s: it cannot end by itself while the test waits
    cerebras_sim.inject("cut", after_chunks=4)
    gw = await make_gateway("always_cerebras")
    before = set(asyncio.all_tasks())
    # role + 3 Cerebras tokens, then well into local's continuation
    left_at = await read_then_leave(client, gw.url, chat(ASK, stream=True), 12)

    (cont,) = local_sim.requests
    await eventually(lambda: cont.ended_at is not None, "the continuation's stream is closed")
    assert cont.prefill and not cont.finished
    assert cont.disconnected_at is not None and cont.disconnected_at >= left_at
    for log in cerebras_sim.requests:
        assert log.ended_at is not None and log.ended_at < left_at

    def leftover() -> set[asyncio.Task[object]]:
        return {t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()}

    await eventually(lambda: not leftover(), lambda: f"tasks left: {leftover()}")
    ledger = gw.services.ledger
    await ledger.flush()
    (row,) = ledger.rows()
    assert row.outcome == "client_disconnected"
    assert row.cerebras_completion_tokens > 0 and row.local_completion_tokens > 0
