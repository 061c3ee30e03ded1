"""The doors' configuration keys: `doors.anthropic.strip_billing_header` and
`routing.model_routes`, validated with messages that name the key."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, parse_config


@pytest.mark.parametrize(
    ("routes", "words"),
    [
        ({"*haiku*": "laptop"}, "routing.model_routes.*haiku*: must be one of"),
        (["*haiku*"], "routing.model_routes: must map"),
    ],
)
def test_bad_model_routes_name_the_key(routes: object, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"routing": {"model_routes": routes}}, env={})
    assert words in str(caught.value)


def test_strip_billing_header_is_validated() -> None:
    assert parse_config(None, env={}).doors.anthropic.strip_billing_header is True
    off = parse_config({"doors": {"anthropic": {"strip_billing_header": False}}}, env={})
    assert off.doors.anthropic.strip_billing_header is False
    with pytest.raises(ConfigError, match="doors.anthropic.strip_billing_header"):
        parse_config({"doors": {"anthropic": {"strip_billing_header": "yes"}}}, env={})
    with pytest.raises(ConfigError, match="doors.anthropic.strip_billing"):
        parse_config({"doors": {"anthropic": {"strip_billing": True}}}, env={})
