"""Configuration: defaults, the original project's config unchanged, endpoints, ${VAR}, errors,
secrets."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from paths import REPO_ROOT as ROOT

from gateway.config import (
    AdaptiveConfig,
    ConfigError,
    GatewayConfig,
    Prices,
    RoutingConfig,
    ServerConfig,
    SpeculativeConfig,
    StorageConfig,
    Timeouts,
    expand_env,
    load_config,
    normalize_endpoint,
    parse_config,
)

SECRET = "csk-secret-9d8c7b6a5f4e"


# The config of the original GLM Token Saver README ("Configuration" section), verbatim but for
# the `...` of its keyword list: it must load unchanged (docs/configuration.md promises it).
SPEC_YAML = """\
models:
  local:
    enabled: true
    endpoint: "http://<your-local-api-server-ip>:41447/v1/chat/completions"
    model: "unsloth_GLM-4.7-Flash-GGUF_GLM-4.7-Flash-Q4_K_M"
  
  cerebras:
    enabled: true
    endpoint: "https://api.cerebras.ai/v1/chat/completions"
    api_key: "your-api-key"
    model: "zai-glm-4.7"

routing:
  strategy: "smart_routing"  # Options: smart_routing, smart_speculative, speculative_decoding, parallel_speculative, adaptive_cerebras, always_local, always_cerebras
  simple_task_threshold: 1000
  complexity_keywords: ["code", "debug", "architecture"]
  adaptive_cerebras:
    cool_down_duration: 60  # seconds
    rate_limit_threshold: 0.2  # 20% remaining

speculative_decoding:
  enabled: true
  draft_model: "local"
  verify_model: "cerebras"
  max_draft_tokens: 100      # Max tokens in draft before verification
  min_confidence: 0.7        # Similarity threshold (0.0-1.0)
  parallel_enabled: true     # Enable parallel speculative decoding
  max_concurrent_drafts: 3   # Maximum concurrent drafts
  draft_timeout: 5           # Timeout for draft generation (seconds)
