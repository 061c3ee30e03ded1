"""RateLimitWatcher: Cerebras and OpenAI header families, retry-after, malformed values, clock."""

from __future__ import annotations

import ast
import email.utils
import time
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

import gateway.ratelimit
from gateway.ratelimit import RateLimitWatcher, Window, parse_duration, parse_retry_after

CEREBRAS = {
    "x-ratelimit-limit-requests-day": "14400",
    "x-ratelimit-limit-tokens-minute": "500000",
    "x-ratelimit-remaining-requests-day": "14399",
    "x-ratelimit-remaining-tokens-minute": "125000.0",
    "x-ratelimit-reset-requests-day": "33011.382867097855",
    "x-ratelimit-reset-tokens-minute": "11.382867097854614",
}


OPENAI = {
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-limit-tokens": "30000",
    "x-ratelimit-remaining-requests": "499",
    "x-ratelimit-remaining-tokens": "29000",
    "x-ratelimit-reset-requests": "120ms",
    "x-ratelimit-reset-tokens": "6m0s",
}


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def watcher(headers: Any = None) -> tuple[RateLimitWatcher, FakeClock]:
    clock = FakeClock()
    w = RateLimitWatcher("cerebras", clock=clock)
    if headers is not None:
        assert w.observe(headers) is True
    return w, clock


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("12.5", 12.5),
        ("0", 0.0),
        (" 7 ", 7.0),
        ("33011.382867097855", 33011.382867097855),
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("250ms", 0.25),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("0s", 0.0),
        ("1.5m", 90.0),
        ("1s500ms", 1.5),
    ],
)
def test_parse_duration(value: str, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "abc",
        "-1",
        "-0.5",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "1e999",
        "6m0",
        "1d",
        "m",
        "h1",
        "1h-2m",
        "6 m",
    ],
)
def test_parse_duration_malformed(value: str) -> None:
    assert parse_duration(value) is None


def test_parse_retry_after() -> None:
    now = 1_750_000_000.0
    assert parse_retry_after("30", now_wall=now) == 30.0
    assert parse_retry_after("0", now_wall=now) == 0.0
    date = email.utils.formatdate(now + 90, usegmt=True)
    assert parse_retry_after(date, now_wall=now) == pytest.approx(90.0)
    past = email.utils.formatdate(now - 90, usegmt=True)
    assert parse_retry_after(past, now_wall=now) == 0.0
    for bad in ("soon", "", "-5", "Fri, 99 Foo 2026 99:99:99 GMT", "nan"):
        assert parse_retry_after(bad, now_wall=now) is None, bad


def test_observe_cerebras_headers() -> None:
    w, clock = watcher(CEREBRAS)
    assert set(w.windows) == {"requests-day", "tokens-minute"}
    day, minute = w.windows["requests-day"], w.windows["tokens-minute"]
    assert (day.limit, day.remaining) == (14400.0, 14399.0)
    assert day.reset_at == pytest.approx(1000.0 + 33011.382867097855)
    assert (minute.limit, minute.remaining) == (500000.0, 125000.0)
    assert minute.reset_at == pytest.approx(1000.0 + 11.382867097854614)
    assert w.updated_at == 1000.0
    assert w.retry_at is None
    assert w.headroom() == {
        "requests-day": pytest.approx(14399 / 14400),
        "tokens-minute": pytest.approx(0.25),
    }


def test_header_names_are_case_insensitive() -> None:
    headers = {k.upper() if i % 2 else k.title(): v for i, (k, v) in enumerate(CEREBRAS.items())}
    w, _ = watcher(headers)
    assert w.headroom() == {"requests-day": pytest.approx(14399 / 14400), "tokens-minute": 0.25}


def test_observe_takes_aiohttp_headers() -> None:
    w, _ = watcher(CIMultiDictProxy(CIMultiDict({**CEREBRAS, "Content-Type": "text/plain"})))
    assert w.headroom()["tokens-minute"] == pytest.approx(0.25)


def test_later_responses_update_the_windows() -> None:
    w, clock = watcher(CEREBRAS)
    clock.now += 5
    assert w.observe({"x-ratelimit-remaining-tokens-minute": "0"}) is True
    assert w.windows["tokens-minute"].remaining == 0.0
    assert w.windows["tokens-minute"].limit == 500000.0
    assert w.updated_at == 1005.0
    assert w.headroom()["tokens-minute"] == 0.0


