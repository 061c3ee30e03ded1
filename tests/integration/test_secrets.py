"""The Cerebras key appears nowhere but in requests to Cerebras: not in logs, /stats, /metrics,
/health, error bodies or streams, and never in any request to the local upstream."""

from __future__ import annotations

from support import CEREBRAS_KEY, chat, gateway_log, post_stream

CLIENT_KEY = "client-secret-key-777"


async def test_cerebras_key_is_never_exposed(make_gateway, client, local_sim, cerebras_sim) -> None:
    gw = await make_gateway("always_local", auth={"api_keys": [CLIENT_KEY]})
    auth = {"Authorization": f"Bearer {CLIENT_KEY}"}
    seen: list[str] = []
    with gateway_log(gw.config.storage, [CEREBRAS_KEY, CLIENT_KEY]) as read_log:
        cerebras_sim.options.api_key = "a-different-key"  # Cerebras refuses ours: a 401 path
        reply = await post_stream(
            client, gw.url, chat(stream=True, model="always_cerebras"), headers=auth
        )
        seen.append(reply.raw.decode("utf-8", "replace"))
        cerebras_sim.options.api_key = CEREBRAS_KEY
        cerebras_sim.inject("http_429")
        cerebras_sim.inject("http_500")
        local_sim.inject("cut", after_chunks=4)
        local_sim.options.n_ctx = 10_000
        for strategy in (
            "always_local",
            "always_cerebras",
            "speculative_decoding",
            "smart_routing",
            "always_cerebras",
            "always_local",
        ):
            for stream in (True, False):
                reply = await post_stream(
                    client,
                    gw.url,
                    chat("Explain why x?", stream=stream, model=strategy),
                    headers=auth,
                )
                seen.append(reply.raw.decode("utf-8", "replace"))
                seen.append(str(dict(reply.headers)))
        async with client.post(gw.url + "/chat/completions", json={"bad": 1}, headers=auth) as resp:
            seen.append(await resp.text())
        for path in ("/stats", "/metrics", "/health", "/v1/models"):
            async with client.get(gw.root + path, headers=auth) as resp:
                seen.append(await resp.text())
        seen.append(read_log())
    everything = "\n".join(seen)
    assert any(log.status == 401 for log in cerebras_sim.requests), "a 401 path was exercised"
    assert CEREBRAS_KEY not in everything
    assert CLIENT_KEY not in everything
    assert local_sim.requests, "the local upstream was called"
    for log in local_sim.requests:
        assert CEREBRAS_KEY not in str(log.headers) + str(log.body)
        assert CLIENT_KEY not in str(log.headers) + str(log.body)
    for log in cerebras_sim.requests:
        assert CLIENT_KEY not in str(log.headers) + str(log.body)
        assert log.headers.get("Authorization") == f"Bearer {CEREBRAS_KEY}"
