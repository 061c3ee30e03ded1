"""The router through the real gateway on the simulators: the hedging fix, the learned scorer on
the after-draft path, smart_routing with the learned router, the /stats and /metrics blocks."""

from __future__ import annotations

from typing import Any

import pytest
from support import calibrate_drafts, chat, post_stream, recorded_puts, script

from gateway.dev.sim import SimServer


async def stats_of(client: Any, gw: Any) -> dict[str, Any]:
    async with client.get(gw.root + "/stats") as resp:
        return dict(await resp.json())


@pytest.mark.parametrize("scorer", ["levenshtein", "token_set", "final_answer", "learned"])
@pytest.mark.parametrize("verify_start", ["after_draft", "concurrent"])
async def test_short_hedging_draft_is_not_accepted(
    make_gateway: Any,
    client: Any,
    local_sim: SimServer,
    cerebras_sim: SimServer,
    scorer: str,
    verify_start: str,
) -> None:
    script(local_sim, "capital?", "I'm not sure.")
    script(cerebras_sim, "capital?", "The capital of Australia is Canberra.")
    gw = await make_gateway(
        "speculative_decoding",
        speculative_decoding={
            "max_draft_tokens": 50,
            "verify_start": verify_start,
            "scorer": scorer,
        },
    )
    reply = await post_stream(client, gw.url, chat("capital?", stream=True))
    final = reply.chunks[-1]
    assert reply.text == "The capital of Australia is Canberra."
    assert final["model_used"] == "cerebras"
    assert final["speculative_decoding"]["accepted"] is False
    assert final["speculative_decoding"]["decided_by"] in ("draft_hedged", "verify_complete")
    assert len(cerebras_sim.requests) == 1


async def test_short_plain_draft_is_still_accepted(
    make_gateway: Any, client: Any, local_sim: SimServer, cerebras_sim: SimServer
) -> None:
    script(local_sim, "2+2", "it is 4")
    gw = await make_gateway(
        "speculative_decoding",
        speculative_decoding={"max_draft_tokens": 10, "verify_start": "after_draft"},
    )
    reply = await post_stream(client, gw.url, chat("2+2", stream=True))
    assert reply.chunks[-1]["speculative_decoding"]["decided_by"] == "short_draft"
    assert cerebras_sim.requests == []


@pytest.mark.parametrize(("target", "escalated"), [(0.0, False), (1.0, True)])
async def test_learned_draft_scorer_follows_the_target(
    make_gateway: Any,
    client: Any,
    local_sim: SimServer,
    cerebras_sim: SimServer,
    target: float,
    escalated: bool,
) -> None:
    gw = await make_gateway(
        "speculative_decoding",
        routing={"target_cloud_share": target},
        speculative_decoding={"verify_start": "after_draft", "scorer": "learned"},
    )
    assert gw.services.router is not None
    calibrate_drafts(gw.services.router)
    script(local_sim, "colours?", "Red, green and blue.")
    script(cerebras_sim, "colours?", "Red, orange, yellow, green, blue, indigo and violet.")
    reply = await post_stream(client, gw.url, chat("colours?", stream=True))
    final = reply.chunks[-1]
    assert final["speculative_decoding"]["decided_by"] == "learned"
    assert final["model_used"] == ("cerebras" if escalated else "local")
    assert "learned: p(local fails)=" in final["routing_reason"]
    assert f"(target share {target:g})" in final["routing_reason"]
    assert len(cerebras_sim.requests) == (1 if escalated else 0)


async def test_learned_smart_routing_reason_stats_and_metrics(
    make_gateway: Any, client: Any, local_sim: SimServer, cerebras_sim: SimServer
) -> None:
    gw = await make_gateway("smart_routing", routing={"router": "learned"})
    reply = await post_stream(client, gw.url, chat("what colour is the sky?", stream=True))
    reason = reply.chunks[-1]["routing_reason"]
    assert reason.startswith("smart_routing: learned: p(local fails)=")
    assert reason.endswith(("-> local", "-> cerebras"))
    forced = await post_stream(client, gw.url, chat("please refactor this", stream=True))
    assert forced.chunks[-1]["model_used"] == "cerebras"
    assert "keyword 'refactor' forces cerebras -> cerebras" in forced.chunks[-1]["routing_reason"]

    router = gw.services.router
    assert router is not None
    rid = reply.headers["x-request-id"]
    assert router.learn(rid, bad=True, source="feedback")
    router.count_escalation()
    router.count_no_think()
    block = (await stats_of(client, gw))["router"]
    assert block["kind"] == "learned"
    assert block["target_cloud_share"] is None
    assert 0.0 < block["threshold"] < 1.0
    assert block["routed_in_window"] == 2
    assert block["cloud_share"] >= 0.5
    assert block["labels"] == {"feedback": 1}
    assert (block["escalations"], block["told_not_to_think"]) == (1, 1)
    async with client.get(gw.root + "/metrics") as resp:
        text = await resp.text()
    assert 'glm_gateway_router_labels_total{source="feedback"} 1.0' in text
    assert "glm_gateway_router_escalations_total 1.0" in text
    assert "glm_gateway_router_cloud_share_ratio" in text
    assert block["asks"] == {"analysed": 2, "reused": 0}
    assert 'glm_gateway_router_asks_total{outcome="analysed"} 2.0' in text
    again = await post_stream(client, gw.url, chat("please refactor this", stream=True))
    assert again.status == 200
    async with client.get(gw.root + "/metrics") as resp:
        text = await resp.text()
    assert 'glm_gateway_router_asks_total{outcome="reused"} 1.0' in text


async def test_heuristic_is_the_default_and_keeps_its_reasons(
    make_gateway: Any, client: Any, local_sim: SimServer, cerebras_sim: SimServer
) -> None:
    gw = await make_gateway("smart_routing")
    reply = await post_stream(client, gw.url, chat("please debug this", stream=True))
    assert reply.chunks[-1]["routing_reason"] == (
        "smart_routing: complex: keyword 'debug' -> cerebras"
    )
    block = (await stats_of(client, gw))["router"]
    assert (block["kind"], block["threshold"], block["cloud_share"]) == ("heuristic", None, 1.0)


async def test_one_request_hands_its_three_files_writes_over_at_once(
    make_gateway: Any, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ledger row, the router's decision (router.db) and the conversation's turn
    # (learning.db) of one request reach the one writer thread in one queue put, with the row.
    gw = await make_gateway("smart_routing")
    writer = gw.services.writer
    puts = recorded_puts(monkeypatch, writer)
    reply = await post_stream(client, gw.url, chat("what is 2+2?", stream=True))
    assert reply.text
    assert len(puts) == 1, puts
    files = {write.file.name.split()[0] for write in puts[0]}
    assert files == {"ledger", "router", "learning"}
    # Committed with the row, before [DONE]: the ledger already holds it.
    assert [row.request_id for row in gw.services.ledger.rows()] == [reply.headers["x-request-id"]]
