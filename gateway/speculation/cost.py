"""Cost-aware skipping: is a verify call worth starting at all?

A verify call is billed its whole prompt, however early it is cancelled. When the prompt is most
of what a full Cerebras answer would cost (a coding assistant resending a long history), drafting
and verifying cannot save much and usually costs more: the route is then decided up front.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.accounting.bill import price
from gateway.accounting.tokens import completion_limit, estimate_prompt_tokens
from gateway.config import Prices


def prompt_cost_share(
    body: Mapping[str, Any], prices: Prices, expected_answer_tokens: int
) -> float:
    """Prompt cost / (prompt cost + cost of an answer of `expected_answer_tokens`), in 0..1.

    The answer is taken no longer than the request's own token limit; free prices give 0.
    """
    limit = completion_limit(body)
    answer = expected_answer_tokens if limit is None else min(limit, expected_answer_tokens)
    prompt_cost = price(prices, estimate_prompt_tokens(body), 0, 0)
    total = prompt_cost + price(prices, 0, answer, 0)
    return prompt_cost / total if total > 0 else 0.0
