"""The threshold that keeps the share of requests sent to Cerebras near a target.

With a target share t, the threshold is the (1 - t) quantile of a rolling window of recent
scores: about t of the recent asks scored at or above it, so the share follows the target
whatever the mix of asks. With no target, or fewer than `min_samples` scores seen, the
scorer's own threshold applies.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable

WINDOW = 1000
MIN_SAMPLES = 20


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

    @property
    def calibrated(self) -> bool:
        """True when the threshold comes from the window rather than the default."""
        return self.target is not None and len(self._sorted) >= self.min_samples

    def threshold(self) -> float:
        """Scores at or above it go to Cerebras: about `target` of the window does."""
        if self.target is None or not self.calibrated:
            return self.default
        n = len(self._sorted)
        over = math.ceil(self.target * n - 1e-9)  # how many recent scores would have gone
        if over <= 0:
            return 1.0
        return self._sorted[n - over]

    def scores(self) -> list[float]:
        """The window, oldest first."""
        return list(self._recent)
