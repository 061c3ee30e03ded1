"""The threshold that keeps the share of requests sent to Cerebras near a target.

With a target share t, the threshold is the (1 - t) quantile of a rolling window of recent
scores: about t of the recent asks scored at or above it, so the share follows the target
whatever the mix of asks. With n scores in the window the threshold is the k-th highest, k =
round(t * (n + 1)): a new score from the same mix lands at or above it with probability
k / (n + 1), about t even while the window is small. With no target, or fewer than
`min_samples` scores seen, the scorer's own threshold applies. `min_samples` is 1: the
scorer's own share can be far from the target (the heuristic's own rule sends almost every
short ask local), so every decision but the very first follows the window.

Scores must be comparable across the window: when the scorer changes (online learning), the
owner re-scores what the window holds and `reset`s it (gateway.router.router).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable

WINDOW = 1000
MIN_SAMPLES = 1


class ShareCalibrator:
    """A rolling window of the last `window` scores and the threshold derived from it."""

    def __init__(
        self,
        target: float | None,
        default: float,
        *,
        window: int = WINDOW,
        min_samples: int = MIN_SAMPLES,
        scores: Iterable[float] = (),
    ) -> None:
        if target is not None and not 0.0 <= target <= 1.0:
            raise ValueError(f"target share must be within 0..1, got {target}")
        self.target = target
        self.default = default
        self.min_samples = min_samples
        self._recent: deque[float] = deque(maxlen=window)
        self._sorted: list[float] = []
        for score in scores:
            self.observe(score)

    def __len__(self) -> int:
        return len(self._recent)

    def observe(self, score: float) -> None:
        """Add one score to the window (the oldest leaves when it is full)."""
        if len(self._recent) == self._recent.maxlen:
            old = self._recent[0]
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._recent.append(score)
        bisect.insort(self._sorted, score)

    def reset(self, scores: Iterable[float]) -> None:
        """Replace the window by `scores` (oldest first; the newest `window` are kept)."""
        self._recent.clear()
        self._sorted = []
        for score in scores:
            self.observe(score)

    @property
    def calibrated(self) -> bool:
        """True when the threshold comes from the window rather than the default."""
        return self.target is not None and len(self._sorted) >= self.min_samples

    def threshold(self) -> float:
        """Scores at or above it go to Cerebras: about `target` of the window does."""
        if self.target is None or not self.calibrated:
            return self.default
        n = len(self._sorted)
        over = round(self.target * (n + 1))  # how many recent scores lie at or above it
        if over <= 0:
            return 1.0
        if over > n:
            return 0.0  # every score goes (scores are within 0..1)
        return self._sorted[n - over]

    def scores(self) -> list[float]:
        """The window, oldest first."""
        return list(self._recent)
