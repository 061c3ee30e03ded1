"""Every string-typed choice of the config: a value outside its `Literal` type stops the load
with a message that names the key and lists the allowed values; number keys read by the bounds
the schema gives them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from gateway.cli import build_parser
from gateway.config import LOG_LEVELS, ConfigError, parse_config
from gateway.config.reader import Reader


@pytest.mark.parametrize(
    ("data", "key", "allowed"),
    [
        (
            {"models": {"local": {"kind": "ollama"}}},
            "models.local.kind",
            "llamacpp, cerebras, openai",
        ),
        ({"routing": {"router": "neural"}}, "routing.router", "learned, heuristic"),
        (
            {"routing": {"fallback": {"mid_stream": "retry"}}},
            "routing.fallback.mid_stream",
            "continue, error",
        ),
        ({"routing": {"thinking": {"simple": "high"}}}, "routing.thinking.simple", "off, default"),
        (
            {"routing": {"model_routes": {"*haiku*": "laptop"}}},
            "routing.model_routes.*haiku*",
            "local, cerebras, strategy",
        ),
        (
            {"speculative_decoding": {"verify_start": "later"}},
            "speculative_decoding.verify_start",
            "concurrent, after_draft",
        ),
        (
            {"speculative_decoding": {"draft_model": "openai"}},
            "speculative_decoding.draft_model",
            "local, cerebras",
        ),
        ({"budget": {"on_exhausted": "wait"}}, "budget.on_exhausted", "local, reject"),
        ({"state": {"on_unavailable": "open"}}, "state.on_unavailable", "local, fail_closed"),
        ({"storage": {"log_level": "loud"}}, "storage.log_level", ", ".join(LOG_LEVELS)),
    ],
)
def test_a_value_outside_a_choice_names_the_key_and_the_choices(
    data: dict[str, Any], key: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="gw.yaml", env={})
    assert str(info.value).startswith(f"gw.yaml: {key}: must be one of {allowed}, got ")


@pytest.mark.parametrize("level", ["debug", "Warning", "ERROR"])
def test_log_level_is_case_insensitive(level: str) -> None:
    config = parse_config({"storage": {"log_level": level}}, env={})
    assert config.storage.log_level == level.upper()


def test_the_log_level_option_takes_the_same_names() -> None:
    assert build_parser().parse_args(["--log-level", "debug"]).log_level == "DEBUG"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--log-level", "loud"])


def test_a_field_the_schema_gives_no_reading_for_is_left_to_the_caller() -> None:
    @dataclass(frozen=True)
    class Unbounded:
        count: int = 1

    reader = Reader({"count": 5}, "section", "gw.yaml")
    with pytest.raises(TypeError, match="section.count"):
        reader.fields(Unbounded())
    assert reader.fields(Unbounded(), count=7) == Unbounded(7)
    assert reader.fields(Unbounded(), count=None) == Unbounded(1)  # None keeps the default
    with pytest.raises(TypeError, match="no field"):
        reader.fields(Unbounded(), count=7, cuont=8)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # Bounds are shown as the schema writes them: 0.0 and 1.0 here, 0 and 1 for a share.
        ({"routing": {"target_cloud_share": 2}}, "must be between 0.0 and 1.0, got 2.0"),
        ({"routing": {"learn": {"verify_sample": 2}}}, "must be between 0 and 1, got 2.0"),
        ({"budget": {"daily_usd": 0}}, "must be > 0 (or null for no limit)"),
        ({"server": {"port": 70000}}, "must be between 0 and 65535, got 70000"),
        ({"server": {"port": 80.5}}, "expected int, got float"),
        ({"server": {"workers": True}}, "expected an integer"),
    ],
)
def test_number_keys_keep_their_messages(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="gw.yaml", env={})
    assert str(info.value).endswith(message)
