"""Verification samples (`routing.learn.verify_sample`): a share of local answers is asked of
Cerebras after the client's response ended; the comparison labels the router (source
`verify_sample`). Against the real simulators on 127.0.0.1."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support import chat, post_stream

from gateway.dev.sim import ScriptedAnswer, ToolCallSpec
from gateway.speculation.verify_sample import MIN_CAP
from gateway.upstreams import Opening

HELLO = "Hello! How can I help you with your project today?"


OTHER = "The capital of France is Paris, which lies on the Seine in the north of the country."


SAMPLED = {"learn": {"verify_sample": 1.0}}


def script(local_sim: Any, cerebras_sim: Any, local: ScriptedAnswer, cloud: ScriptedAnswer) -> None:
    local_sim.options.script = {"*": local}
    cerebras_sim.options.script = {"*": cloud}


def spy_learner(gw: Any) -> list[tuple[str, bool, str, float]]:
    """Record every call LabelBook makes to Router.learn (and still make it)."""
    labels = gw.services.learning.labels
    real = labels.learner
    seen: list[tuple[str, bool, str, float]] = []

    def learner(request_id: str, bad: bool, source: str, weight: float) -> bool:
        seen.append((request_id, bad, source, weight))
        return bool(real(request_id, bad, source, weight))

    labels.learner = learner
    return seen


async def stats(client: aiohttp.ClientSession, gw: Any) -> dict[str, Any]:
    async with client.get(gw.root + "/stats") as resp:
        return dict(await resp.json())


def stored_labels(tmp_path: Path, gw: Any) -> list[tuple[Any, ...]]:
    gw.services.learning.flush()
    with sqlite3.connect(tmp_path / "learning.db") as db:
        return db.execute("SELECT request_id, source, bad, applied FROM labels").fetchall()


async def test_agreeing_answers_give_a_good_label(
    make_gateway, client, local_sim, cerebras_sim, tmp_path: Path
) -> None:
    script(local_sim, cerebras_sim, ScriptedAnswer(content=HELLO), ScriptedAnswer(content=HELLO))
    gw = await make_gateway("smart_routing", routing=SAMPLED)
    learned = spy_learner(gw)
    reply = await post_stream(client, gw.url, chat("say hello", stream=True))
    assert reply.chunks[-1]["model_used"] == "local" and reply.text == HELLO
    request_id = reply.headers["x-request-id"]
    await gw.services.verifier.drain()

    assert len(cerebras_sim.requests) == 1
    sent = cerebras_sim.requests[0].body
    assert sent["messages"] == chat("say hello")["messages"]
    assert sent["max_completion_tokens"] >= MIN_CAP, "a small cap, enough to compare"
    assert sent["reasoning_effort"] == "none", "reasoning is not compared: not paid for"
    assert learned == [(request_id, False, "verify_sample", 1.0)]
    assert (request_id, "verify_sample", 0, 1) in stored_labels(tmp_path, gw)

    body = await stats(client, gw)
    samples = body["learning"]["verify_samples"]
    assert samples["samples"] == 1 and samples["good"] == 1 and samples["bad"] == 0
    assert samples["cost_usd"] > 0
    assert body["learning"]["labels_applied"].get("verify_sample") == 1
    assert body["router"]["labels"].get("verify_sample") == 1
    # Its own ledger row and call role, so the budget and /stats count what it cost.
    assert body["requests"]["by_strategy"].get("verify_sample") == 1
    assert body["costs"]["cerebras_cost_usd"] == pytest.approx(samples["cost_usd"], abs=1e-6)
    rows = gw.services.ledger.select_rows("strategy = ?", ("verify_sample",))
    assert [c.role for c in rows[0].upstream_calls()] == ["verify_sample"]
    assert rows[0].request_id == f"{request_id}:verify_sample"


async def test_disagreeing_answers_give_a_bad_label(
    make_gateway, client, local_sim, cerebras_sim, tmp_path: Path
) -> None:
    script(local_sim, cerebras_sim, ScriptedAnswer(content=HELLO), ScriptedAnswer(content=OTHER))
    gw = await make_gateway("smart_routing", routing=SAMPLED)
    learned = spy_learner(gw)
    reply = await post_stream(client, gw.url, chat("say hello", stream=True))
    request_id = reply.headers["x-request-id"]
    await gw.services.verifier.drain()

    assert learned == [(request_id, True, "verify_sample", 1.0)]
    assert gw.services.router.labels.get("verify_sample") == 1, "Router.learn applied it"
    assert (request_id, "verify_sample", 1, 1) in stored_labels(tmp_path, gw)
    samples = (await stats(client, gw))["learning"]["verify_samples"]
    assert samples["bad"] == 1 and samples["good"] == 0


async def test_a_different_tool_call_is_a_bad_label(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    local = ScriptedAnswer(tool_calls=[ToolCallSpec("read_file", '{"path": "a.py"}')])
    cloud = ScriptedAnswer(tool_calls=[ToolCallSpec("read_file", '{"path": "src/b.py"}')])
    script(local_sim, cerebras_sim, local, cloud)
    gw = await make_gateway("smart_routing", routing=SAMPLED)
    learned = spy_learner(gw)
    await post_stream(client, gw.url, chat("say hello", stream=True))
    await gw.services.verifier.drain()
    assert [bad for _, bad, source, _ in learned if source == "verify_sample"] == [True]


async def test_a_non_stream_answer_is_sampled_too(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    script(local_sim, cerebras_sim, ScriptedAnswer(content=HELLO), ScriptedAnswer(content=HELLO))
    gw = await make_gateway("smart_routing", routing=SAMPLED)
    learned = spy_learner(gw)
    async with client.post(gw.url + "/chat/completions", json=chat("say hello")) as resp:
        body = await resp.json()
    assert body["choices"][0]["message"]["content"] == HELLO and body["model_used"] == "local"
    await gw.services.verifier.drain()
    assert learned == [(resp.headers["x-request-id"], False, "verify_sample", 1.0)]


async def test_off_by_default_never_calls_cerebras(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    gw = await make_gateway("smart_routing")
    assert gw.services.verifier is None
    for _ in range(5):
        reply = await post_stream(client, gw.url, chat("say hello", stream=True))
        assert reply.chunks[-1]["model_used"] == "local"
    async with client.post(gw.url + "/chat/completions", json=chat("say hello")) as resp:
        assert resp.status == 200
    assert cerebras_sim.requests == []
    assert (await stats(client, gw))["learning"]["verify_samples"]["samples"] == 0


async def test_cerebras_answers_are_not_sampled(make_gateway, client, cerebras_sim) -> None:
    gw = await make_gateway("always_cerebras", routing=SAMPLED)
    await post_stream(client, gw.url, chat("say hello", stream=True))
    await gw.services.verifier.drain()
    assert len(cerebras_sim.requests) == 1, "only the answer itself"


@pytest.mark.parametrize("refusal", ["budget", "cool_down"])
async def test_a_refused_admission_skips_the_sample(
    make_gateway, client, local_sim, cerebras_sim, refusal: str
) -> None:
    sections: dict[str, Any] = {"routing": SAMPLED}
    if refusal == "budget":
        sections["budget"] = {"daily_usd": 0.00001}
    gw = await make_gateway("smart_routing", **sections)
    services = gw.services
    if refusal == "budget":
        services.budget.periods[0].spent_usd = 1.0  # spent
    else:
        services.gate.cooling_until["cerebras"] = services.gate.clock() + 3600
    learned = spy_learner(gw)
    reply = await post_stream(client, gw.url, chat("say hello", stream=True))
    assert reply.status == 200 and reply.chunks[-1]["model_used"] == "local"
    await services.verifier.drain()
    assert cerebras_sim.requests == []
    assert learned == []
    body = await stats(client, gw)
    samples = body["learning"]["verify_samples"]
    assert samples["refused"] == 1 and samples["samples"] == 0 and samples["failed"] == 0
    assert body["errors"]["total"] == 0
    assert "verify_sample" not in body["requests"]["by_strategy"]


def hold_cerebras(gw: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Hold the verification call at its start until `release` is set; note the gateway's
    state at that moment."""
    upstream = gw.services.upstreams["cerebras"]
    real = upstream.open_stream
    state: dict[str, Any] = {"started": asyncio.Event(), "release": asyncio.Event()}

    def held(*args: Any, **kwargs: Any) -> Opening[Any]:
        opening = real(*args, **kwargs)

        @asynccontextmanager
        async def hold() -> AsyncIterator[Any]:
            state["handlers_in_flight"] = gw.services.guard.in_flight
            state["requests_recorded"] = gw.services.stats.get_statistics()["requests"]["total"]
            state["started"].set()
            await state["release"].wait()
            async with opening as stream:
                yield stream

        return Opening(opening.call, hold())

    monkeypatch.setattr(upstream, "open_stream", held)
    return state


