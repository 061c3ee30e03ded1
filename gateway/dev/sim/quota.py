"""Cerebras-style quota: continuously refilling token buckets and their rate-limit headers.

A bucket of capacity L and window W refills at L/W per second up to L. Tests may replace
`Quota.clock` (any monotonic float source) to move time without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

MINUTE = 60.0
DAY = 86_400.0
# Limits a forced 429 reports for dimensions the sim leaves unlimited.
_STAND_IN_REQUESTS_DAY = 14_400.0
_STAND_IN_TOKENS_MINUTE = 500_000.0

DenialCode = Literal["request_quota_exceeded", "token_quota_exceeded"]

HEADER_LIMIT_REQUESTS_DAY = "x-ratelimit-limit-requests-day"
HEADER_LIMIT_TOKENS_MINUTE = "x-ratelimit-limit-tokens-minute"
HEADER_REMAINING_REQUESTS_DAY = "x-ratelimit-remaining-requests-day"
HEADER_REMAINING_TOKENS_MINUTE = "x-ratelimit-remaining-tokens-minute"
HEADER_RESET_REQUESTS_DAY = "x-ratelimit-reset-requests-day"
HEADER_RESET_TOKENS_MINUTE = "x-ratelimit-reset-tokens-minute"


def header_value(value: float) -> str:
    return str(round(float(value), 3))


@dataclass(slots=True)
class TokenBucket:
    """Holds `level` units out of `capacity`; `updated` is the clock value of the last refill."""

    capacity: float
    window: float
    level: float
    updated: float | None = None

    def refill(self, now: float) -> float:
        if self.updated is not None and now > self.updated:
            self.level = min(
                self.capacity, self.level + (now - self.updated) * self.capacity / self.window
            )
        self.updated = now
        return self.level

    def reset_seconds(self, now: float) -> float:
        """Seconds until the bucket is full again."""
        missing = self.capacity - self.refill(now)
        return max(0.0, missing * self.window / self.capacity)


def _bucket(limit: float | None, window: float) -> TokenBucket | None:
    if limit is None:
        return None
    if limit <= 0:
        raise ValueError("quota limits must be > 0 (use None for unlimited)")
    return TokenBucket(capacity=float(limit), window=window, level=float(limit))


class Quota:
    """Requests per minute, tokens per minute and requests per day; None means unlimited."""

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        requests_per_day: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        minute: float = MINUTE,
        day: float = DAY,
    ) -> None:
        self.clock = clock
        self.requests_minute = _bucket(requests_per_minute, minute)
        self.tokens_minute = _bucket(tokens_per_minute, minute)
        self.requests_day = _bucket(requests_per_day, day)

    @property
    def configured(self) -> bool:
        return any(b is not None for b in self._buckets())

    def _buckets(self) -> tuple[TokenBucket | None, ...]:
        return (self.requests_minute, self.tokens_minute, self.requests_day)

    def reserve(self, tokens: int) -> DenialCode | None:
        """Take one request and `tokens` tokens from every bucket, or nothing and say why not."""
        now = self.clock()
        for bucket in (self.requests_minute, self.requests_day):
            if bucket is not None and bucket.refill(now) < 1:
                return "request_quota_exceeded"
        if self.tokens_minute is not None and self.tokens_minute.refill(now) < tokens:
            return "token_quota_exceeded"
        for bucket in (self.requests_minute, self.requests_day):
            if bucket is not None:
                bucket.level -= 1
        if self.tokens_minute is not None:
            self.tokens_minute.level -= tokens
        return None

    def refund(self, tokens: float) -> None:
        """Give back unused reserved tokens."""
        if self.tokens_minute is not None and tokens > 0:
            bucket = self.tokens_minute
            bucket.refill(self.clock())
            bucket.level = min(bucket.capacity, bucket.level + tokens)

    def headers(self) -> dict[str, str]:
        """The six x-ratelimit-* headers, minus those of unlimited dimensions."""
        now = self.clock()
        out: dict[str, str] = {}
        if self.requests_day is not None:
            b = self.requests_day
            out[HEADER_LIMIT_REQUESTS_DAY] = header_value(b.capacity)
            out[HEADER_REMAINING_REQUESTS_DAY] = header_value(b.refill(now))
            out[HEADER_RESET_REQUESTS_DAY] = header_value(b.reset_seconds(now))
        if self.tokens_minute is not None:
            b = self.tokens_minute
            out[HEADER_LIMIT_TOKENS_MINUTE] = header_value(b.capacity)
            out[HEADER_REMAINING_TOKENS_MINUTE] = header_value(b.refill(now))
            out[HEADER_RESET_TOKENS_MINUTE] = header_value(b.reset_seconds(now))
        return out

    def exhausted_headers(
        self, reset_seconds: float, kind: Literal["tokens", "requests"] = "tokens"
    ) -> dict[str, str]:
        """All six headers as a 429 would carry them; unlimited dimensions get stand-in limits."""
        out = {
            HEADER_LIMIT_REQUESTS_DAY: header_value(_STAND_IN_REQUESTS_DAY),
            HEADER_REMAINING_REQUESTS_DAY: header_value(_STAND_IN_REQUESTS_DAY),
            HEADER_RESET_REQUESTS_DAY: header_value(0.0),
            HEADER_LIMIT_TOKENS_MINUTE: header_value(_STAND_IN_TOKENS_MINUTE),
            HEADER_REMAINING_TOKENS_MINUTE: header_value(_STAND_IN_TOKENS_MINUTE),
            HEADER_RESET_TOKENS_MINUTE: header_value(0.0),
        }
        out.update(self.headers())
        if kind == "tokens":
            out[HEADER_REMAINING_TOKENS_MINUTE] = header_value(0.0)
            out[HEADER_RESET_TOKENS_MINUTE] = header_value(reset_seconds)
        else:
            out[HEADER_REMAINING_REQUESTS_DAY] = header_value(0.0)
            out[HEADER_RESET_REQUESTS_DAY] = header_value(reset_seconds)
        return out