def test_observe_openai_headers() -> None:
    w, _ = watcher(OPENAI)
    assert set(w.windows) == {"requests", "tokens"}
    requests, tokens = w.windows["requests"], w.windows["tokens"]
    assert (requests.limit, requests.remaining) == (500.0, 499.0)
    assert requests.reset_at == pytest.approx(1000.12)
    assert (tokens.limit, tokens.remaining) == (30000.0, 29000.0)
    assert tokens.reset_at == pytest.approx(1360.0)
    assert w.headroom() == {
        "requests": pytest.approx(499 / 500),
        "tokens": pytest.approx(29000 / 30000),
    }


@pytest.mark.parametrize(
    ("value", "seconds"), [("6m0s", 360.0), ("1h2m3.5s", 3723.5), ("250ms", 0.25)]
)
def test_openai_reset_durations(value: str, seconds: float) -> None:
    w, _ = watcher({"x-ratelimit-reset-tokens": value})
    assert w.windows["tokens"].reset_at == pytest.approx(1000.0 + seconds)


def test_retry_after_seconds() -> None:
    w, clock = watcher({"retry-after": "30"})
    assert w.retry_at == 1030.0
    assert w.retry_after() == pytest.approx(30.0)
    clock.now += 10
    assert w.retry_after() == pytest.approx(20.0)


def test_retry_after_http_date() -> None:
    date = email.utils.formatdate(time.time() + 120, usegmt=True)
    w, _ = watcher({"Retry-After": date})
    assert w.retry_after() == pytest.approx(120.0, abs=2.0)


def test_retry_after_http_date_in_the_past() -> None:
    date = email.utils.formatdate(time.time() - 3600, usegmt=True)
    w, _ = watcher({"retry-after": date})
    assert w.retry_at == pytest.approx(1000.0)
    assert w.retry_after() is None


@pytest.mark.parametrize("bad", ["", "abc", "-5", "nan", "inf", "1e999", "12,5", "0x10", "∞"])
@pytest.mark.parametrize("name", [*CEREBRAS, *OPENAI, "retry-after"])
def test_malformed_values_are_ignored(name: str, bad: str) -> None:
    w, _ = watcher()
    assert w.observe({name: bad}) is False
    assert w.windows == {}
    assert w.retry_at is None
    assert w.updated_at is None
    assert w.retry_after() is None
    assert w.headroom() == {}


def test_malformed_value_keeps_the_previous_one() -> None:
    w, _ = watcher(CEREBRAS)
    assert w.observe({"x-ratelimit-remaining-tokens-minute": "lots"}) is False
    assert w.windows["tokens-minute"].remaining == 125000.0
    bad_and_good = {
        "x-ratelimit-limit-tokens-minute": "nan",
        "x-ratelimit-remaining-tokens-minute": "5",
    }
    assert w.observe(bad_and_good) is True
    assert w.windows["tokens-minute"].limit == 500000.0
    assert w.windows["tokens-minute"].remaining == 5.0


def test_no_rate_limit_headers() -> None:
    w, _ = watcher()
    headers = {
        "content-type": "text/event-stream",
        "x-request-id": "abc",
        "x-ratelimit": "5",
        "x-ratelimit-limit": "5",
        "x-ratelimit-limit-": "5",
        "x-ratelimit-used-tokens": "5",
        "x-ratelimit-foo": "5",
    }
    assert w.observe(headers) is False
    assert w.observe({}) is False
    assert w.windows == {}
    assert w.headroom() == {}
    assert w.retry_after() is None


@pytest.mark.parametrize(
    ("limit", "remaining", "expected"),
    [
        (100.0, 25.0, 0.25),
        (100.0, 0.0, 0.0),
        (100.0, 100.0, 1.0),
        (100.0, 150.0, 1.0),
        (0.0, 0.0, None),
        (None, 5.0, None),
        (100.0, None, None),
    ],
)
def test_window_headroom(
    limit: float | None, remaining: float | None, expected: float | None
) -> None:
    assert Window(limit, remaining, reset_at=2000.0).headroom(1000.0) == expected
    assert Window(limit, remaining).headroom(1000.0) == expected


def test_window_whose_reset_passed_is_full() -> None:
    window = Window(100.0, 0.0, reset_at=1010.0)
    assert window.headroom(1009.9) == 0.0
    assert window.headroom(1010.0) == 1.0
    assert window.headroom(5000.0) == 1.0
    assert Window(None, None, reset_at=1.0).headroom(2.0) == 1.0


def test_watcher_headroom_after_reset_with_fake_clock() -> None:
    headers = {**CEREBRAS, "x-ratelimit-remaining-tokens-minute": "0"}
    w, clock = watcher(headers)
    assert w.headroom()["tokens-minute"] == 0.0
    clock.now += 11.0
    assert w.headroom()["tokens-minute"] == 0.0
    clock.now += 0.5
    assert w.headroom() == {"requests-day": pytest.approx(14399 / 14400), "tokens-minute": 1.0}


