"""Client keys, concurrency limits and /metrics, through a real gateway on 127.0.0.1."""

from __future__ import annotations

from gateway.config import parse_config


async def test_keys_from_environment_variable() -> None:
    config = parse_config(
        {"auth": {"api_keys": ["from-config-key-1"]}},
        env={"GATEWAY_API_KEYS": " env-key-00001 , env-key-00002,"},
    )
    assert config.auth.api_keys == ("from-config-key-1", "env-key-00001", "env-key-00002")
    assert "env-key" not in repr(config)
