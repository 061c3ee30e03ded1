"""Characters per token, learned from each upstream's reported usage, persisted, and used for
the prompt estimates of calls that report none."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support import CEREBRAS_KEY, Gateway, chat, eventually, gateway_config, post_stream

from gateway.accounting.ratio import (
    CEILING,
    FLOOR,
    MIN_TOKENS,
    SAMPLE_EVERY,
    SAVE_EVERY_S,
    WARMUP,
    CharsPerToken,
    RatioStore,
    store_path_for,
)
from gateway.accounting.records import UpstreamCall
from gateway.accounting.tokens import PromptMemo, PromptSize, estimate_prompt_tokens
from gateway.dev.sim import SimOptions, running_sim
from gateway.http.app import create_app
from gateway.upstreams import build_upstream


def memo_of(chars: int, *, measured: bool = False) -> PromptMemo:
    memo = PromptMemo({"messages": [{"role": "user", "content": "x" * chars}]})
    if measured:
        memo.size()
    return memo


def test_the_rule_of_thumb_until_usage_then_the_learned_ratio() -> None:
    learner = CharsPerToken()
    size = PromptSize(chars=3000, messages=10)
    assert learner.ratio is None
    assert learner.prompt_tokens(size) == 750 + 40  # chars / 4 + 4 per message
    learner.learn(memo_of(3000), 1000)  # 3 characters per token
    assert learner.ratio == pytest.approx(3.0)
    assert learner.prompt_tokens(size) == 1000


def test_recent_calls_weigh_most_within_floor_and_ceiling() -> None:
    learner = CharsPerToken()
    learner.learn(memo_of(4000), 1000)
    for _ in range(200):
        learner.learn(memo_of(2000, measured=True), 1000)
    assert learner.ratio == pytest.approx(2.0, abs=0.01)
    dense = CharsPerToken()
    dense.learn(memo_of(100), 1000)
    assert dense.ratio == FLOOR
    sparse = CharsPerToken()
    sparse.learn(memo_of(100_000), 100)
    assert sparse.ratio == CEILING


def test_short_prompts_teach_nothing() -> None:
    learner = CharsPerToken()
    learner.learn(memo_of(40), MIN_TOKENS - 1)
    assert learner.ratio is None and learner.observations == 0


def test_unmeasured_prompts_are_sampled_after_the_warmup() -> None:
    learner = CharsPerToken()
    for _ in range(WARMUP):
        learner.learn(memo_of(400), 100)
    assert learner.observations == WARMUP
    memos = [memo_of(400) for _ in range(SAMPLE_EVERY * 3)]
    for memo in memos:
        learner.learn(memo, 100)
    assert learner.observations == WARMUP + 3
    assert sum(memo.measured for memo in memos) == 3
    learner.learn(memo_of(400, measured=True), 100)  # measured anyway: always learned from
    assert learner.observations == WARMUP + 4


def test_the_store_saves_atomically_when_due_and_resumes(tmp_path: Path) -> None:
    now = [0.0]
    path = tmp_path / "token_ratios.json"
    learner = CharsPerToken()
    store = RatioStore(path, {"cerebras": learner}, clock=lambda: now[0])
    learner.learn(memo_of(3000), 1000)
    store.save_if_due()
    assert not path.exists(), "not written on every request"
    now[0] = SAVE_EVERY_S
    store.save_if_due()
    assert json.loads(path.read_text())["upstreams"]["cerebras"]["observations"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [path.name]

    resumed = CharsPerToken()
    RatioStore(path, {"cerebras": resumed, "local": CharsPerToken()}).load()
    assert resumed.ratio == pytest.approx(3.0) and resumed.observations == 1


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"format": "something else"}',
        '{"format": "glm-token-saver-token-ratios", "version": 1, "upstreams": '
        '{"cerebras": {"chars": -1, "tokens": 5, "observations": 1}}}',
        '{"format": "glm-token-saver-token-ratios", "version": 1, "upstreams": '
        '{"cerebras": {"chars": 10, "tokens": "x", "observations": 1}}}',
    ],
)
def test_a_bad_file_is_logged_and_learning_starts_anew(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "token_ratios.json"
    path.write_text(content)
    learner = CharsPerToken()
    with caplog.at_level(logging.WARNING, logger="gateway.accounting.ratio"):
        RatioStore(path, {"cerebras": learner}).load()
    assert learner.ratio is None
    assert "learning anew" in caplog.text


def test_kept_beside_the_ledger_unless_in_memory(tmp_path: Path) -> None:
    assert store_path_for(str(tmp_path / "data" / "ledger.db")) == tmp_path / "data" / (
        "token_ratios.json"
    )
    assert store_path_for(":memory:") is None


def conversation(turn: int) -> dict[str, Any]:
    """Eight messages of text (the simulator bills ceil(chars / 4), with no per-message
    overhead; the rule of thumb adds four tokens per message)."""
    messages = []
    for i in range(4):
        messages.append({"role": "user", "content": f"question {turn}.{i} " + "word " * 30})
        messages.append({"role": "assistant", "content": "answer " * 20})
    messages.append({"role": "user", "content": f"and finally {turn}?"})
    return chat(messages=messages, stream=True)


async def cut_call_estimate(
    gw: Gateway, client: Any, cerebras_sim: Any, turn: int
) -> tuple[int, int]:
    """(the gateway's estimate, what the simulator billed) for a call cut before its usage."""
    cerebras_sim.inject("cut", after_chunks=4)
    body = conversation(turn)
    await post_stream(client, gw.url, body)
    await gw.services.ledger.flush()
    calls = gw.services.ledger.rows()[-1].upstream_calls()
    assert [c.estimated for c in calls] == [True]
    billed = cerebras_sim.requests[-1].prompt_tokens
    return calls[0].prompt_tokens, billed


async def test_learned_ratio_estimates_cut_calls_and_survives_a_restart(
    aiohttp_server, client, tmp_path, local_sim, cerebras_sim
) -> None:
    config = gateway_config(
        tmp_path,
        local_sim.url,
        cerebras_sim.url,
        strategy="always_cerebras",
        routing={"fallback": {"to_local": False}},
    )
    server = await aiohttp_server(create_app(config))
    gw = Gateway(server, server.app, config)

    estimate, billed = await cut_call_estimate(gw, client, cerebras_sim, 0)
    assert estimate == estimate_prompt_tokens(conversation(0))
    assert estimate - billed == 4 * 9, "rule of thumb: four tokens per message too many"

    for turn in range(1, 4):
        assert (await post_stream(client, gw.url, conversation(turn))).status == 200
    estimate, billed = await cut_call_estimate(gw, client, cerebras_sim, 4)
    assert abs(estimate - billed) <= 1
    async with client.get(server.make_url("/stats")) as resp:
        learned = (await resp.json())["token_ratios"]["cerebras"]
    assert learned["observations"] == 3
    assert learned["chars_per_token"] == pytest.approx(4.0, abs=0.02)
    await server.close()

    assert (tmp_path / "token_ratios.json").exists()
    server = await aiohttp_server(create_app(config))
    gw = Gateway(server, server.app, config)
    async with client.get(server.make_url("/stats")) as resp:
        assert (await resp.json())["token_ratios"]["cerebras"] == learned
    estimate, billed = await cut_call_estimate(gw, client, cerebras_sim, 5)
    assert abs(estimate - billed) <= 1, "the learned ratio is used at once after a restart"
    await server.close()


async def test_a_call_cancelled_before_its_headers_uses_the_learned_ratio(tmp_path: Path) -> None:
    options = SimOptions(profile="cerebras", ttft=5.0, api_key=CEREBRAS_KEY)
    async with running_sim(options) as sim, aiohttp.ClientSession() as session:
        cfg = gateway_config(tmp_path, "http://127.0.0.1:9/v1", sim.url)
        upstream = build_upstream("cerebras", cfg.cerebras, session, max_event_bytes=1 << 20)
        upstream.chars_per_token.learn(memo_of(2000), 1000)  # 2 characters per token
        body = conversation(0)
        calls: list[UpstreamCall] = []

        async def call() -> None:
            opening = upstream.open_stream(body)
            calls.append(opening.call)
            async with opening:
                pass

        task = asyncio.create_task(call())
        await eventually(lambda: sim.requests, "the call reaches the upstream (it waits 5 s)")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert calls[0].status == "cancelled" and calls[0].estimated
    built = upstream.build_body(body)
    assert calls[0].prompt_tokens == PromptMemo(built).size().tokens(2.0)
    assert calls[0].prompt_tokens != estimate_prompt_tokens(built)


def test_completion_ratio_learns_estimates_and_persists(tmp_path: Path) -> None:
    learner = CharsPerToken()
    assert learner.completion_tokens(100, 3) == 25, "the rule of thumb until a completed call"
    learner.learn_completion(10, MIN_TOKENS - 1)  # a short answer teaches nothing
    assert learner.completion_ratio is None
    learner.learn_completion(1100, 100)  # 11 characters a token
    assert learner.completion_ratio == pytest.approx(11.0)
    assert learner.completion_tokens(110, 3) == 10
    assert learner.completion_tokens(110, 40) == 40, "never below one token per event"
    path = tmp_path / "token_ratios.json"
    RatioStore(path, {"cerebras": learner}).save()
    resumed = CharsPerToken()
    RatioStore(path, {"cerebras": resumed}).load()
    assert resumed.completion_ratio == pytest.approx(11.0)


def test_a_file_without_the_completion_side_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "token_ratios.json"
    path.write_text(
        '{"format": "glm-token-saver-token-ratios", "version": 1, "upstreams": '
        '{"cerebras": {"chars": 3000, "tokens": 1000, "observations": 1}}}'
    )
    resumed = CharsPerToken()
    RatioStore(path, {"cerebras": resumed}).load()
    assert resumed.ratio == pytest.approx(3.0) and resumed.completion_ratio is None