"""  # noqa: E501, W291


def write(tmp_path: Path, text: str, name: str = "gateway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def models(section: dict[str, Any], env: dict[str, str] | None = None) -> GatewayConfig:
    return parse_config({"models": section}, env=env or {})


def test_defaults() -> None:
    cfg = parse_config(None, env={})
    assert cfg.source == "<config>"
    local, cerebras = cfg.local, cfg.cerebras
    assert set(cfg.models) == {"local", "cerebras"}
    assert (local.name, local.kind, local.enabled) == ("local", "llamacpp", True)
    assert local.endpoint == "http://127.0.0.1:41447/v1"
    assert local.chat_url == "http://127.0.0.1:41447/v1/chat/completions"
    assert local.api_key == ""
    assert local.prices == Prices(0.0, 0.0, 0.0)
    assert local.max_completion_tokens_cap is None
    assert (cerebras.name, cerebras.kind, cerebras.enabled) == ("cerebras", "cerebras", True)
    assert cerebras.endpoint == "https://api.cerebras.ai/v1"
    assert cerebras.model == "zai-glm-4.7"
    assert cerebras.api_key == ""
    assert cerebras.prices == Prices(2.25, 2.75, 2.25)
    assert cerebras.max_completion_tokens_cap == 8192
    assert local.timeouts == cerebras.timeouts == Timeouts(5.0, 120.0, 60.0)
    assert cfg.routing == RoutingConfig()
    assert cfg.routing.strategy == "smart_routing"
    assert cfg.routing.simple_task_threshold == 1000
    assert cfg.routing.complexity_keywords[:3] == ("code", "debug", "architecture")
    assert cfg.routing.adaptive_cerebras == AdaptiveConfig(60.0, 0.2)
    assert cfg.speculative_decoding == SpeculativeConfig()
    assert cfg.server == ServerConfig()
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 8000)
    assert cfg.storage == StorageConfig()


def test_load_config_none_is_the_defaults() -> None:
    cfg = load_config(None, env={})
    assert cfg.source == "<defaults>"
    assert cfg.models == parse_config(None, env={}).models


def test_default_cerebras_key_comes_from_the_env() -> None:
    assert parse_config(None, env={"CEREBRAS_API_KEY": SECRET}).cerebras.api_key == SECRET
    assert parse_config(None, env={"CEREBRAS_API_KEY": SECRET}).local.api_key == ""


def check_spec_config(cfg: GatewayConfig) -> None:
    local, cerebras = cfg.local, cfg.cerebras
    assert local.enabled is True
    assert local.kind == "llamacpp"
    assert local.endpoint == "http://<your-local-api-server-ip>:41447/v1"
    assert local.chat_url == "http://<your-local-api-server-ip>:41447/v1/chat/completions"
    assert local.model == "unsloth_GLM-4.7-Flash-GGUF_GLM-4.7-Flash-Q4_K_M"
    assert cerebras.enabled is True
    assert cerebras.kind == "cerebras"
    assert cerebras.endpoint == "https://api.cerebras.ai/v1"
    assert cerebras.model == "zai-glm-4.7"
    assert cerebras.max_completion_tokens_cap == 8192
    assert cfg.routing.strategy == "smart_routing"
    assert cfg.routing.simple_task_threshold == 1000
    assert cfg.routing.complexity_keywords == ("code", "debug", "architecture")
    assert cfg.routing.adaptive_cerebras == AdaptiveConfig(60.0, 0.2)
    assert cfg.speculative_decoding == SpeculativeConfig(
        enabled=True,
        draft_model="local",
        verify_model="cerebras",
        max_draft_tokens=100,
        min_confidence=0.7,
        parallel_enabled=True,
        max_concurrent_drafts=3,
        draft_timeout=5.0,
    )


def test_spec_config_parses_unchanged(tmp_path: Path) -> None:
    path = write(tmp_path, SPEC_YAML, "config.yaml")
    cfg = load_config(path, env={"CEREBRAS_API_KEY": SECRET})
    check_spec_config(cfg)
    assert cfg.source == str(path)
    assert cfg.cerebras.api_key == SECRET  # "your-api-key" is a placeholder
    assert cfg.raw == yaml.safe_load(SPEC_YAML)


def test_spec_config_without_env_key_has_no_key() -> None:
    cfg = parse_config(yaml.safe_load(SPEC_YAML), env={})
    check_spec_config(cfg)
    assert cfg.cerebras.api_key == ""


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://10.0.0.5:41447/v1",
        "http://10.0.0.5:41447/v1/",
        "http://10.0.0.5:41447/v1/chat/completions",
        "http://10.0.0.5:41447/v1/chat/completions/",
        "  http://10.0.0.5:41447/v1/chat/completions  ",
    ],
)
def test_endpoint_normalises_to_the_base(endpoint: str) -> None:
    assert normalize_endpoint(endpoint) == "http://10.0.0.5:41447/v1"
    local = models({"local": {"endpoint": endpoint}}).local
    assert local.endpoint == "http://10.0.0.5:41447/v1"
    assert local.chat_url == "http://10.0.0.5:41447/v1/chat/completions"


def test_https_endpoint_normalises_to_the_base() -> None:
    cfg = models({"cerebras": {"endpoint": "https://api.cerebras.ai/v1/chat/completions"}})
    assert cfg.cerebras.endpoint == "https://api.cerebras.ai/v1"


@pytest.mark.parametrize(
    "endpoint", ["127.0.0.1:41447/v1", "ftp://example.com/v1", "", "localhost", "/v1"]
)
def test_normalize_endpoint_rejects_non_http(endpoint: str) -> None:
    with pytest.raises(ValueError, match="http"):
        normalize_endpoint(endpoint)


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${HOST}", {"HOST": "gpu-box"}, "gpu-box"),
        ("${HOST}", {}, ""),
        ("${HOST:-127.0.0.1}", {}, "127.0.0.1"),
        ("${HOST:-127.0.0.1}", {"HOST": "gpu-box"}, "gpu-box"),
        ("${HOST:-}", {}, ""),
        ("http://${HOST}:${PORT:-41447}/v1", {"HOST": "h"}, "http://h:41447/v1"),
        ("$HOST", {"HOST": "h"}, "$HOST"),
        ("no refs", {"HOST": "h"}, "no refs"),
    ],
)
def test_expand_env_strings(text: str, env: dict[str, str], expected: str) -> None:
    assert expand_env(text, env) == expected


def test_expand_env_walks_lists_and_mappings_and_leaves_other_types() -> None:
    tree = {"a": ["${X}", {"b": "${Y:-y}"}], "n": 3, "f": 0.5, "t": True, "none": None}
    assert expand_env(tree, {"X": "x"}) == {
        "a": ["x", {"b": "y"}],
        "n": 3,
        "f": 0.5,
        "t": True,
        "none": None,
    }


def test_expand_env_default_applies_when_the_var_is_empty() -> None:
    assert expand_env("${HOST:-127.0.0.1}", {"HOST": ""}) == "127.0.0.1"


def test_env_expansion_in_model_sections() -> None:
    env = {"LLAMA_HOST": "10.1.2.3", "CEREBRAS_API_KEY": SECRET, "LOCAL_MODEL": "glm-flash"}
    cfg = models(
        {
            "local": {
                "endpoint": "http://${LLAMA_HOST}:${LLAMA_PORT:-41447}/v1/chat/completions",
                "model": "${LOCAL_MODEL}",
            },
            "cerebras": {"api_key": "${CEREBRAS_API_KEY}"},
        },
        env,
    )
    assert cfg.local.endpoint == "http://10.1.2.3:41447/v1"
    assert cfg.local.model == "glm-flash"
    assert cfg.cerebras.api_key == SECRET


@pytest.mark.parametrize("placeholder", ["", "your-api-key", "changeme", "  ", "${MISSING}"])
def test_cerebras_placeholder_key_falls_back_to_env(placeholder: str) -> None:
    env = {"CEREBRAS_API_KEY": SECRET}
    assert models({"cerebras": {"api_key": placeholder}}, env).cerebras.api_key == SECRET
    assert models({"cerebras": {"api_key": placeholder}}, {}).cerebras.api_key == ""


def test_literal_cerebras_key_is_kept() -> None:
    env = {"CEREBRAS_API_KEY": "other"}
    assert models({"cerebras": {"api_key": SECRET}}, env).cerebras.api_key == SECRET


def test_env_expansion_outside_models() -> None:
    cfg = parse_config(
        {
            "storage": {"ledger_path": "${DATA_DIR:-data}/ledger.db"},
            "server": {"host": "${GATEWAY_HOST:-127.0.0.1}"},
        },
        env={"DATA_DIR": "/var/lib/glm"},
    )
    assert cfg.storage.ledger_path == "/var/lib/glm/ledger.db"
    assert cfg.server.host == "127.0.0.1"


def test_overrides_are_read() -> None:
    cfg = parse_config(
        {
            "models": {
                "local": {"timeouts": {"first_token": 300}, "enabled": False},
                "cerebras": {"max_completion_tokens_cap": 2048, "prices": {"input_per_million": 1}},
            },
            "timeouts": {"connect": 2, "idle": 30},
            "routing": {
                "strategy": "always_local",
                "complexity_keywords": ["Code", "DEBUG"],
                "fallback": {"to_local": False},
            },
            "speculative_decoding": {"draft_timeout": 2.5},
            "server": {"port": 9000, "max_messages": 50},
            "storage": {"log_level": "debug"},
        },
        env={},
    )
    assert cfg.local.timeouts == Timeouts(connect=2.0, first_token=300.0, idle=30.0)
    assert cfg.cerebras.timeouts == Timeouts(connect=2.0, first_token=120.0, idle=30.0)
    assert cfg.local.enabled is False
    assert cfg.cerebras.max_completion_tokens_cap == 2048
    assert cfg.cerebras.prices == Prices(1.0, 0.0, 1.0)
    assert cfg.routing.strategy == "always_local"
    assert cfg.routing.complexity_keywords == ("code", "debug")
    assert (cfg.routing.fallback_to_local, cfg.routing.fallback_to_cerebras) == (False, True)
    assert cfg.speculative_decoding.draft_timeout == 2.5
    assert (cfg.server.port, cfg.server.max_messages) == (9000, 50)
    assert cfg.storage.log_level == "DEBUG"


def test_config_is_frozen() -> None:
    cfg = parse_config(None, env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.local.endpoint = "http://x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("routing:\n  simple_task_threshold: many\n", "routing.simple_task_threshold"),
        ("routing:\n  simple_task_threshold: true\n", "routing.simple_task_threshold"),
        ("routing:\n  simple_task_threshold: -1\n", "routing.simple_task_threshold"),
        (
            "routing:\n  adaptive_cerebras:\n    rate_limit_threshold: 1.5\n",
            "routing.adaptive_cerebras.rate_limit_threshold",
        ),
        (
            "routing:\n  adaptive_cerebras:\n    rate_limit_threshold: '20%'\n",
            "routing.adaptive_cerebras.rate_limit_threshold",
        ),
        ("routing:\n  complexity_keywords: code\n", "routing.complexity_keywords"),
        ("routing:\n  complexity_keywords: [code, 3]\n", "routing.complexity_keywords"),
        ("routing:\n  strategy: [a]\n", "routing.strategy"),
        ("speculative_decoding:\n  min_confidence: 7\n", "speculative_decoding.min_confidence"),
        ("speculative_decoding:\n  enabled: 'yes'\n", "speculative_decoding.enabled"),
        ("models:\n  openrouter:\n    model: x\n", "models.openrouter"),
        ("models:\n  local:\n    endpoint: '127.0.0.1:41447/v1'\n", "models.local.endpoint"),
        ("models:\n  cerebras:\n    endpoint: 'ftp://x/v1'\n", "models.cerebras.endpoint"),
        ("models:\n  local:\n    endpoint: 41447\n", "models.local.endpoint"),
        ("models:\n  local:\n    kind: ollama\n", "models.local.kind"),
        ("models:\n  local:\n    enabled: 'no'\n", "models.local.enabled"),
        ("models:\n  local: 'http://x'\n", "models.local"),
        ("models:\n  cerebras:\n    api_key: 12345\n", "models.cerebras.api_key"),
        (
            "models:\n  cerebras:\n    max_completion_tokens_cap: -1\n",
            "models.cerebras.max_completion_tokens_cap",
        ),
        (
            "models:\n  cerebras:\n    prices: {input_per_million: -1}\n",
            "models.cerebras.prices.input_per_million",
        ),
        ("timeouts:\n  connect: 0\n", "timeouts.connect"),
        ("models:\n  local:\n    timeouts: {idle: -5}\n", "models.local.timeouts.idle"),
        ("server:\n  port: 70000\n", "server.port"),
        ("server: 8000\n", "server"),
        ("- a\n- b\n", "top level"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert str(path) in message
    assert key in message


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  local: {endpoint: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(path) in str(info.value)
    assert "YAML" in str(info.value)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "gateway.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(path) in str(info.value)


def test_parse_config_error_names_the_source() -> None:
    with pytest.raises(ConfigError, match=r"^my\.yaml: routing\.simple_task_threshold: "):
        parse_config({"routing": {"simple_task_threshold": "x"}}, source="my.yaml", env={})


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "# nothing here\n"), env={})
    assert cfg.models == parse_config(None, env={}).models
    assert cfg.routing == RoutingConfig()


def test_shipped_config_loads_and_has_the_spec_keys() -> None:
    path = ROOT / "conf" / "gateway.yaml"
    cfg = load_config(path, env={"CEREBRAS_API_KEY": SECRET})
    raw = cfg.raw
    for name in ("local", "cerebras"):
        assert {"enabled", "endpoint", "model"} <= set(raw["models"][name])
    assert raw["models"]["cerebras"]["api_key"] == "${CEREBRAS_API_KEY}"  # no key in the file
    assert {"strategy", "simple_task_threshold", "complexity_keywords", "adaptive_cerebras"} <= set(
        raw["routing"]
    )
    assert {"cool_down_duration", "rate_limit_threshold"} <= set(
        raw["routing"]["adaptive_cerebras"]
    )
    assert set(raw["speculative_decoding"]) >= {
        "enabled",
        "draft_model",
        "verify_model",
        "max_draft_tokens",
        "min_confidence",
        "parallel_enabled",
        "max_concurrent_drafts",
        "draft_timeout",
    }
    assert cfg.local.endpoint == "http://127.0.0.1:41447/v1"
    assert cfg.local.model == "unsloth_GLM-4.7-Flash-GGUF_GLM-4.7-Flash-Q4_K_M"
    assert cfg.cerebras.endpoint == "https://api.cerebras.ai/v1"
    assert cfg.cerebras.model == "zai-glm-4.7"
    assert cfg.cerebras.api_key == SECRET
    assert cfg.cerebras.prices == Prices(2.25, 2.75, 2.25)
    assert cfg.routing.strategy == "smart_routing"
    assert cfg.routing.simple_task_threshold == 1000
    assert cfg.routing.adaptive_cerebras == AdaptiveConfig(60.0, 0.2)
    assert cfg.speculative_decoding.draft_timeout == 5.0


def test_shipped_config_without_env_key() -> None:
    cfg = load_config(ROOT / "conf" / "gateway.yaml", env={})
    assert cfg.cerebras.api_key == ""


def test_repr_never_shows_the_api_key(tmp_path: Path) -> None:
    literal = write(tmp_path, f"models:\n  cerebras:\n    api_key: {SECRET}\n")
    for cfg in (
        load_config(literal, env={}),
        parse_config(None, env={"CEREBRAS_API_KEY": SECRET}),
        load_config(ROOT / "conf" / "gateway.yaml", env={"CEREBRAS_API_KEY": SECRET}),
    ):
        assert cfg.cerebras.api_key == SECRET
        assert SECRET not in repr(cfg.cerebras)
        assert SECRET not in str(cfg.cerebras)
        assert SECRET not in repr(cfg)
        assert SECRET not in repr(dict(cfg.models))
        assert "zai-glm-4.7" in repr(cfg.cerebras)  # the repr is still useful


def test_completion_cap_zero_turns_it_off() -> None:
    from gateway.config import parse_config

    assert parse_config({}, env={}).cerebras.max_completion_tokens_cap == 8192
    config = parse_config({"models": {"cerebras": {"max_completion_tokens_cap": 0}}}, env={})
    assert config.cerebras.max_completion_tokens_cap is None
