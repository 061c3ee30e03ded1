"""`routing.judge_draft`: smart_routing drafts a local-routed ask and lets the learned draft
scorer accept it or escalate it to Cerebras, through the real gateway on the simulators."""

from __future__ import annotations

from typing import Any

import pytest
from support import calibrate_drafts, chat, post_stream, script

from gateway.dev.sim import SimServer

LOCAL = "Red, green and blue."


CLOUD = "Red, orange, yellow, green, blue, indigo and violet."


async def judged(make_gateway: Any, target: float | None, **speculative: Any) -> Any:
    gw = await make_gateway(
        "smart_routing",
        routing={"judge_draft": True, "target_cloud_share": target},
        speculative_decoding=speculative,
    )
    calibrate_drafts(gw.services.router)
    return gw


@pytest.mark.parametrize(("target", "escalated"), [(0.0, False), (1.0, True)])
async def test_a_judged_draft_streams_on_or_is_withheld(
    make_gateway: Any,
    client: Any,
    local_sim: SimServer,
    cerebras_sim: SimServer,
    target: float,
    escalated: bool,
) -> None:
    """The target share is the draft scorer's: 0 accepts every draft, 1 escalates every one
    (the ask itself is simple for the router either way)."""
    script(local_sim, "colours?", LOCAL)
    script(cerebras_sim, "colours?", CLOUD)
    # Settings the speculative strategies would use are overridden by judge_draft.
    gw = await judged(make_gateway, target, verify_start="concurrent", scorer="levenshtein")
    reply = await post_stream(client, gw.url, chat("colours?", stream=True))
    final = reply.chunks[-1]
    assert final["model_used"] == ("cerebras" if escalated else "local")
    assert reply.text == (CLOUD if escalated else LOCAL)  # an escalated draft is never shown
    assert final["speculative_decoding"]["decided_by"] == "learned"
    assert final["routing_reason"].startswith("smart_routing (judged draft; simple: ")
    assert f"(target share {target:g})" in final["routing_reason"]
    assert len(local_sim.requests) == 1
    assert len(cerebras_sim.requests) == (1 if escalated else 0)


async def test_a_complex_ask_goes_to_cerebras_without_a_draft(
    make_gateway: Any, client: Any, local_sim: SimServer, cerebras_sim: SimServer
) -> None:
    """The ask routing keeps its own rule (the target is the drafts'): a keyword ask is sent
    straight to Cerebras, never drafted."""
    script(cerebras_sim, "please debug this", CLOUD)
    gw = await judged(make_gateway, 0.0)
    reply = await post_stream(client, gw.url, chat("please debug this", stream=True))
    final = reply.chunks[-1]
    assert final["model_used"] == "cerebras"
    assert "speculative_decoding" not in final
    assert final["routing_reason"] == "smart_routing: complex: keyword 'debug' -> cerebras"
    assert local_sim.requests == []


async def test_a_long_prompt_is_still_judged(
    make_gateway: Any, client: Any, local_sim: SimServer, cerebras_sim: SimServer
) -> None:
    """An agent turn carries a system prompt of many thousand tokens: the draft is judged all
    the same, whatever `enabled` and `cost_skip_ratio` say for the speculative strategies
    (Cerebras is paid only when the draft escalates, so there is no cost to skip)."""
    script(local_sim, "colours?", LOCAL)
    gw = await judged(make_gateway, 0.0, enabled=False, cost_skip_ratio=0.1)
    body = chat("colours?", stream=True)
    body["messages"].insert(0, {"role": "system", "content": "You are a coding agent. " * 4000})
    reply = await post_stream(client, gw.url, body)
    final = reply.chunks[-1]
    assert final["model_used"] == "local"
    assert reply.text == LOCAL
    assert final["speculative_decoding"]["decided_by"] == "learned"
    assert "speculation skipped" not in final["routing_reason"]
    assert "speculation disabled" not in final["routing_reason"]
    assert cerebras_sim.requests == []
