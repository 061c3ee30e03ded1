"""parallel_speculative: several drafts, the consensus pick, the losers cancelled.

The simulator scripts answers by prompt only, so a small proxy in front of the llama.cpp simulator
appends the request's `seed` to the last user message: each draft (seed, seed+1, ...) then gets
its own scripted answer. A closed connection to the proxy closes its call to the simulator, so
cancellations are still observed on the simulator.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web
from support import chat, eventually, gateway_config, post_stream, script

from gateway.dev.sim import SimServer
from gateway.http.app import create_app
from integration.test_speculative import LOCAL, OTHER, SIMILAR, pace, verdict_of

SEED = 100


NEAR = "the cat sat on the mat and ate a fig but not the big red one so she ran to the bay"


FAR = "why not try one or two big red hot tea cup now and see how it all end in a day"


async def seed_proxy(aiohttp_server: Any, sim: SimServer) -> str:
    """A llama.cpp endpoint answering each seed with the sim's script for "<prompt> #<seed>"."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        body["messages"][-1]["content"] += f" #{body.get('seed')}"
        async with aiohttp.ClientSession() as session:
            async with session.post(sim.url + "/chat/completions", json=body) as upstream:
                response = web.StreamResponse(
                    status=upstream.status,
                    headers={"Content-Type": upstream.headers["Content-Type"]},
                )
                await response.prepare(request)
                async for data in upstream.content.iter_any():
                    await response.write(data)
                await response.write_eof()
                return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    server = await aiohttp_server(app)
    return str(server.make_url("/v1"))


def drafts(sim: SimServer, prompt: str, *answers: str) -> None:
    for offset, answer in enumerate(answers):
        script(sim, f"{prompt} #{SEED + offset}", answer)


@pytest.fixture
async def parallel(aiohttp_server, tmp_path, local_sim, cerebras_sim):
    url = await seed_proxy(aiohttp_server, local_sim)

    async def start(**keys: Any) -> Any:
        config = gateway_config(
            tmp_path,
            url,
            cerebras_sim.url,
            strategy="parallel_speculative",
            speculative_decoding={"max_draft_tokens": 5, **keys},
        )
        server = await aiohttp_server(create_app(config))
        return str(server.make_url("/v1"))

    return start


async def test_consensus_accepts_without_cerebras_and_cancels_the_other_drafts(
    parallel, client, local_sim, cerebras_sim
) -> None:
    drafts(local_sim, "p", FAR, LOCAL, NEAR)
    pace(local_sim, tps=20)
    url = await parallel(verify_start="after_draft", min_confidence=0.6)
    reply = await post_stream(client, url, chat("p", stream=True, seed=SEED))
    assert reply.text == LOCAL  # agrees most with the others (NEAR agrees with it, FAR with none)
    final = reply.chunks[-1]
    meta = verdict_of(final)
    assert (meta["accepted"], meta["decided_by"]) == (True, "consensus")
    assert meta["similarity"] == 0.75  # (LOCAL~NEAR 1.0 + LOCAL~FAR 0.5) / 2 on 5-token windows
    assert final["routing_reason"].startswith("parallel_speculative: draft accepted (consensus")
    assert cerebras_sim.requests == []
    by_seed = {r.body["seed"]: r for r in local_sim.requests}
    assert sorted(by_seed) == [SEED, SEED + 1, SEED + 2]
    assert by_seed[SEED + 1].finished
    for loser in (by_seed[SEED], by_seed[SEED + 2]):
        await eventually(lambda loser=loser: loser.disconnected_at is not None, "the loser closed")
        assert not loser.finished
    assert meta["draft_tokens"] == sum(r.completion_tokens_sent for r in local_sim.requests)


@pytest.mark.parametrize("stream", [True, False])
async def test_disagreeing_drafts_are_verified(
    parallel, client, local_sim, cerebras_sim, stream: bool
) -> None:
    drafts(local_sim, "p", LOCAL, FAR, OTHER)
    script(cerebras_sim, "p", OTHER)
    pace(local_sim, tps=20)
    pace(cerebras_sim, tps=20)
    url = await parallel(min_confidence=0.7)
    async with client.post(
        url + "/chat/completions", json=chat("p", stream=stream, seed=SEED)
    ) as r:
        raw = await r.read()
    assert b'"decided_by":"levenshtein"' in raw
    assert b'"model_used":"cerebras"' in raw
    assert len(cerebras_sim.requests) == 1
    for request in local_sim.requests:
        await eventually(
            lambda request=request: request.disconnected_at is not None, "the call closed"
        )


async def test_chosen_draft_agreeing_with_cerebras_is_committed(
    parallel, client, local_sim, cerebras_sim
) -> None:
    drafts(local_sim, "p", FAR, LOCAL, NEAR)  # LOCAL and NEAR tie; the first one is chosen
    script(cerebras_sim, "p", SIMILAR)
    pace(local_sim, tps=20)
    pace(cerebras_sim, tps=20)
    url = await parallel(min_confidence=0.8)  # consensus (1.0 + 0.5) / 2 falls short
    reply = await post_stream(client, url, chat("p", stream=True, seed=SEED))
    meta = verdict_of(reply.chunks[-1])
    assert (meta["accepted"], meta["decided_by"], meta["similarity"]) == (True, "levenshtein", 1.0)
    assert reply.text == LOCAL
    await eventually(
        lambda: cerebras_sim.requests[0].disconnected_at is not None, "the Cerebras call closed"
    )


async def test_all_parallel_drafts_failing_falls_back_to_one_sequential_draft(
    parallel, client, local_sim, cerebras_sim
) -> None:
    drafts(local_sim, "p", "", "", "", "it is 4")  # the 4th seed is the sequential draft
    local_sim.inject("http_500", count=3)
    pace(cerebras_sim, ttft=2.0)
    url = await parallel(verify_start="concurrent")
    reply = await post_stream(client, url, chat("p", stream=True, seed=SEED))
    assert reply.text == "it is 4"
    assert verdict_of(reply.chunks[-1])["decided_by"] == "short_draft"
    assert len(local_sim.requests) == 4
    assert local_sim.requests[-1].body["seed"] == SEED + 3
    await eventually(
        lambda: cerebras_sim.requests[0].disconnected_at is not None, "the Cerebras call closed"
    )


async def test_temperature_zero_uses_one_draft(parallel, client, local_sim, cerebras_sim) -> None:
    script(local_sim, "p #None", "it is 4")
    pace(cerebras_sim, ttft=2.0)
    url = await parallel()
    reply = await post_stream(client, url, chat("p", stream=True, temperature=0))
    assert reply.text == "it is 4"
    assert len(local_sim.requests) == 1 and "seed" not in local_sim.requests[0].body
    assert reply.chunks[-1]["routing_reason"].startswith(
        "parallel_speculative (temperature 0: one draft)"
    )
