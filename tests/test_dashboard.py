"""The dashboard's endpoints: /stats/history buckets, /requests filters and paging,
/requests/{id}, /dashboard/summary, auth, bad parameters, secrets, and the demo traffic."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from paths import REPO_ROOT
from support import CEREBRAS_KEY, chat, post_stream

from gateway.accounting.bill import price
from gateway.accounting.ledger import Ledger
from gateway.accounting.records import RequestRecord, UpstreamCall
from gateway.accounting.stats import StatisticsTracker
from gateway.config import Prices
from gateway.dashboard.demo_traffic import DemoTraffic, dashboard_url
from gateway.dashboard.history import WINDOWS, bounds, history
from gateway.dashboard.requests import reason_kind

CLIENT_KEY = "dash-client-key-7d1e0c"
PRICES = {"local": Prices(), "cerebras": Prices(2.25, 2.75)}
OPENAI_ERROR_KEYS = {"message", "type", "param", "code"}


def _record(
    started_at: float, upstream: str | None, *, prompt: int = 100, completion: int = 50
) -> RequestRecord:
    calls = (
        []
        if upstream is None
        else [UpstreamCall(upstream, prompt_tokens=prompt, completion_tokens=completion)]
    )
    return RequestRecord(
        request_id=f"r-{started_at}",
        started_at=started_at,
        strategy="always_local" if upstream == "local" else "always_cerebras",
        stream=True,
        outcome="ok" if upstream else "error",
        model_used=upstream,  # type: ignore[arg-type]
        calls=calls,
        counterfactual_prompt_tokens=prompt if upstream else 0,
        counterfactual_completion_tokens=completion if upstream else 0,
    )


@pytest.fixture
async def ledger(tmp_path: Path) -> Any:
    led = Ledger(tmp_path / "ledger.db")
    await led.start()
    yield led
    await led.close()


async def test_history_buckets_align_fill_and_sum(ledger: Ledger) -> None:
    now = 1_800_000_000.0 + 30.5  # 30.5 s into a minute
    tracker = StatisticsTracker(PRICES, ledger)
    await tracker.record(_record(now - 10, "local"))  # this minute
    await tracker.record(_record(now - 10, "cerebras"))
    await tracker.record(_record(now - 125, "cerebras"))  # two minutes before
    await tracker.record(_record(now - 125, None))  # an unanswered request
    await tracker.record(_record(now - 3700, "cerebras"))  # outside the hour
    await tracker.record(_record(now + 3700, "local"))  # in the future: outside

    body = await asyncio.to_thread(history, ledger, WINDOWS["1h"], now)
    buckets = body["buckets"]
    assert len(buckets) == 60 and body["bucket_seconds"] == 60
    assert body["end"] == 1_800_000_060.0 and body["start"] == body["end"] - 3600
    assert [b["t"] for b in buckets] == [body["start"] + 60 * i for i in range(60)]
    last, two_before = buckets[-1], buckets[-3]
    assert last["requests"] == {"local": 1, "cerebras": 1, "none": 0, "total": 2}
    assert two_before["requests"] == {"local": 0, "cerebras": 1, "none": 1, "total": 2}
    assert sum(b["requests"]["total"] for b in buckets) == 4
    one_call = price(PRICES["cerebras"], 100, 50, 0)
    assert last["cerebras_cost_usd"] == pytest.approx(one_call, abs=1e-6)
    # local answered for free what Cerebras would have billed: that is the saving
    assert last["cost_saved_usd"] == pytest.approx(one_call, abs=1e-6)
    assert two_before["cost_saved_usd"] == pytest.approx(0.0, abs=1e-6)
    assert last["tokens"] == {"local": 150, "cerebras": 150}
    totals = body["totals"]
    assert totals["requests"]["total"] == 4
    assert totals["cerebras_cost_usd"] == pytest.approx(2 * one_call, abs=1e-6)
    assert totals["cost_saved_usd"] == pytest.approx(one_call, abs=1e-6)

    day = await asyncio.to_thread(history, ledger, WINDOWS["1d"], now)
    assert len(day["buckets"]) == 24 and day["totals"]["requests"]["total"] == 5
    month = await asyncio.to_thread(history, ledger, WINDOWS["30d"], now)
    assert len(month["buckets"]) == 30
    assert month["start"] % 86_400 == 0, "days are UTC days, as for the budget"


def test_bounds_put_now_in_the_last_bucket() -> None:
    for window in WINDOWS.values():
        for now in (1_800_000_000.0, 1_800_000_000.0 + window.bucket_s - 0.001):
            start, end = bounds(window, now)
            assert end - window.bucket_s <= now < end
            assert end - start == window.bucket_s * window.buckets


def test_reason_kinds_drop_details() -> None:
    assert reason_kind(None) == "none"
    assert reason_kind("always_local") == "always_local"
    assert (
        reason_kind("smart_routing: complex: keyword 'refactor' -> cerebras")
        == "smart_routing: complex"
    )
    assert (
        reason_kind(
            "smart_routing: simple: ~12-token ask, no complexity signal -> local; "
            "fallback to cerebras (local: connection refused)"
        )
        == "smart_routing: simple + fallback"
    )
    assert (
        reason_kind("speculative_decoding: draft accepted (length 0.91 >= 0.80)")
        == "speculative_decoding: draft accepted"
    )
    assert (
        reason_kind("adaptive_cerebras: local, cool-down 3.1s left (429)")
        == "adaptive_cerebras: local"
    )
    assert (
        reason_kind("smart_speculative (complex: keyword 'x'): cerebras committed (verify)")
        == "smart_speculative: cerebras committed"
    )


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


def test_dashboard_url() -> None:
    assert dashboard_url("127.0.0.1", 8000) == "http://127.0.0.1:8000/dashboard"
    assert dashboard_url("0.0.0.0", 9) == "http://127.0.0.1:9/dashboard"
    assert dashboard_url("::1", 9) == "http://[::1]:9/dashboard"


async def test_demo_traffic_flag_prints_the_dashboard_and_sends(tmp_path, client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "--demo-traffic",
        "--port",
        str(port),
        cwd=tmp_path,  # the demo's ledger and log land in tmp_path
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not any(line.startswith("dashboard: ") for line in lines):
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, f"the gateway exited: {lines}"
            lines.append(line.decode().strip())
        assert f"dashboard: http://127.0.0.1:{port}/dashboard" in lines
        for _ in range(100):
            await asyncio.sleep(0.1)
            async with client.get(f"http://127.0.0.1:{port}/stats") as resp:
                if (await resp.json())["requests"]["total"] >= 1:
                    break
        else:
            pytest.fail("no demo request was recorded within 10 s")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 15)
