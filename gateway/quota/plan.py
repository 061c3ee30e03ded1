"""The configured plan's windows (`rate_limits.cerebras`), for limits the headers do not report."""

from __future__ import annotations

from collections import deque

from gateway.config import PlanLimits
from gateway.ratelimit import Unit

_MINUTE = 60.0
_DAY = 86_400.0


class PlanWindow:
    """A window of the configured plan, kept as a sliding log of what the gate admitted.

    A sliding log of limit L over W seconds never admits more than a token bucket of the same
    capacity refilling at L/W would, so it is a safe stand-in for Cerebras' buckets.
    """

    def __init__(self, name: str, unit: Unit, limit: float, seconds: float) -> None:
        self.name = name
        self.unit = unit
        self.limit = limit
        self.seconds = seconds
        self._log: deque[tuple[float, float]] = deque()
        self._used = 0.0

    def _expire(self, now: float) -> None:
        while self._log and self._log[0][0] + self.seconds <= now:
            self._used -= self._log.popleft()[1]
        if not self._log:
            self._used = 0.0

    def remaining(self, now: float) -> float:
        self._expire(now)
        return max(0.0, self.limit - self._used)

    def add(self, now: float, amount: float) -> None:
        if amount > 0:
            self._expire(now)
            self._log.append((now, amount))
            self._used += amount

    def wait(self, now: float, need: float, floor: float) -> float | None:
        """Seconds until `need` fits above `floor`; None if it never will."""
        self._expire(now)
        used = self._used
        if self.limit - used - need >= floor:
            return 0.0
        for at, amount in self._log:
            used -= amount
            if self.limit - used - need >= floor:
                return at + self.seconds - now
        return None


def plan_windows(plan: PlanLimits) -> tuple[PlanWindow, ...]:
    """The plan's windows, named like the headers that would report them."""
    windows = []
    if plan.requests_per_minute is not None:
        windows.append(PlanWindow("requests-minute", "requests", plan.requests_per_minute, _MINUTE))
    if plan.tokens_per_minute is not None:
        windows.append(PlanWindow("tokens-minute", "tokens", plan.tokens_per_minute, _MINUTE))
    if plan.requests_per_day is not None:
        windows.append(PlanWindow("requests-day", "requests", plan.requests_per_day, _DAY))
    return tuple(windows)
