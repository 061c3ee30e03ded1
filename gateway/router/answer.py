"""Readings of one answer, shared by the router's features (gateway.router.features) and the
speculation verdict (gateway.speculation.verdict): pure functions of text or logprobs.

- `final_number`: the last number an answer writes (what `final_answer` compares).
- `logprob_confidence`: llama.cpp token logprobs summarised as the mean token probability and the
  probability at a low quantile.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from fractions import Fraction

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def final_number(text: str) -> Fraction | None:
    """The last number written in `text` (commas as thousands separators, a/b fractions)."""
    for match in reversed(list(_NUMBER.finditer(text))):
        try:
            return Fraction(match.group(0).replace(",", ""))
        except (ValueError, ZeroDivisionError):
            continue
    return None


def logprob_confidence(logprobs: Sequence[float], low_quantile: float) -> tuple[float, float]:
    """(mean token probability, probability at `low_quantile`, nearest rank); (0, 0) if none."""
    if not logprobs:
        return 0.0, 0.0
    probs = sorted(math.exp(min(0.0, lp)) for lp in logprobs)
    rank = max(1, math.ceil(low_quantile * len(probs)))
    return sum(probs) / len(probs), probs[rank - 1]
