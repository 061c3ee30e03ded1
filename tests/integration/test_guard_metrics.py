"""Client keys, concurrency limits and /metrics, through a real gateway on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from multidict import CIMultiDict
from support import CEREBRAS_KEY, chat, eventually, post_stream

CLIENT_KEY = "client-key-0123456789"


def assert_openai_error(body: dict) -> dict:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("GET", "/stats"),
        ("POST", "/stats/reset"),
        ("GET", "/metrics"),
    ],
)
async def test_keys_required_everywhere_but_health(
    make_gateway, client, local_sim, method, path
) -> None:
    gw = await make_gateway("always_local", auth={"api_keys": [CLIENT_KEY]})
    url = gw.root + path
    for headers in (
        {},
        {"Authorization": "Bearer wrong-key-000000"},
        {"Authorization": CLIENT_KEY},
    ):
        async with client.request(method, url, json=chat(), headers=headers) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"] == "Bearer"
            assert_openai_error(await resp.json())
    assert not local_sim.requests
    async with client.get(gw.root + "/health") as resp:
        assert resp.status == 200
    good = {"Authorization": f"Bearer {CLIENT_KEY}"}
    async with client.request(method, url, json=chat(), headers=good) as resp:
        assert resp.status == 200


async def test_client_key_never_reaches_an_upstream(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    gw = await make_gateway("always_local", auth={"api_keys": [CLIENT_KEY]})
    good = {"Authorization": f"Bearer {CLIENT_KEY}"}
    for strategy in ("always_local", "always_cerebras"):
        reply = await post_stream(client, gw.url, chat(stream=True, model=strategy), headers=good)
        assert reply.status == 200
    assert CLIENT_KEY not in str(local_sim.requests[-1].headers)
    assert CLIENT_KEY not in str(cerebras_sim.requests[-1].headers)
    assert cerebras_sim.requests[-1].headers["Authorization"] == f"Bearer {CEREBRAS_KEY}"


async def test_concurrency_limits_overall_and_per_key(make_gateway, client, local_sim) -> None:
    release = local_sim.hold()  # admitted calls stay in flight until released
    keys = ["client-key-aaaaaaaa", "client-key-bbbbbbbb"]
    gw = await make_gateway(
        "always_local",
        auth={"api_keys": keys},
        limits={"max_concurrent_requests": 3, "max_concurrent_per_key": 2},
    )

    async def call(key: str) -> tuple[int, CIMultiDict[str]]:
        headers = {"Authorization": f"Bearer {key}"}
        async with client.post(
            gw.url + "/chat/completions", json=chat(stream=True), headers=headers
        ) as resp:
            await resp.read()
            return resp.status, CIMultiDict(resp.headers)

    async def refused(key: str) -> tuple[int, CIMultiDict[str]]:
        try:  # a call admitted past a limit waits at the held upstream: no answer
            return await asyncio.wait_for(call(key), 10)
        except TimeoutError:
            pytest.fail("admitted past the limit")

    def arrived(n: int) -> Callable[[], bool]:
        return lambda: len(local_sim.requests) == n

    first = [asyncio.create_task(call(keys[0])) for _ in range(2)]
    await eventually(arrived(2), "both calls of the first key reach the upstream")
    status, headers = await refused(keys[0])
    assert status == 429 and headers["retry-after"] == "1"
    third = asyncio.create_task(call(keys[1]))
    await eventually(arrived(3), "the second key's call reaches the upstream")
    status, _ = await refused(keys[1])
    assert status == 429, "overall limit of 3 reached"
    assert len(local_sim.requests) == 3, "refused calls never reach an upstream"
    release.set()
    results = await asyncio.gather(*first, third)
    assert [s for s, _ in results] == [200, 200, 200]
    status, _ = await call(keys[1])
    assert status == 200, "slots are given back when requests end"


async def test_metrics_exposition(make_gateway, client, local_sim, cerebras_sim) -> None:
    gw = await make_gateway("always_local")
    await post_stream(client, gw.url, chat(stream=True))
    cerebras_sim.inject("http_429")
    await post_stream(client, gw.url, chat(stream=True, model="always_cerebras"))
    async with client.get(gw.root + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    assert (
        'glm_gateway_requests_total{outcome="ok",strategy="always_local",upstream="local"} 1.0'
        in text
    )
    limited = 'role="answer",status="rate_limited",upstream="cerebras"'
    assert f"glm_gateway_upstream_calls_total{{{limited}}} 1.0" in text
    assert "glm_gateway_time_to_first_token_seconds_bucket" in text
    assert "glm_gateway_request_duration_seconds_count" in text
    assert 'glm_gateway_tokens_total{kind="completion",role="answer",upstream="local"}' in text
    assert "glm_gateway_cost_dollars_total" in text
    assert (
        'glm_gateway_rate_limit_headroom_ratio{upstream="cerebras",window="tokens-minute"}' in text
    )
    assert "glm_gateway_in_flight_requests 0.0" in text
    assert CEREBRAS_KEY not in text
