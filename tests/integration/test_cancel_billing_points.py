"""A cancelled call is billed what the upstream billed, at every point of its life.

The simulated Cerebras counts one token per word; the answers here use long words (11
characters with the space), so the rule of thumb of four characters a token would count almost
three times too many for an answer cut short. The upstream's own characters per completion
token, learned from its completed calls, must bring the estimate within 2 % of what the
simulator sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support import CEREBRAS_KEY, chat, gateway_config, post_stream

from gateway.accounting.records import UpstreamCall
from gateway.dev.sim import ScriptedAnswer, SimOptions, SimServer, running_sim
from gateway.upstreams import Upstream, build_upstream

WORD = "wonderful"


DRAFT_WORD = "marvelous"


ANSWER = " ".join(f"{WORD}{i % 10}" for i in range(300))


PROMPT = "please count these words for me " * 4  # 32 tokens: long enough to teach the ratio


TOLERANCE = 0.02


@asynccontextmanager
async def cerebras(tmp_path: Path, **options: Any) -> AsyncIterator[tuple[SimServer, Upstream]]:
    sim_options = SimOptions(profile="cerebras", api_key=CEREBRAS_KEY, **options)
    sim_options.script = {PROMPT.strip(): ScriptedAnswer(ANSWER), "*": ScriptedAnswer(ANSWER)}
    async with running_sim(sim_options) as sim, aiohttp.ClientSession() as session:
        cfg = gateway_config(tmp_path, "http://127.0.0.1:9/v1", sim.url)
        yield sim, build_upstream("cerebras", cfg.cerebras, session, max_event_bytes=1 << 20)


async def learn(sim: SimServer, upstream: Upstream, calls: int = 2) -> None:
    """Completed calls: the upstream learns its characters per prompt and completion token."""
    fast, sim.options.tps = sim.options.tps, 0.0
    for _ in range(calls):
        await read_until(upstream, lambda _stream: False)
    sim.options.tps = fast


async def sent(sim: SimServer) -> tuple[int, int]:
    """(prompt tokens, completion tokens) the simulator counted for its last request, once it
    noticed the disconnect."""
    await asyncio.sleep(0.2)
    log = sim.requests[-1]
    return log.prompt_tokens, log.completion_tokens_sent


async def read_until(
    upstream: Upstream, stop: Callable[[Any], bool], *, linger: float = 0.0
) -> tuple[UpstreamCall, Any]:
    """Open a call, read its batches until `stop(stream)` says so (or the end), leave it
    unread for `linger` seconds, then leave: the call as billed, and the stream."""
    opening = upstream.open_stream(chat(PROMPT))
    async with opening as stream:
        async for _batch in stream.batches():
            if stop(stream):
                break
        if linger:
            await asyncio.sleep(linger)
    return opening.call, stream


def near(billed: int, counted: int, *, in_flight: int = 0) -> bool:
    """Within 2 %, give or take `in_flight` tokens the simulator may still write between the
    gateway's last read and the close (they never reach the gateway)."""
    return abs(billed - counted) <= TOLERANCE * max(counted, 1) + in_flight


async def test_left_before_the_response_headers(tmp_path: Path) -> None:
    """The prompt reached Cerebras and may be processed: it is billed, nothing else."""
    async with cerebras(tmp_path, ttft=0.0, tps=0.0) as (sim, upstream):
        await learn(sim, upstream)
        sim.options.ttft = 5.0
        calls: list[UpstreamCall] = []

        async def call() -> None:
            opening = upstream.open_stream(chat(PROMPT))
            calls.append(opening.call)
            async with opening:
                pass

        task = asyncio.create_task(call())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        prompt, completion = await sent(sim)
        (billed,) = calls
        assert billed.status == "cancelled" and billed.estimated
        assert completion == 0 and billed.completion_tokens == 0
        assert near(billed.prompt_tokens, prompt)


async def test_left_at_the_first_event(tmp_path: Path) -> None:
    """The role chunk and the first word arrive together; the next word two seconds later."""
    async with cerebras(tmp_path, tps=0.0) as (sim, upstream):
        await learn(sim, upstream)
        sim.options.tps = 0.5
        billed, _ = await read_until(upstream, lambda _stream: True)
        prompt, completion = await sent(sim)
        assert billed.status == "cancelled"
        assert completion <= 1 and billed.completion_tokens == completion
        assert near(billed.prompt_tokens, prompt)


