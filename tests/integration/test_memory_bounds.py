"""Memory that stops growing (issue 23): every structure that grows with conversations, requests
or time has a bound in the config, keeps it, reports it in /stats and /metrics, and evicts
without breaking behaviour; learning.db and router.db keep their row limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support import chat, gateway_config, post_stream

from gateway.http.app import create_app


async def test_stats_and_metrics_show_every_bounded_structure(
    aiohttp_server: Any, client: Any, tmp_path: Path, local_sim: Any, cerebras_sim: Any
) -> None:
    config = gateway_config(
        tmp_path,
        local_sim.url,
        cerebras_sim.url,
        strategy="smart_routing",
        routing={"escalation": {"max_conversations": 2, "max_turns": 3}},
    )
    server = await aiohttp_server(create_app(config))
    url = str(server.make_url("/v1"))
    for n in range(4):
        body = chat(stream=True)
        body["messages"] = [{"role": "system", "content": f"workspace {n}"}, *body["messages"]]
        assert (await post_stream(client, url, body)).status == 200
    async with client.get(server.make_url("/stats")) as resp:
        memory = (await resp.json())["memory"]
    assert memory["conversations"]["size"] == 2 and memory["conversations"]["bound"] == 2
    assert memory["conversations"]["evicted"] == 2
    assert memory["turns"] == {**memory["turns"], "size": 3, "bound": 3}
    assert memory["router_remembered"]["bound"] == 5000
    assert memory["router_remembered"]["bytes_bound"] == 16 * 1024 * 1024
    # The four requests ask the same: one analysis, kept and reused.
    assert memory["router_asks"] == {**memory["router_asks"], "size": 1, "bound": 256}
    assert memory["router_asks"]["bytes_bound"] == 8 * 1024 * 1024
    assert memory["requests_in_flight"] == {"size": 0, "bound": 512}
    for name in (
        "fingerprint_cache",
        "latency_samples",
        "learning_db_turns",
        "learning_db_conversations",
        "learning_db_labels",
        "router_db_features",
        "router_db_labels",
        "in_flight_per_key",
    ):
        assert {"size", "bound"} <= set(memory[name]), name
    async with client.get(server.make_url("/metrics")) as resp:
        metrics = await resp.text()
    assert 'glm_gateway_memory_entries{structure="conversations"} 2.0' in metrics
    assert 'glm_gateway_memory_entries_bound{structure="turns"} 3.0' in metrics
    assert 'glm_gateway_memory_bytes_bound{structure="router_remembered"} 1.6777216e+07' in metrics
    assert 'glm_gateway_memory_entries_bound{structure="router_asks"} 256.0' in metrics
    assert 'glm_gateway_memory_evictions_total{structure="conversations"} 2.0' in metrics
