"""What each upstream's rate-limit headers say: a pure reader, with no other gateway dependency.

`RateLimitWatcher` (one per upstream, fed by every response, success or error) understands two
header families:
- Cerebras: `x-ratelimit-{limit,remaining,reset}-{requests-day,tokens-minute}`, float values, resets
  in seconds from now;
- OpenAI style: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets like `6m0s`;
plus `retry-after` (seconds or an HTTP date). Deadlines are kept on the monotonic clock; a window
whose reset has passed is assumed full again. Malformed values are ignored with a debug log.

The admission gate that acts on what the watchers read is gateway.quota.gate.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger("gateway.ratelimit")

_PREFIX = "x-ratelimit-"
_FIELDS = ("limit", "remaining", "reset")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_FULL = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|h|m|s))+")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}

Unit = Literal["requests", "tokens"]


def window_unit(name: str) -> Unit | None:
    """What a window counts, from its header name (`tokens-minute` -> tokens)."""
    if name.startswith("tokens"):
        return "tokens"
    if name.startswith("requests"):
        return "requests"
    return None


def parse_duration(value: str) -> float | None:
    """Seconds from `12.5`, `6m0s`, `1h2m3.5s` or `250ms`; None when malformed or negative."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        if not _DURATION_FULL.fullmatch(text):
            return None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(text))
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return None
    return seconds


def parse_retry_after(value: str, now_wall: float | None = None) -> float | None:
    """Seconds from a `retry-after` value: delta seconds or an HTTP date."""
    seconds = parse_duration(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    wall = time.time() if now_wall is None else now_wall
    return max(0.0, when.timestamp() - wall)


@dataclass(slots=True)
class Window:
    """One quota window (e.g. `tokens-minute`): capacity, what is left, when it is full again."""

    limit: float | None = None
    remaining: float | None = None
    reset_at: float | None = None

    def headroom(self, now: float) -> float | None:
        """Fraction of the window left (1.0 once its reset passed); None when unknown."""
        if self.reset_at is not None and now >= self.reset_at:
            return 1.0
        if self.limit is None or self.remaining is None or self.limit <= 0:
            return None
        return max(0.0, min(1.0, self.remaining / self.limit))


class RateLimitWatcher:
    """Per-upstream rate-limit state fed by `observe(headers)` on every response."""

    def __init__(self, upstream: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.upstream = upstream
        self.clock = clock
        self.windows: dict[str, Window] = {}
        self.retry_at: float | None = None
        self.updated_at: float | None = None

    def knows_a_limit(self) -> bool:
        """Whether any response reported the size of one of this upstream's windows."""
        return any(window.limit for window in self.windows.values())

    def observe(self, headers: Mapping[str, str]) -> bool:
        """Update from response headers; True when any rate-limit header was understood."""
        now = self.clock()
        seen = False
        for raw_name, raw_value in headers.items():
            name = raw_name.lower()
            if name == "retry-after":
                seconds = parse_retry_after(raw_value)
                if seconds is None:
                    log.debug("%s: ignoring malformed retry-after", self.upstream)
                    continue
                self.retry_at = now + seconds
                seen = True
                continue
            if not name.startswith(_PREFIX):
                continue
            field, _, window_name = name[len(_PREFIX) :].partition("-")
            if field not in _FIELDS or not window_name:
                continue
            value = parse_duration(raw_value) if field == "reset" else _parse_number(raw_value)
            if value is None:
                log.debug("%s: ignoring malformed %s", self.upstream, name)
                continue
            window = self.windows.setdefault(window_name, Window())
            if field == "limit":
                window.limit = value
            elif field == "remaining":
                window.remaining = value
            else:
                window.reset_at = now + value
            seen = True
        if seen:
            self.updated_at = now
        return seen

    def retry_after(self) -> float | None:
        """Seconds until the upstream should be tried again after a 429, from what is known.

        `retry-after` when sent; else the reset of the most exhausted window (an empty daily
        request window wins over the minute token window); else the minute token window's reset.
        """
        explained = self.explained_wait()
        if explained is not None:
            return explained
        now = self.clock()
        minute = self.windows.get("tokens-minute") or self.windows.get("tokens")
        if minute and minute.reset_at is not None and minute.reset_at > now:
            return minute.reset_at - now
        return None

    def explained_wait(self) -> float | None:
        """The wait the headers state for certain: a pending `retry-after`, else the longest
        reset among exhausted windows. None when they do not say which limit was hit (Cerebras
        reports no requests-per-minute window, for one)."""
        now = self.clock()
        if self.retry_at is not None and self.retry_at > now:
            return self.retry_at - now
        best: float | None = None
        for window in self.windows.values():
            if window.reset_at is None or window.reset_at <= now:
                continue
            exhausted = window.remaining is not None and window.remaining <= 0
            wait = window.reset_at - now
            if exhausted and (best is None or wait > best):
                best = wait
        return best

    def headroom(self) -> dict[str, float | None]:
        now = self.clock()
        return {name: w.headroom(now) for name, w in sorted(self.windows.items())}


def _parse_number(value: str) -> float | None:
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if number != number or number < 0 or number == float("inf"):
        return None
    return number