def test_retry_after_header_wins() -> None:
    headers = {
        **CEREBRAS,
        "x-ratelimit-remaining-requests-day": "0",
        "x-ratelimit-remaining-tokens-minute": "0",
        "retry-after": "7",
    }
    w, _ = watcher(headers)
    assert w.retry_after() == pytest.approx(7.0)


def test_expired_retry_after_falls_back_to_the_windows() -> None:
    w, clock = watcher({**CEREBRAS, "retry-after": "2"})
    clock.now += 3
    assert w.retry_after() == pytest.approx(11.382867097854614 - 3)


def test_exhausted_daily_requests_win() -> None:
    w, _ = watcher({**CEREBRAS, "x-ratelimit-remaining-requests-day": "0"})
    assert w.retry_after() == pytest.approx(33011.382867097855)


def test_exhausted_daily_requests_win_over_exhausted_minute_tokens() -> None:
    headers = {
        **CEREBRAS,
        "x-ratelimit-remaining-requests-day": "0",
        "x-ratelimit-remaining-tokens-minute": "0",
    }
    w, _ = watcher(headers)
    assert w.retry_after() == pytest.approx(33011.382867097855)


def test_exhausted_minute_tokens() -> None:
    w, _ = watcher({**CEREBRAS, "x-ratelimit-remaining-tokens-minute": "0"})
    assert w.retry_after() == pytest.approx(11.382867097854614)


def test_nothing_exhausted_gives_the_minute_token_reset() -> None:
    w, clock = watcher(CEREBRAS)
    assert w.retry_after() == pytest.approx(11.382867097854614)
    clock.now += 1
    assert w.retry_after() == pytest.approx(10.382867097854614)


def test_openai_tokens_window_counts_as_the_minute_window() -> None:
    w, _ = watcher(OPENAI)
    assert w.retry_after() == pytest.approx(360.0)
    w2, _ = watcher({**OPENAI, "x-ratelimit-remaining-requests": "0"})
    assert w2.retry_after() == pytest.approx(0.12)


def test_exhausted_daily_window_whose_reset_passed_is_skipped() -> None:
    headers = {
        **CEREBRAS,
        "x-ratelimit-remaining-requests-day": "0",
        "x-ratelimit-reset-requests-day": "5",
        "x-ratelimit-reset-tokens-minute": "50",
    }
    w, clock = watcher(headers)
    assert w.retry_after() == pytest.approx(5.0)
    clock.now += 6
    assert w.retry_after() == pytest.approx(44.0)


def test_retry_after_none_when_everything_reset() -> None:
    w, clock = watcher({**CEREBRAS, "x-ratelimit-remaining-requests-day": "0"})
    clock.now += 40_000
    assert w.retry_after() is None


def test_retry_after_none_without_resets() -> None:
    w, _ = watcher(
        {"x-ratelimit-remaining-tokens-minute": "0", "x-ratelimit-limit-tokens-minute": "9"}
    )
    assert w.retry_after() is None


def test_malformed_values_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    w, _ = watcher()
    with caplog.at_level("DEBUG", logger="gateway.ratelimit"):
        w.observe({"x-ratelimit-remaining-tokens-minute": "-3", "retry-after": "soon"})
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("DEBUG", "cerebras: ignoring malformed x-ratelimit-remaining-tokens-minute") in messages
    assert ("DEBUG", "cerebras: ignoring malformed retry-after") in messages
    assert all(level == "DEBUG" for level, _ in messages)


def test_explained_wait_only_from_retry_after_or_an_exhausted_window() -> None:
    w, clock = watcher(CEREBRAS)
    assert w.explained_wait() is None  # nothing exhausted: the headers do not explain a 429
    assert w.retry_after() == pytest.approx(11.382867097854614)
    w.observe({"x-ratelimit-remaining-tokens-minute": "0"})
    assert w.explained_wait() == pytest.approx(11.382867097854614)
    w.observe({"retry-after": "3"})
    assert w.explained_wait() == pytest.approx(3.0)


def test_the_watcher_module_depends_on_nothing_else_in_the_gateway() -> None:
    tree = ast.parse(Path(gateway.ratelimit.__file__).read_text())
    nodes = list(ast.walk(tree))
    imported = {a.name for n in nodes if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in nodes if isinstance(n, ast.ImportFrom)}
    assert imported, "the parse found the imports"
    assert {name for name in imported if name.split(".")[0] == "gateway"} == set()
