"""The door seam: the door each request came through is recorded (ledger, /stats), an old ledger
gains the column, client keys come as Bearer or x-api-key."""

from __future__ import annotations

from support import chat, door_record

CLIENT_KEY = "client-key-0123456789"


async def test_stats_count_requests_by_door(make_gateway, client, local_sim) -> None:
    gw = await make_gateway("always_local")
    async with client.post(gw.url + "/chat/completions", json=chat()) as resp:
        assert resp.status == 200
    await gw.services.stats.record(door_record("m1", "messages"))
    async with client.get(gw.root + "/stats") as resp:
        stats = await resp.json()
    assert stats["requests"]["by_door"] == {"chat": 1, "messages": 1}
    rows = gw.services.ledger.rows()
    assert [r.door for r in rows] == ["chat", "messages"]


async def test_client_key_from_x_api_key(make_gateway, client, local_sim) -> None:
    gw = await make_gateway("always_local", auth={"api_keys": [CLIENT_KEY]})
    url = gw.url + "/chat/completions"
    async with client.post(url, json=chat(), headers={"x-api-key": "wrong-key-0000"}) as resp:
        assert resp.status == 401
        assert "x-api-key" in (await resp.json())["error"]["message"]
    async with client.post(url, json=chat(), headers={"x-api-key": CLIENT_KEY}) as resp:
        assert resp.status == 200
    # A wrong Bearer key is not rescued by a right x-api-key only when Bearer is well-formed.
    headers = {"Authorization": "Bearer wrong-key-0000", "x-api-key": CLIENT_KEY}
    async with client.post(url, json=chat(), headers=headers) as resp:
        assert resp.status == 401


async def test_cached_prompt_tokens_per_request_and_in_stats(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    """llama.cpp's timings.cache_n and Cerebras' prompt_tokens_details.cached_tokens are recorded
    per request (ledger) and summed in /stats; a client sees llama.cpp's as cached_tokens too."""
    local_sim.options.cached_prompt_share = 0.5
    cerebras_sim.options.cached_prompt_share = 0.25
    gw = await make_gateway("always_local")
    body = chat("tell me about caches " * 20)
    async with client.post(gw.url + "/chat/completions", json=body) as resp:
        local_usage = (await resp.json())["usage"]
    local_prompt = local_sim.requests[-1].prompt_tokens
    headers = {"x-gateway-strategy": "always_cerebras"}
    async with client.post(gw.url + "/chat/completions", json=body, headers=headers) as resp:
        assert resp.status == 200
    cerebras_prompt = cerebras_sim.requests[-1].prompt_tokens
    assert local_usage["prompt_tokens_details"] == {"cached_tokens": local_prompt // 2}
    rows = gw.services.ledger.rows()
    assert [(r.local_cached_tokens, r.cerebras_cached_tokens) for r in rows] == [
        (local_prompt // 2, 0),
        (0, cerebras_prompt // 4),
    ]
    async with client.get(gw.root + "/stats") as resp:
        cached = (await resp.json())["tokens"]["cached"]
    assert cached == {
        "local": local_prompt // 2,
        "cerebras": cerebras_prompt // 4,
        "total": local_prompt // 2 + cerebras_prompt // 4,
    }
