"""The dashboard's endpoints: /stats/history buckets, /requests filters and paging,
/requests/{id}, /dashboard/summary, auth, bad parameters, secrets, and the demo traffic."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from support import CEREBRAS_KEY, chat, post_stream

from gateway.accounting.records import RequestRecord, UpstreamCall
from gateway.dashboard.demo_traffic import DemoTraffic

CLIENT_KEY = "dash-client-key-7d1e0c"


OPENAI_ERROR_KEYS = {"message", "type", "param", "code"}


async def _traffic(client: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> None:
    for model in (
        "always_local",
        "always_cerebras",
        "always_local",
        "always_cerebras",
        "always_local",
    ):
        reply = await post_stream(
            client,
            url,
            chat(stream=True, model=model, stream_options={"include_usage": True}),
            headers=headers,
        )
        assert reply.status == 200


async def _get(
    client: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with client.get(url, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_history_and_summary_agree_with_stats(make_gateway, client) -> None:
    gw = await make_gateway("always_local", budget={"daily_usd": 5, "monthly_usd": 50})
    await _traffic(client, gw.url, {})
    _, stats = await _get(client, gw.root + "/stats")
    status, hist = await _get(client, gw.root + "/stats/history?window=1d")
    assert status == 200
    totals = hist["totals"]
    assert totals["requests"]["total"] == stats["requests"]["total"] == 5
    assert totals["requests"]["local"] == stats["requests"]["by_model"]["local"]
    assert totals["cerebras_cost_usd"] == pytest.approx(stats["costs"]["cerebras_cost_usd"])
    assert totals["cost_saved_usd"] == pytest.approx(stats["costs"]["cost_saved_usd"])
    status, default = await _get(client, gw.root + "/stats/history")
    assert status == 200 and default["window"] == "1h"

    status, summary = await _get(client, gw.root + "/dashboard/summary")
    assert status == 200
    today = summary["today"]
    assert today["requests"] == 5
    assert today["cerebras_cost_usd"] == pytest.approx(stats["costs"]["cerebras_cost_usd"])
    assert today["cost_saved_usd"] == pytest.approx(stats["costs"]["cost_saved_usd"])
    assert today["local_share_requests_percent"] == 60.0
    local_tokens = stats["tokens"]["by_model"]["local"]["total"]
    assert today["local_share_tokens_percent"] == pytest.approx(
        local_tokens / stats["tokens"]["total"] * 100, abs=0.01
    )
    assert summary["routing"]["by_strategy"] == {"always_local": 3, "always_cerebras": 2}
    assert sum(summary["routing"]["by_reason_kind"].values()) == 5
    budget = summary["budget"]
    assert budget["alert_percents"] == [50, 80, 100]
    assert budget["daily"]["spent_usd"] == pytest.approx(today["cerebras_cost_usd"], abs=1e-6)
    limits = summary["rate_limits"]
    assert limits["upstream"] == "cerebras" and 0 < limits["threshold"] < 1
    assert limits["adaptive"]["state"] in ("cerebras", "local")
    for window in limits["windows"]:
        assert window["reset_in_s"] is None or window["reset_in_s"] >= 0
    assert CEREBRAS_KEY not in str(summary)


async def test_requests_filters_and_pages(make_gateway, client) -> None:
    gw = await make_gateway("always_local")
    await _traffic(client, gw.url, {})
    status, page = await _get(client, gw.root + "/requests")
    assert status == 200 and page["object"] == "list" and not page["has_more"]
    ids = [r["id"] for r in page["data"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 5, "newest first"
    row = page["data"][0]
    assert set(row) >= {
        "started_at",
        "strategy",
        "model_used",
        "tokens",
        "cost_usd",
        "duration_ms",
        "ttft_ms",
        "outcome",
        "routing_reason",
        "reason_kind",
    }

    _, local = await _get(client, gw.root + "/requests?upstream=local")
    assert [r["model_used"] for r in local["data"]] == ["local"] * 3
    _, cerebras = await _get(client, gw.root + "/requests?upstream=cerebras&outcome=ok")
    assert [r["model_used"] for r in cerebras["data"]] == ["cerebras"] * 2
    _, failed = await _get(client, gw.root + "/requests?outcome=error")
    assert failed["data"] == [] and failed["next_before"] is None
    _, none = await _get(client, gw.root + "/requests?upstream=none")
    assert none["data"] == []

    seen: list[int] = []
    before = ""
    while True:
        _, page = await _get(client, gw.root + f"/requests?limit=2{before}")
        seen += [r["id"] for r in page["data"]]
        assert len(page["data"]) <= 2
        if not page["has_more"]:
            assert page["next_before"] is None
            break
        before = f"&before={page['next_before']}"
    assert seen == ids, "pages cover every row once, in order"
    _, filtered = await _get(client, gw.root + f"/requests?upstream=local&before={ids[0]}&limit=1")
    assert filtered["data"][0]["model_used"] == "local" and filtered["data"][0]["id"] < ids[0]


async def test_one_request_has_every_call_and_no_secret(make_gateway, client) -> None:
    gw = await make_gateway("speculative_decoding")
    reply = await post_stream(
        client,
        gw.url,
        chat("Write a binary search in Python.", stream=True),
        headers={"x-request-id": "trace-dash-1"},
    )
    assert reply.status == 200
    status, row = await _get(client, gw.root + "/requests/trace-dash-1")
    assert status == 200
    assert row["request_id"] == "trace-dash-1" and row["object"] == "ledger.request"
    assert len(row["calls"]) >= 2, "the draft and the verify call"
    assert {c["upstream"] for c in row["calls"]} == {"local", "cerebras"}
    assert {"role", "status", "prompt_tokens", "completion_tokens"} <= set(row["calls"][0])
    status, by_id = await _get(client, gw.root + f"/requests/{row['id']}")
    assert status == 200 and by_id == row
    assert CEREBRAS_KEY not in str(row)

    # a key that reached a stored error message is redacted, never shown
    record = RequestRecord(
        request_id="leaky",
        started_at=1.0,
        strategy="always_cerebras",
        stream=False,
        outcome="error",
        http_status=401,
        calls=[UpstreamCall("cerebras", status="error", error=f"bad key {CEREBRAS_KEY}")],
    )
    await gw.services.stats.record(record)
    status, leaky = await _get(client, gw.root + "/requests/leaky")
    assert status == 200 and CEREBRAS_KEY not in str(leaky)
    assert "[REDACTED]" in leaky["calls"][0]["error"]
    _, page = await _get(client, gw.root + "/requests?outcome=error")
    assert CEREBRAS_KEY not in str(page)

    for missing in ("999999", "no-such-request"):
        status, body = await _get(client, gw.root + f"/requests/{missing}")
        assert status == 404 and set(body["error"]) == OPENAI_ERROR_KEYS


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/stats/history?window=2h", "window"),
        ("/stats/history?window=", None),  # empty means the default
        ("/requests?limit=0", "limit"),
        ("/requests?limit=201", "limit"),
        ("/requests?limit=ten", "limit"),
        ("/requests?limit=1.5", "limit"),
        ("/requests?before=-3", "before"),
        ("/requests?before=x", "before"),
        ("/requests?upstream=openai", "upstream"),
        ("/requests?outcome=great", "outcome"),
    ],
)
async def test_bad_parameters_are_400_in_openai_shape(make_gateway, client, path, param) -> None:
    gw = await make_gateway("always_local")
    status, body = await _get(client, gw.root + path)
    if param is None:
        assert status == 200
        return
    assert status == 400, body
    assert set(body["error"]) == OPENAI_ERROR_KEYS
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param and body["error"]["code"] == "invalid_value"


async def test_client_keys_protect_the_data_not_the_page(make_gateway, client) -> None:
    gw = await make_gateway("always_local", auth={"api_keys": [CLIENT_KEY]})
    good = {"Authorization": f"Bearer {CLIENT_KEY}"}
    await _traffic(client, gw.url, good)
    for path in ("/stats/history", "/requests", "/requests/1", "/dashboard/summary"):
        for headers in (None, {"Authorization": "Bearer wrong-key"}, {"Authorization": CLIENT_KEY}):
            status, body = await _get(client, gw.root + path, headers)
            assert status == 401, (path, headers)
            assert set(body["error"]) == OPENAI_ERROR_KEYS
        status, _ = await _get(client, gw.root + path, good)
        assert status == 200, path
    async with client.get(gw.root + "/dashboard") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        page = await resp.text()
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert 'data-auth="required"' in page
    assert CLIENT_KEY not in page and CEREBRAS_KEY not in page
    for name in (
        "dashboard.js",
        "dashboard.css",
        "uPlot.iife.min.js",
        "uPlot.min.css",
        "uPlot.LICENSE",
    ):
        async with client.get(gw.root + "/dashboard/static/" + name) as resp:
            assert resp.status == 200, name
    for name in ("index.html", "..%2Frequests.py", "nope.js"):
        async with client.get(gw.root + "/dashboard/static/" + name) as resp:
            assert resp.status == 404, name


async def test_page_without_keys_says_so(make_gateway, client) -> None:
    gw = await make_gateway("always_local")
    async with client.get(gw.root + "/dashboard") as resp:
        assert 'data-auth="none"' in await resp.text()


async def test_demo_traffic_sends_varied_requests(make_gateway) -> None:
    gw = await make_gateway("smart_routing")
    traffic = DemoTraffic(gw.url, interval=(0.01, 0.03), seed=7)
    task = asyncio.create_task(traffic.run())
    for _ in range(200):
        await asyncio.sleep(0.05)
        if gw.services.stats.get_statistics()["requests"]["total"] >= 6:
            break
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    stats = gw.services.stats.get_statistics()
    assert stats["requests"]["total"] >= 6
    assert len(stats["requests"]["by_strategy"]) >= 2, "several strategies"
