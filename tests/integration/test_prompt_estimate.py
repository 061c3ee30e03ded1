"""The prompt of a request is estimated at most once, however many steps need the estimate."""

from __future__ import annotations

from typing import Any

import pytest
from support import chat, post_stream

import gateway.accounting.tokens
import gateway.quota.reservations
from gateway.accounting.tokens import PromptSize, prompt_size


async def test_admission_and_an_unreported_usage_share_one_estimate(
    make_gateway, client, cerebras_sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = await make_gateway("always_cerebras", routing={"fallback": {"to_local": False}})
    await post_stream(client, gw.url, chat(stream=True))  # the quota headers: a known limit
    calls: list[Any] = []

    def counting(b: Any) -> PromptSize:
        calls.append(b)
        return prompt_size(b)

    def walking(b: Any) -> int:
        return counting(b).tokens()

    monkeypatch.setattr(gateway.accounting.tokens, "prompt_size", counting)
    monkeypatch.setattr(gateway.quota.reservations, "estimate_prompt_tokens", walking)
    cerebras_sim.inject("cut", after_chunks=4)  # no usage: the call's prompt is estimated
    await post_stream(client, gw.url, chat("estimate me", stream=True))
    assert len(calls) == 1, calls
