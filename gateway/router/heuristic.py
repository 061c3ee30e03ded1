"""The heuristic classifier as a continuous score, so `routing.target_cloud_share` can rank asks.

`TaskClassifier` answers simple or complex. A share target needs an order instead: which asks go
to Cerebras first when only a share of them may. `HeuristicScore.score(ask)` reads what the
classifier reads (keywords, length, code, reasoning phrases, lists, questions) and maps it into
[0, 1):

- length: `L = t / (t + simple_task_threshold + 1/8)` with `t` = characters / 4 (the token
  estimate before rounding up, so asks of nearly equal length still rank), so `L >= 0.5` exactly
  when the ask is longer than `simple_task_threshold` estimated tokens (the classifier's rule);
- a length-free complexity signal (code or a trace, reasoning phrases, a list of several items,
  several questions): at least `0.5 + 0.5 * L`;
- a configured keyword: at least `0.75 + 0.25 * L`.

The score is the largest that applies, so `score >= 0.5` is exactly the classifier's "complex",
and among asks of one kind the longer ranks higher. The router calibrates it with the same
running quantile as the learned scores (gateway.router.calibration).
"""

from __future__ import annotations

import sys

from gateway.accounting.tokens import CHARS_PER_TOKEN
from gateway.router.classifier import TaskClassifier

COMPLEX = 0.5  # the score at and above which the classifier says "complex"


class HeuristicScore:
    """The continuous score of `classifier`'s rules (see the module docstring)."""

    def __init__(self, classifier: TaskClassifier) -> None:
        self.classifier = classifier
        # The classifier's own rules without keywords or a length limit: its length-free signals.
        self._signals = TaskClassifier((), sys.maxsize)

    def length(self, ask: str) -> float:
        """The length part alone, in [0, 1); >= 0.5 when the ask is over the threshold."""
        tokens = len(ask) / CHARS_PER_TOKEN
        # Lengths step by 1/CHARS_PER_TOKEN: half a step keeps "over the threshold" at >= 0.5.
        return tokens / (tokens + self.classifier.threshold + 0.5 / CHARS_PER_TOKEN)

    def score(self, ask: str) -> float:
        """The ask's score in [0, 1); 0.0 for an empty ask."""
        if not ask:
            return 0.0
        length = self.length(ask)
        score = length
        if self._signals.classify_ask(ask).complex:
            score = max(score, COMPLEX + 0.5 * length)
        if self.classifier.keyword(ask) is not None:
            score = max(score, 0.75 + 0.25 * length)
        return score