@pytest.mark.parametrize("words", [20, 100, 200])
async def test_left_mid_answer(tmp_path: Path, words: int) -> None:
    """Cut short after `words` words: billed at the learned ratio, not four characters a
    token (which would bill about 2.75 tokens a word here)."""
    async with cerebras(tmp_path, tps=0.0) as (sim, upstream):
        await learn(sim, upstream)
        sim.options.tps = 400.0
        billed, _ = await read_until(upstream, lambda stream: stream.tally.content_events >= words)
        prompt, completion = await sent(sim)
        assert billed.status == "cancelled" and billed.estimated
        assert 0 < completion < 300
        assert near(billed.completion_tokens, completion, in_flight=2), (
            billed.completion_tokens,
            completion,
        )
        assert near(billed.prompt_tokens, prompt)


async def test_left_mid_answer_before_any_completed_call(tmp_path: Path) -> None:
    """Nothing learned yet: the rule of thumb, at least one token per streamed event."""
    async with cerebras(tmp_path, tps=400.0) as (sim, upstream):
        billed, stream = await read_until(
            upstream, lambda stream: stream.tally.content_events >= 50
        )
        tally = stream.tally
        assert billed.completion_tokens == max(tally.content_events, -(-tally.content_chars // 4))


async def test_left_after_the_whole_answer_arrived(tmp_path: Path) -> None:
    """Everything, usage included, had arrived unread: the upstream's own count."""
    async with cerebras(tmp_path, tps=0.0) as (sim, upstream):
        billed, _ = await read_until(upstream, lambda _stream: True, linger=0.5)
        prompt, completion = await sent(sim)
        assert billed.status == "cancelled" and not billed.estimated
        assert (billed.prompt_tokens, billed.completion_tokens) == (prompt, completion)


async def test_finished_call_is_billed_as_reported(tmp_path: Path) -> None:
    async with cerebras(tmp_path, tps=0.0) as (sim, upstream):
        billed, _ = await read_until(upstream, lambda _stream: False)
        prompt, completion = await sent(sim)
        assert billed.status == "ok" and not billed.estimated
        assert (billed.prompt_tokens, billed.completion_tokens) == (prompt, completion)
        assert upstream.chars_per_token.completion_ratio == pytest.approx(len(ANSWER) / 300)


async def test_after_draft_stats_match_what_cerebras_sent(
    make_gateway: Any, client: aiohttp.ClientSession, local_sim: SimServer, cerebras_sim: SimServer
) -> None:
    """Accepted drafts cancel Cerebras mid-answer, rejected ones let it finish: /stats counts
    within 2 % of what the simulated Cerebras received and sent."""
    local, other = {}, {}
    for i in range(24):
        prompt = f"question {i}: {PROMPT}"
        draft = " ".join(f"{DRAFT_WORD}{(i + k) % 7}" for k in range(60))
        local[prompt] = ScriptedAnswer(draft)
        # Even questions: Cerebras agrees with the draft (accepted, its call cancelled).
        other[prompt] = ScriptedAnswer(draft + " " + ANSWER if i % 2 == 0 else ANSWER)
    local_sim.options.script, cerebras_sim.options.script = local, other
    local_sim.options.tps, cerebras_sim.options.tps = 2000.0, 400.0
    gw = await make_gateway(
        "speculative_decoding",
        speculative_decoding={
            "max_draft_tokens": 20,
            "verify_start": "after_draft",
            "accept_short_drafts": False,
        },
    )
    verdicts = []
    for prompt in local:
        reply = await post_stream(client, gw.url, chat(prompt, stream=True))
        verdicts.append(reply.chunks[-1]["speculative_decoding"]["accepted"])
    assert 0 < sum(verdicts) < len(verdicts)
    await asyncio.sleep(0.3)
    async with client.get(gw.root + "/stats") as resp:
        counted = (await resp.json())["tokens"]["by_model"]["cerebras"]
    received = [r for r in cerebras_sim.requests if r.status == 200]
    prompt_sent = sum(r.prompt_tokens for r in received)
    completion_sent = sum(r.completion_tokens_sent for r in received)
    assert near(counted["prompt"], prompt_sent), (counted, prompt_sent)
    assert near(counted["completion"], completion_sent), (counted, completion_sent)