@pytest.mark.parametrize("stream", [True, False])
async def test_the_client_is_answered_before_the_verification_starts(
    make_gateway, client, local_sim, cerebras_sim, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    script(local_sim, cerebras_sim, ScriptedAnswer(content=HELLO), ScriptedAnswer(content=HELLO))
    gw = await make_gateway("smart_routing", routing=SAMPLED)
    held = hold_cerebras(gw, monkeypatch)
    # The client's whole answer arrives while the verification call is held: it never waits.
    if stream:
        reply = await post_stream(client, gw.url, chat("say hello", stream=True))
        assert reply.events[-1] == b"data: [DONE]" and reply.text == HELLO
    else:
        async with client.post(gw.url + "/chat/completions", json=chat("say hello")) as resp:
            assert (await resp.json())["choices"][0]["message"]["content"] == HELLO
    await asyncio.wait_for(held["started"].wait(), 30)  # a safety net, not a timed assertion
    assert held["handlers_in_flight"] == 0, "the client's handler had ended"
    assert held["requests_recorded"] == 1, "the client's request was recorded first"
    assert cerebras_sim.requests == []
    held["release"].set()
    await gw.services.verifier.drain()
    assert len(cerebras_sim.requests) == 1
    assert gw.services.verifier.counts["good"] == 1


async def test_shutdown_cancels_samples_in_flight(
    make_gateway, client, local_sim, cerebras_sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = await make_gateway("smart_routing", routing=SAMPLED)
    held = hold_cerebras(gw, monkeypatch)
    await post_stream(client, gw.url, chat("say hello", stream=True))
    await asyncio.wait_for(held["started"].wait(), 30)
    verifier = gw.services.verifier
    assert verifier.in_flight == 1
    await verifier.close(grace=0)
    assert verifier.in_flight == 0
    assert not verifier.draw(), "a closed sampler starts nothing"
    assert cerebras_sim.requests == []
