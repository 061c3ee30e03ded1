"""The prompt of a request is estimated at most once, however many steps need the estimate."""

from __future__ import annotations

from typing import Any

import pytest
from support import chat

import gateway.accounting.tokens
import gateway.quota.reservations
from gateway.accounting.tokens import PromptSize, estimate_prompt_tokens, once, prompt_size


def test_once_computes_on_first_use_only(monkeypatch: pytest.MonkeyPatch) -> None:
    body = chat("how many tokens?")
    size, tokens = prompt_size(body), estimate_prompt_tokens(body)
    calls: list[Any] = []

    def counting(b: Any) -> PromptSize:
        calls.append(b)
        return prompt_size(b)

    monkeypatch.setattr(gateway.accounting.tokens, "prompt_size", counting)
    estimate = once(body)
    assert calls == []
    assert estimate() == estimate() == tokens
    assert estimate.size() == size
    assert len(calls) == 1
