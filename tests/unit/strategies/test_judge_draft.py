"""`routing.judge_draft`: smart_routing drafts a local-routed ask and lets the learned draft
scorer accept it or escalate it to Cerebras, through the real gateway on the simulators."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, parse_config


async def test_off_by_default_and_checked() -> None:
    assert parse_config({}, env={}).routing.judge_draft is False
    with pytest.raises(ConfigError, match="judge_draft"):
        parse_config({"routing": {"judge_draft": "yes"}}, env={})
