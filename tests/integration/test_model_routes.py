"""Model names as routing hints (`routing.model_routes`) and agents' session ids as
conversation ids, through a real gateway on 127.0.0.1 (both doors)."""

from __future__ import annotations

from anthropic_support import transcript
from support import chat

from gateway.router.conversation import conversation_key


def messages_body(model: str) -> dict:
    return {"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}


async def strategy_of(client, gw, model: str, headers: dict | None = None) -> str:
    async with client.post(
        gw.root + "/v1/messages", json=messages_body(model), headers=headers or {}
    ) as resp:
        assert resp.status == 200, await resp.text()
        return resp.headers["x-gateway-strategy"]


async def test_haiku_goes_local_by_default_under_smart_routing(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    gw = await make_gateway("smart_routing")
    assert await strategy_of(client, gw, "claude-haiku-4-5-20251001") == "always_local"
    assert local_sim.requests and not cerebras_sim.requests
    assert await strategy_of(client, gw, "claude-sonnet-4-5") == "smart_routing"
    # a strategy the client names wins over the hint
    named = {"x-gateway-strategy": "always_cerebras"}
    assert await strategy_of(client, gw, "claude-haiku-4-5", named) == "always_cerebras"
    # the chat door's model names are hints too
    async with client.post(gw.url + "/chat/completions", json=chat(model="my-HAIKU")) as resp:
        assert resp.headers["x-gateway-strategy"] == "always_local"


async def test_default_map_only_under_smart_routing(make_gateway, client, local_sim) -> None:
    gw = await make_gateway("always_cerebras")
    assert await strategy_of(client, gw, "claude-haiku-4-5") == "always_cerebras"


async def test_configured_map_first_match_wins(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    routes = {"glm-4.7": "cerebras", "claude-*": "strategy", "*": "local"}
    gw = await make_gateway("always_cerebras", routing={"model_routes": routes})
    assert await strategy_of(client, gw, "GLM-4.7") == "always_cerebras"
    assert await strategy_of(client, gw, "claude-haiku-4-5") == "always_cerebras"  # strategy's
    assert await strategy_of(client, gw, "qwen") == "always_local"


async def test_claude_code_session_is_the_conversation(make_gateway, client, local_sim) -> None:
    gw = await make_gateway("smart_routing")
    t = transcript("claude_code_first_turn")
    async with client.post(gw.root + t["path"], json=t["body"], headers=t["headers"]) as resp:
        assert resp.status == 200
        await resp.read()
    session = t["headers"]["X-Claude-Code-Session-Id"]
    expected = conversation_key({}, {"x-conversation-id": "claude-code:" + session})
    learning = gw.services.learning
    assert learning is not None
    assert expected in learning.tracker.conversations
    # without the header, metadata.user_id's session_id names the same conversation
    headers = {k: v for k, v in t["headers"].items() if k != "X-Claude-Code-Session-Id"}
    async with client.post(gw.root + t["path"], json=t["body"], headers=headers) as resp:
        assert resp.status == 200
        await resp.read()
    assert list(learning.tracker.conversations) == [expected]
