"""Verification samples (`routing.learn.verify_sample`): a share of local answers is asked of
Cerebras after the client's response ended; the comparison labels the router (source
`verify_sample`). Against the real simulators on 127.0.0.1."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, parse_config
from gateway.speculation.verdict import Answer, ToolCall
from gateway.speculation.verify_sample import MIN_CAP, verify_cap


def test_config_accepts_a_share_and_refuses_anything_else() -> None:
    assert parse_config(None).routing.learn.verify_sample == 0.0
    for share in (0, 0.25, 1):
        cfg = parse_config({"routing": {"learn": {"verify_sample": share}}})
        assert cfg.routing.learn.verify_sample == share
    for bad in (1.5, -0.1, "often", True, float("nan")):
        with pytest.raises(ConfigError, match=r"routing\.learn\.verify_sample"):
            parse_config({"routing": {"learn": {"verify_sample": bad}}})


def test_the_cap_is_what_the_comparison_needs() -> None:
    short = Answer("hi")
    assert verify_cap(short, 0.7, None) == MIN_CAP
    long = Answer("x" * 4000)  # ~1000 tokens
    assert verify_cap(long, 0.7, None) == pytest.approx(1000 * (2 / 0.7 - 1) + 16, abs=2)
    assert verify_cap(long, 1.0, None) == 1000 + 16, "never below the answer's own length"
    assert verify_cap(long, 0.1, None) == 3000 + 16, "bounded"
    assert verify_cap(long, 0.7, 300) == 300, "never above the client's own limit"
    calls = Answer("", (ToolCall("read_file", '{"path": "a.py"}'),))
    assert verify_cap(calls, 0.9, None) == MIN_CAP
