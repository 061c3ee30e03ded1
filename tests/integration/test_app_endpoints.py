"""Health, models, stats (durable across restarts), bad input, request ids and logging."""

from __future__ import annotations

import logging

import pytest
from support import (
    CEREBRAS_KEY,
    chat,
    eventually,
    gateway_config,
    gateway_log,
    post_stream,
    refused_url,
)

from gateway.http.app import create_app


async def test_health_reports_each_upstream(make_gateway, client, local_sim) -> None:
    gw = await make_gateway("always_local")
    async with client.get(gw.root + "/health") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["status"] == "ok"
    assert body["upstreams"]["local"]["state"] == "ok"
    assert body["upstreams"]["cerebras"]["state"] == "ok"
    assert CEREBRAS_KEY not in str(body)


async def test_health_shows_llamacpp_loading(make_gateway, client, local_sim) -> None:
    local_sim.options.loading_seconds = 60
    gw = await make_gateway("always_local")
    async with client.get(gw.root + "/health") as resp:
        body = await resp.json()
    assert body["upstreams"]["local"]["state"] == "loading"
    assert "Loading model" in body["upstreams"]["local"]["detail"]
    assert body["status"] == "ok", "Cerebras can still serve"
    reply = await post_stream(client, gw.url, chat(stream=True))
    assert reply.chunks[-1]["model_used"] == "cerebras", "loading local falls back"


async def test_health_without_key_and_all_down(aiohttp_server, client, tmp_path) -> None:
    config = gateway_config(tmp_path, "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1", api_key="")
    server = await aiohttp_server(create_app(config))
    async with client.get(server.make_url("/health")) as resp:
        assert resp.status == 503
        body = await resp.json()
    assert body["upstreams"]["cerebras"]["state"] == "no_api_key"
    assert body["upstreams"]["local"]["state"] == "down"
    async with client.post(server.make_url("/v1/chat/completions"), json=chat()) as resp:
        assert resp.status in (502, 503)
        error = (await resp.json())["error"]
        assert set(error) >= {"message", "type", "param", "code"}


async def test_models_lists_strategies(make_gateway, client) -> None:
    gw = await make_gateway("always_local")
    async with client.get(gw.url + "/models") as resp:
        body = await resp.json()
    ids = {m["id"] for m in body["data"]}
    assert body["object"] == "list"
    assert {"glm-token-saver", "always_local", "always_cerebras", "smart_routing"} <= ids


@pytest.mark.parametrize("how", ["model", "header"])
async def test_request_may_pick_strategy(make_gateway, client, how) -> None:
    gw = await make_gateway("always_local")
    body = chat(stream=True)
    headers = {}
    if how == "model":
        body["model"] = "always_cerebras"
    else:
        headers["x-gateway-strategy"] = "always_cerebras"
    reply = await post_stream(client, gw.url, body, headers=headers)
    assert reply.chunks[-1]["model_used"] == "cerebras"
    assert reply.headers["x-gateway-strategy"] == "always_cerebras"


SPEC_KEYS = {
    "uptime": None,
    "requests": {"total", "by_model"},
    "tokens": {"total", "prompt", "completion", "by_model"},
    "costs": {"total_cost_usd", "cost_saved_usd", "cerebras_cost_per_1k_tokens"},
    "speculative_decoding": {
        "total_drafts",
        "total_verifications",
        "drafts_accepted",
        "drafts_rejected",
        "acceptance_rate_percent",
        "total_draft_tokens",
        "total_verification_tokens",
        "tokens_saved",
        "tokens_saved_percent",
    },
    "errors": {"total", "by_model"},
    "rate_limits": {"total_hits"},
    "performance": {"avg_tokens_per_request"},
}


async def test_stats_shape_costs_and_restart(
    aiohttp_server, client, tmp_path, local_sim, cerebras_sim
) -> None:
    config = gateway_config(tmp_path, local_sim.url, cerebras_sim.url)
    server = await aiohttp_server(create_app(config))
    url = str(server.make_url("/v1"))
    for strategy in ("always_local", "always_cerebras", "always_cerebras"):
        reply = await post_stream(client, url, chat(stream=True, model=strategy))
        assert reply.status == 200
    async with client.get(server.make_url("/stats")) as resp:
        before = await resp.json()
    for key, inner in SPEC_KEYS.items():
        assert key in before
        if inner:
            assert inner <= set(before[key]), key
    assert before["requests"]["total"] == 3
    assert before["requests"]["by_model"] == {"local": 1, "cerebras": 2}
    cerebras_tokens = before["tokens"]["by_model"]["cerebras"]
    expected_cost = (cerebras_tokens["prompt"] * 2.25 + cerebras_tokens["completion"] * 2.75) / 1e6
    assert before["costs"]["total_cost_usd"] == pytest.approx(expected_cost, abs=1e-6)
    local_tokens = before["tokens"]["by_model"]["local"]
    saved = (local_tokens["prompt"] * 2.25 + local_tokens["completion"] * 2.75) / 1e6
    assert before["costs"]["cost_saved_usd"] == pytest.approx(saved, abs=1e-6)
    assert CEREBRAS_KEY not in str(before)
    await server.close()

    server2 = await aiohttp_server(create_app(config))
    async with client.get(server2.make_url("/stats")) as resp:
        after = await resp.json()
    before.pop("uptime"), after.pop("uptime")
    # The memory block is this process's: caches and remembered requests start empty.
    before.pop("memory"), after.pop("memory")
    assert after == before

    async with client.post(server2.make_url("/stats/reset")) as resp:
        assert resp.status == 200
    await server2.close()
    server3 = await aiohttp_server(create_app(config))
    async with client.get(server3.make_url("/stats")) as resp:
        reset = await resp.json()
    assert reset["requests"]["total"] == 0
    assert reset["ledger"]["rows"] == 3, "reset never deletes recorded requests"


