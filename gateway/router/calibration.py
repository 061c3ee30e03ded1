"""The threshold that keeps the share of requests sent to Cerebras on a target.

Two parts, both deterministic:

- **The quantile.** With a target share t, the threshold is about the (1 - t) quantile of a
  rolling window of recent scores: with n scores in the window it is the k-th highest, k =
  round(s * (n + 1)), where s is the share asked of the window (below). A new score from the
  same mix lands at or above it with probability k / (n + 1), about s even while the window is
  small. With no target, or fewer than `min_samples` scores seen, the scorer's own threshold
  applies. `min_samples` is 1: the scorer's own share can be far from the target (the
  heuristic's own rule sends almost every short ask local), so every decision but the very
  first follows the window.
- **The feedback on the realised share.** The window reflects the mix of the last 1,000 asks;
  when the mix shifts, its quantile sends too many or too few of the new asks until the window
  has turned over. So the calibrator also counts its decisions (`decided`): its `debt` is how
  many asks the decisions so far are short of the target (t per decision minus 1 per ask sent;
  negative when over). The share asked of the window is s = t + debt / horizon, clamped to
  0..1: the threshold is chosen so that the asks decided so far plus the expected share of the
  next `horizon` asks land on the target. A shift of the mix is corrected within a few dozen
  asks; on a steady mix the debt stays near 0 and s near t. The debt is bounded to +-`horizon`
  asks: a long excess (keywords alone above the target, say) is paid back by at most that many
  asks once it ends, not by the whole excess.

`horizon=None` turns the feedback off (the quantile alone; the offline benchmark compares
both).

Scores must be comparable across the window: when the scorer changes (online learning), the
owner re-scores what the window holds and `reset`s it (gateway.router.router); the debt is a
count of decisions already made and is kept.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable

WINDOW = 1000
MIN_SAMPLES = 1
# Asks over which a shortfall (or excess) of the realised share is paid back. Smaller follows a
# shift faster and moves the threshold more on a steady mix; 8-64 were within a point of
# quality at equal cost offline (docs/bench/routing.md), 16 lands closest on the drifting ones.
HORIZON = 16


class ShareCalibrator:
    """A rolling window of the last `window` scores, the count of decisions' shortfall against
    the target, and the threshold derived from both."""

    def __init__(
        self,
        target: float | None,
        default: float,
        *,
        window: int = WINDOW,
        min_samples: int = MIN_SAMPLES,
        horizon: int | None = HORIZON,
        scores: Iterable[float] = (),
        decisions: Iterable[bool] = (),
    ) -> None:
        if target is not None and not 0.0 <= target <= 1.0:
            raise ValueError(f"target share must be within 0..1, got {target}")
        if horizon is not None and horizon < 1:
            raise ValueError(f"horizon must be at least 1, got {horizon}")
        self.target = target
        self.default = default
        self.min_samples = min_samples
        self.horizon = horizon
        self.debt = 0.0
        self._recent: deque[float] = deque(maxlen=window)
        self._sorted: list[float] = []
        for score in scores:
            self.observe(score)
        for cloud in decisions:
            self.decided(cloud)

    def __len__(self) -> int:
        return len(self._recent)

    def observe(self, score: float) -> None:
        """Add one score to the window (the oldest leaves when it is full)."""
        if len(self._recent) == self._recent.maxlen:
            old = self._recent[0]
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._recent.append(score)
        bisect.insort(self._sorted, score)

    def decided(self, cloud: bool) -> None:
        """Count one decision made under this target (True = sent to Cerebras)."""
        if self.target is None or self.horizon is None:
            return
        debt = self.debt + self.target - (1.0 if cloud else 0.0)
        self.debt = min(max(debt, -self.horizon), float(self.horizon))

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

    def share(self) -> float | None:
        """The share of the window's scores at or above the threshold: the target corrected by
        the debt (None without a target)."""
        if self.target is None or self.horizon is None:
            return self.target
        return min(max(self.target + self.debt / self.horizon, 0.0), 1.0)

    def threshold(self) -> float:
        """Scores at or above it go to Cerebras: about `share()` of the window does."""
        share = self.share()
        if share is None or not self.calibrated:
            return self.default
        n = len(self._sorted)
        over = round(share * (n + 1))  # how many recent scores lie at or above it
        if over <= 0:
            return 1.0
        if over > n:
            return 0.0  # every score goes (scores are within 0..1)
        return self._sorted[n - over]

    def scores(self) -> list[float]:
        """The window, oldest first."""
        return list(self._recent)
