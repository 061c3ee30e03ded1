"""Thinking control per route: each upstream's own parameter, the client's own parameter never
overridden, retry-once-and-remember when an upstream refuses it, reasoning tokens counted apart.

Request bodies are pinned with aioresponses (the `mocked` fixture, tests/mocked_http.py);
the routing, retry and statistics paths run against the simulators on 127.0.0.1.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aioresponses import aioresponses
from support import chat, post_stream
from yarl import URL

from gateway.accounting.ledger import Ledger
from gateway.accounting.ledger.schema import COLUMNS, SCHEMA
from gateway.accounting.records import RequestRecord, UpstreamCall, UpstreamName
from gateway.accounting.stats import StatisticsTracker
from gateway.accounting.tokens import estimate_completion_tokens
from gateway.config import ConfigError, ThinkingConfig, parse_config
from gateway.dev.sim import SimServer
from gateway.errors import UpstreamHTTPError
from gateway.upstreams import CerebrasUpstream, OpenAICompatibleUpstream, build_upstream
from integration.test_upstream_requests import (
    ANSWER,
    CEREBRAS_URL,
    ENV,
    LOCAL_URL,
    USER,
    chunk,
    sse,
)
from integration.test_upstream_requests import drain as read_all

SIMPLE_ASK = "What is 2+2?"


COMPLEX_ASK = "Please refactor the payment module and explain the trade-offs."


def upstream(
    session: aiohttp.ClientSession, name: UpstreamName, kind: str | None = None
) -> OpenAICompatibleUpstream:
    data = {"models": {name: {"kind": kind}}} if kind else None
    cfg = parse_config(data, env=ENV).models[name]
    return build_upstream(name, cfg, session, max_event_bytes=1 << 20)


def bodies(mocked: aioresponses, url: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.kwargs["data"]) for r in mocked.requests[("POST", URL(url))]]


async def drain(
    up: OpenAICompatibleUpstream, body: Mapping[str, Any], thinking: str | None = "off"
) -> UpstreamCall:
    """Read the call to its end; what it was billed."""
    calls: list[UpstreamCall] = []
    await read_all(up, body, calls, thinking=thinking)
    return calls[0]


async def test_llamacpp_off_sends_enable_thinking_false(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.post(LOCAL_URL, body=sse(*ANSWER), content_type="text/event-stream")
    call = await drain(upstream(session, "local"), {"messages": USER})
    (body,) = bodies(mocked, LOCAL_URL)
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert "reasoning_effort" not in body and "disable_reasoning" not in body
    assert call.thinking_off is True


async def test_llamacpp_keeps_the_clients_other_template_kwargs(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.post(LOCAL_URL, body=sse(*ANSWER), content_type="text/event-stream")
    client = {"messages": USER, "chat_template_kwargs": {"add_generation_prompt": True}}
    await drain(upstream(session, "local"), client)
    (body,) = bodies(mocked, LOCAL_URL)
    assert body["chat_template_kwargs"] == {"add_generation_prompt": True, "enable_thinking": False}
    assert client["chat_template_kwargs"] == {"add_generation_prompt": True}  # not mutated


async def test_cerebras_off_sends_reasoning_effort_none(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.post(CEREBRAS_URL, body=sse(*ANSWER), content_type="text/event-stream")
    call = await drain(upstream(session, "cerebras"), {"messages": USER})
    (body,) = bodies(mocked, CEREBRAS_URL)
    assert body["reasoning_effort"] == "none"
    assert "disable_reasoning" not in body and "chat_template_kwargs" not in body
    assert call.thinking_off is True


@pytest.mark.parametrize("name", ["local", "cerebras"])
@pytest.mark.parametrize("thinking", [None, "default"])
async def test_default_or_no_route_kind_sends_nothing(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    name: UpstreamName,
    thinking: str | None,
) -> None:
    url = LOCAL_URL if name == "local" else CEREBRAS_URL
    mocked.post(url, body=sse(*ANSWER), content_type="text/event-stream")
    call = await drain(upstream(session, name), {"messages": USER}, thinking)
    (body,) = bodies(mocked, url)
    assert not {"chat_template_kwargs", "reasoning_effort", "disable_reasoning"} & set(body)
    assert call.thinking_off is False


async def test_plain_openai_upstream_has_no_parameter(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.post(LOCAL_URL, body=sse(*ANSWER), content_type="text/event-stream")
    call = await drain(upstream(session, "local", kind="openai"), {"messages": USER})
    (body,) = bodies(mocked, LOCAL_URL)
    assert not {"chat_template_kwargs", "reasoning_effort"} & set(body)
    assert call.thinking_off is False


CLIENT_OWN = [
    {"reasoning_effort": "high"},
    {"reasoning_effort": "none"},
    {"disable_reasoning": False},
    {"chat_template_kwargs": {"enable_thinking": True}},
    {"thinking": {"type": "enabled"}},
    {"reasoning": {"effort": "high"}},
]


@pytest.mark.parametrize("name", ["local", "cerebras"])
@pytest.mark.parametrize("own", CLIENT_OWN, ids=lambda o: next(iter(o)))
async def test_the_clients_own_reasoning_parameter_is_never_overridden(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    name: UpstreamName,
    own: dict[str, Any],
) -> None:
    url = LOCAL_URL if name == "local" else CEREBRAS_URL
    mocked.post(url, body=sse(*ANSWER), content_type="text/event-stream")
    call = await drain(upstream(session, name), {"messages": USER, **own})
    (body,) = bodies(mocked, url)
    for key, value in own.items():
        assert body[key] == value
    added = {"chat_template_kwargs", "reasoning_effort"} - set(own)
    assert not added & set(body)
    assert call.thinking_off is False


async def test_refused_parameter_is_retried_once_without_it_and_remembered(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    refusal = {
        "message": "Unsupported value for 'reasoning_effort': 'none'",
        "type": "invalid_request_error",
        "param": "reasoning_effort",
        "code": "wrong_api_format",
    }
    mocked.post(CEREBRAS_URL, status=400, payload=refusal)
    mocked.post(CEREBRAS_URL, body=sse(*ANSWER), content_type="text/event-stream")
    mocked.post(CEREBRAS_URL, body=sse(*ANSWER), content_type="text/event-stream")
    up = upstream(session, "cerebras")
    first = await drain(up, {"messages": USER})
    assert isinstance(up, CerebrasUpstream)
    assert (first.status, first.error, first.http_status, first.thinking_off) == (
        "ok",
        None,
        200,
        False,
    )
    assert up.no_think_accepted is False
    second = await drain(up, {"messages": USER})
    assert second.thinking_off is False
    sent = bodies(mocked, CEREBRAS_URL)
    assert [b.get("reasoning_effort") for b in sent] == ["none", None, None]


async def test_an_unrelated_400_is_not_retried(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    error = {"code": 400, "message": "'messages' must be a non-empty array", "type": "x"}
    mocked.post(LOCAL_URL, status=400, payload={"error": error})
    up = upstream(session, "local")
    with pytest.raises(UpstreamHTTPError):
        await drain(up, {"messages": USER})
    assert len(bodies(mocked, LOCAL_URL)) == 1
    assert up.no_think_accepted is True


async def test_reported_reasoning_tokens_are_used(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 30,
        "total_tokens": 40,
        "completion_tokens_details": {"reasoning_tokens": 21},
    }
    events = (*ANSWER, {"id": "c1", "choices": [], "usage": usage})
    mocked.post(CEREBRAS_URL, body=sse(*events), content_type="text/event-stream")
    call = await drain(upstream(session, "cerebras"), {"messages": USER}, None)
    assert (call.completion_tokens, call.reasoning_tokens) == (30, 21)


async def test_reasoning_tokens_are_estimated_from_streamed_reasoning(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    # Cerebras' own field name; short pieces: the estimate is one token per event at least.
    thought = [chunk({"reasoning": "ab"}) for _ in range(7)]
    usage = {"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18}
    events = (ANSWER[0], *thought, *ANSWER[1:], {"id": "c1", "usage": usage})
    mocked.post(CEREBRAS_URL, body=sse(*events), content_type="text/event-stream")
    call = await drain(upstream(session, "cerebras"), {"messages": USER}, None)
    assert call.reasoning_tokens == 7


async def stats(client: aiohttp.ClientSession, root: str) -> dict[str, Any]:
    async with client.get(root + "/stats") as resp:
        data: dict[str, Any] = await resp.json()
        return data


def ask(content: str, **extra: Any) -> dict[str, Any]:
    return chat(content, stream=True, stream_options={"include_usage": True}, **extra)


async def test_simple_ask_is_told_not_to_think_and_complex_ask_thinks(
    make_gateway: Any,
    client: aiohttp.ClientSession,
    local_sim: SimServer,
    cerebras_sim: SimServer,
) -> None:
    local_sim.options.reasoning_tokens = 6
    cerebras_sim.options.reasoning_tokens = 5
    gw = await make_gateway("smart_routing")
    simple = await post_stream(client, gw.url, ask(SIMPLE_ASK))
    assert simple.status == 200 and simple.text and simple.reasoning == ""
    assert local_sim.requests[-1].body["chat_template_kwargs"] == {"enable_thinking": False}
    complex_ = await post_stream(client, gw.url, ask(COMPLEX_ASK))
    assert complex_.status == 200 and complex_.reasoning
    assert "reasoning_effort" not in cerebras_sim.requests[-1].body
    data = await stats(client, gw.root)
    assert data["thinking"] == {"told_not_to_think": 1}
    # No usage detail: estimated from the reasoning text at the characters per completion token
    # Cerebras' completed call reported, which gives the five the simulator generated.
    assert data["tokens"]["reasoning"] == {"local": 0, "cerebras": 5, "total": 5}


async def test_simple_ask_on_cerebras_is_told_not_to_think(
    make_gateway: Any, client: aiohttp.ClientSession, cerebras_sim: SimServer
) -> None:
    cerebras_sim.options.reasoning_tokens = 4
    gw = await make_gateway("smart_routing", models={"local": {"enabled": False}})
    reply = await post_stream(client, gw.url, ask(SIMPLE_ASK))
    assert reply.status == 200 and reply.reasoning == ""
    assert cerebras_sim.requests[-1].body["reasoning_effort"] == "none"


async def test_strategies_that_do_not_classify_leave_thinking_alone(
    make_gateway: Any, client: aiohttp.ClientSession, local_sim: SimServer
) -> None:
    local_sim.options.reasoning_tokens = 3
    gw = await make_gateway("always_local")
    reply = await post_stream(client, gw.url, ask(SIMPLE_ASK))
    assert reply.status == 200 and reply.reasoning
    assert "chat_template_kwargs" not in local_sim.requests[-1].body
    data = await stats(client, gw.root)
    assert data["thinking"]["told_not_to_think"] == 0
    assert data["tokens"]["reasoning"]["local"] == estimate_completion_tokens(
        len(reply.reasoning), 3
    )


async def test_clients_own_parameter_passes_through_the_gateway(
    make_gateway: Any, client: aiohttp.ClientSession, local_sim: SimServer
) -> None:
    local_sim.options.reasoning_tokens = 3
    gw = await make_gateway("smart_routing")
    own = {"enable_thinking": True}
    reply = await post_stream(client, gw.url, ask(SIMPLE_ASK, chat_template_kwargs=own))
    assert reply.status == 200 and reply.reasoning
    assert local_sim.requests[-1].body["chat_template_kwargs"] == own


async def test_sim_refusal_is_retried_once_and_remembered(
    make_gateway: Any,
    client: aiohttp.ClientSession,
    local_sim: SimServer,
    cerebras_sim: SimServer,
) -> None:
    local_sim.options.reject_thinking_param = True
    gw = await make_gateway("smart_routing")
    first = await post_stream(client, gw.url, ask(SIMPLE_ASK))
    second = await post_stream(client, gw.url, ask(SIMPLE_ASK))
    for reply in (first, second):
        assert reply.status == 200 and reply.text
        assert reply.headers["x-gateway-model-used"] == "local"
    assert [r.status for r in local_sim.requests] == [400, 200, 200]
    assert [("chat_template_kwargs" in r.body) for r in local_sim.requests] == [True, False, False]
    assert cerebras_sim.requests == []  # no fallback: the retry served it
    data = await stats(client, gw.root)
    assert data["thinking"]["told_not_to_think"] == 0
    assert data["requests"]["by_model"] == {"local": 2, "cerebras": 0}
    assert data["requests"]["fallbacks"] == 0


async def test_cerebras_sim_honours_reasoning_effort_none(cerebras_sim: SimServer) -> None:
    cerebras_sim.options.script = None
    cerebras_sim.options.reasoning_tokens = 4
    headers = {"Authorization": f"Bearer {cerebras_sim.options.api_key}"}
    async with aiohttp.ClientSession() as s:
        for extra, expect_reasoning in (
            ({}, True),
            ({"reasoning_effort": "none"}, False),
            ({"disable_reasoning": True}, False),
        ):
            body = {"model": "zai-glm-4.7", "messages": USER, **extra}
            async with s.post(
                cerebras_sim.url + "/chat/completions", json=body, headers=headers
            ) as r:
                message = (await r.json())["choices"][0]["message"]
            assert bool(message.get("reasoning")) is expect_reasoning


def _record(rid: str, *calls: UpstreamCall) -> RequestRecord:
    return RequestRecord(
        request_id=rid,
        started_at=time.time(),
        strategy="smart_routing",
        stream=True,
        model_used="local",
        calls=list(calls),
    )


NEW_COLUMNS = ("local_reasoning_tokens", "cerebras_reasoning_tokens", "told_not_to_think")


V1_SCHEMA = SCHEMA.replace(
    "".join(f",\n    {c} INTEGER NOT NULL DEFAULT 0" for c in NEW_COLUMNS), ""
)


async def test_ledger_keeps_reasoning_tokens_per_call_and_old_ledgers_open(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = Ledger(path)
    await ledger.start()
    tracker = StatisticsTracker({}, ledger)
    await tracker.record(
        _record(
            "r1",
            UpstreamCall("local", prompt_tokens=5, completion_tokens=9, reasoning_tokens=4),
            UpstreamCall("cerebras", completion_tokens=7, reasoning_tokens=2, thinking_off=True),
        )
    )
    await ledger.close()
    assert "told_not_to_think" not in V1_SCHEMA
    # Rebuild the table as schema version 1 had it (without the new columns).
    old = [c for c in COLUMNS if c not in NEW_COLUMNS]
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE requests RENAME TO current")
        conn.executescript(V1_SCHEMA)
        names = ", ".join(old)
        conn.execute(f"INSERT INTO requests ({names}) SELECT {names} FROM current")
        conn.execute("DROP TABLE current")
    reopened = Ledger(path)
    await reopened.start()
    (row,) = reopened.rows()
    assert (row.local_reasoning_tokens, row.cerebras_reasoning_tokens) == (0, 0)
    assert row.told_not_to_think is False
    assert [c.reasoning_tokens for c in row.upstream_calls()] == [4, 2]  # kept per call
    await StatisticsTracker({}, reopened).record(
        _record(
            "r2", UpstreamCall("local", completion_tokens=3, reasoning_tokens=3, thinking_off=True)
        )
    )
    tracker2 = StatisticsTracker({}, reopened)
    await tracker2.load_from_ledger()
    data = tracker2.get_statistics()
    assert data["tokens"]["reasoning"] == {"local": 3, "cerebras": 0, "total": 3}
    assert data["thinking"] == {"told_not_to_think": 1}
    await reopened.close()


async def test_statistics_count_reasoning_apart_and_survive_restart(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    await ledger.start()
    tracker = StatisticsTracker({}, ledger)
    await tracker.record(
        _record("a", UpstreamCall("local", completion_tokens=10, reasoning_tokens=6))
    )
    await tracker.record(
        _record("b", UpstreamCall("cerebras", completion_tokens=4, thinking_off=True))
    )
    before = tracker.get_statistics()
    assert before["tokens"]["reasoning"] == {"local": 6, "cerebras": 0, "total": 6}
    assert before["tokens"]["completion"] == 14  # reasoning stays part of the completion
    assert before["thinking"] == {"told_not_to_think": 1}
    restarted = StatisticsTracker({}, ledger)
    await restarted.load_from_ledger()
    after = restarted.get_statistics()
    assert (after["tokens"], after["thinking"]) == (before["tokens"], before["thinking"])
    await ledger.close()


def test_totals_without_the_new_fields_still_count() -> None:
    """An older replica's published totals lack the thinking totals: they count as zero."""
    tracker = StatisticsTracker({})
    older = {**tracker.shareable_totals(), "requests": 3}
    del older["told_not_to_think"], older["reasoning_tokens"]
    fleet = tracker.fleet_statistics([older])
    assert fleet["fleet"]["replicas_reported"] == 1 and fleet["requests"]["total"] == 3
    assert fleet["thinking"] == {"told_not_to_think": 0}


def test_config_defaults_and_yaml_off() -> None:
    assert parse_config(None).routing.thinking == ThinkingConfig("off", "default")
    data = yaml.safe_load("routing:\n  thinking: {simple: off, complex: default}\n")
    assert data["routing"]["thinking"]["simple"] is False  # YAML 1.1 reads `off` as false
    assert parse_config(data).routing.thinking == ThinkingConfig("off", "default")
    swapped = {"routing": {"thinking": {"simple": "default", "complex": "off"}}}
    assert parse_config(swapped).routing.thinking == ThinkingConfig("default", "off")


@pytest.mark.parametrize(
    ("thinking", "key"),
    [
        ({"simple": "low"}, "routing.thinking.simple"),
        ({"complex": True}, "routing.thinking.complex"),
        ({"complex": 1}, "routing.thinking.complex"),
        ({"medium": "off"}, "routing.thinking.medium"),
        ("off", "routing.thinking"),
    ],
)
def test_bad_thinking_config_names_the_key(thinking: Any, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_config({"routing": {"thinking": thinking}}, source="conf/gateway.yaml")