BAD_BODIES = [
    (b"{not json", "invalid_json", 400),
    (b"", "invalid_json", 400),
    (b"[1, 2]", "invalid_json", 400),
    (b'{"messages": "hi"}', "invalid_type", 400),
    (b'{"messages": []}', "empty_array", 400),
    (b'{"model": "x"}', "missing_required_parameter", 400),
    (b'{"messages": [{"role": "wizard", "content": "x"}]}', "invalid_value", 400),
    (b'{"messages": [{"role": "user", "content": 5}]}', "invalid_type", 400),
    (b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "invalid_type", 400),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', "invalid_value", 400),
    (b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', "invalid_json", 400),
]


@pytest.mark.parametrize(("raw", "code", "status"), BAD_BODIES)
async def test_bad_input_gets_openai_error(
    make_gateway, client, local_sim, raw, code, status
) -> None:
    gw = await make_gateway("always_local")
    async with client.post(
        gw.url + "/chat/completions", data=raw, headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == status
        body = await resp.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    assert not local_sim.requests, "nothing reaches an upstream"


async def test_body_limit_content_type_and_unknown_route(make_gateway, client) -> None:
    gw = await make_gateway("always_local", server={"max_body_bytes": 2048})
    big = chat("x" * 5000)
    async with client.post(gw.url + "/chat/completions", json=big) as resp:
        assert resp.status == 413
        assert set((await resp.json())["error"]) == {"message", "type", "param", "code"}
    async with client.post(
        gw.url + "/chat/completions",
        data="messages=hi",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    ) as resp:
        assert resp.status == 415
        assert (await resp.json())["error"]["code"] == "unsupported_media_type"
    async with client.get(gw.root + "/nope") as resp:
        assert resp.status == 404
        assert set((await resp.json())["error"]) == {"message", "type", "param", "code"}
    async with client.get(gw.url + "/chat/completions") as resp:
        assert resp.status == 405


async def test_the_log_line_is_written_when_recording_fails(
    make_gateway, client, tmp_path, monkeypatch
) -> None:
    """Both upstreams refuse, so the request is recorded after its error response, where a
    recording that raises must not take the request's log line with it."""
    with refused_url() as local, refused_url() as cerebras:
        gw = await make_gateway(config=gateway_config(tmp_path, local, cerebras))

        async def broken(self: object, record: object) -> None:
            raise RuntimeError("a recording bug")

        monkeypatch.setattr(type(gw.services.recorder), "record", broken)
        with gateway_log(gw.config.storage, []) as read_log:
            async with client.post(
                gw.url + "/chat/completions",
                json=chat(stream=True),
                headers={"x-request-id": "broken-record"},
            ) as resp:
                await resp.read()
            await eventually(lambda: "req=broken-record door=" in read_log(), "the log line")
            text = read_log()
    line = next(line for line in text.splitlines() if "req=broken-record door=" in line)
    assert "outcome=error" in line and "reason=" in line


async def test_request_id_and_log_line_without_secrets(
    make_gateway, client, tmp_path, caplog
) -> None:
    gw = await make_gateway("always_cerebras")
    with gateway_log(gw.config.storage, [CEREBRAS_KEY]) as read_log:
        reply = await post_stream(
            client, gw.url, chat(stream=True), headers={"x-request-id": "trace-abc.123"}
        )
        assert reply.headers.get("x-request-id") == "trace-abc.123", reply.headers
        logging.getLogger("gateway.test").warning("leak attempt %s", CEREBRAS_KEY)
        text = read_log()
    lines = [line for line in text.splitlines() if "req=trace-abc.123" in line]
    assert len(lines) == 1
    assert "model_used=cerebras" in lines[0] and "outcome=ok" in lines[0]
    assert CEREBRAS_KEY not in text
    assert "[REDACTED]" in text
