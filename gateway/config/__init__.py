"""Configuration: parsed once from YAML into frozen dataclasses, validated naming the key.

The original GLM Token Saver keys (`models.local`, `models.cerebras`, `routing`,
`speculative_decoding`) keep their meaning, so a config written for the original project loads
unchanged (tests/unit/config/test_config.py keeps one verbatim); new keys sit beside them.
Strings of the form `${VAR}` or `${VAR:-default}` are replaced from the environment; the Cerebras
key falls back to `CEREBRAS_API_KEY` when the config leaves it empty.

The package, by job: `schema` (the dataclasses, their defaults and the allowed values of each
choice), `reader` (`${VAR}` expansion and typed reads naming the key path), `sections` (each YAML
section into its dataclass), `load` (the whole pass: unknown keys refused, names cross-checked,
files read), `secrets` (finding and masking the secrets a config holds) and `paths` (the default
config file). Every public name is importable from `gateway.config` itself.

This package is the ground of the package graph: it imports nothing from the gateway. Names that
packages above define (strategies, verdict scorers) are passed in as `KnownNames` by the caller
that loads the config (gateway.strategies.known_names()).
"""

from gateway.config.load import check_names, cross_check, load_config, parse_config
from gateway.config.paths import DEFAULT_CONFIG_PATH, command_parser, config_path
from gateway.config.reader import ConfigError, expand_env
from gateway.config.schema import (
    BUDGET_ACTIONS,
    CHAT_COMPLETIONS_PATH,
    DEFAULT_MODEL_ROUTES,
    LOG_LEVELS,
    MID_STREAM_MODES,
    MODEL_KINDS,
    MODEL_ROUTES,
    ROUTER_KINDS,
    STATE_ON_UNAVAILABLE,
    THINKING_MODES,
    UPSTREAM_NAMES,
    VERIFY_STARTS,
    AdaptiveConfig,
    AnthropicDoorConfig,
    AuthConfig,
    BudgetAction,
    BudgetConfig,
    DoorsConfig,
    EscalationConfig,
    GatewayConfig,
    KnownNames,
    LearnConfig,
    LimitsConfig,
    LogLevel,
    MidStreamMode,
    ModelConfig,
    ModelKind,
    ModelRoute,
    PlanLimits,
    Prices,
    RateLimitsConfig,
    RouterKind,
    RoutingConfig,
    ServerConfig,
    SpeculativeConfig,
    StateConfig,
    StateFallback,
    StorageConfig,
    ThinkingConfig,
    ThinkingMode,
    Timeouts,
    UpstreamName,
    VerifyStart,
)
from gateway.config.secrets import MIN_REDACTED_SECRET, URL_MASK, mask_url, redact, url_passwords
from gateway.config.sections import normalize_endpoint

__all__ = [
    "AdaptiveConfig",
    "AnthropicDoorConfig",
    "AuthConfig",
    "BUDGET_ACTIONS",
    "BudgetAction",
    "BudgetConfig",
    "CHAT_COMPLETIONS_PATH",
    "ConfigError",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_MODEL_ROUTES",
    "DoorsConfig",
    "EscalationConfig",
    "GatewayConfig",
    "KnownNames",
    "LOG_LEVELS",
    "LearnConfig",
    "LimitsConfig",
    "LogLevel",
    "MID_STREAM_MODES",
    "MIN_REDACTED_SECRET",
    "MODEL_KINDS",
    "MODEL_ROUTES",
    "MidStreamMode",
    "ModelConfig",
    "ModelKind",
    "ModelRoute",
    "PlanLimits",
    "Prices",
    "ROUTER_KINDS",
    "RateLimitsConfig",
    "RouterKind",
    "RoutingConfig",
    "STATE_ON_UNAVAILABLE",
    "ServerConfig",
    "SpeculativeConfig",
    "StateConfig",
    "StateFallback",
    "StorageConfig",
    "THINKING_MODES",
    "ThinkingConfig",
    "ThinkingMode",
    "Timeouts",
    "UPSTREAM_NAMES",
    "URL_MASK",
    "command_parser",
    "UpstreamName",
    "VERIFY_STARTS",
    "VerifyStart",
    "config_path",
    "check_names",
    "cross_check",
    "expand_env",
    "load_config",
    "mask_url",
    "normalize_endpoint",
    "parse_config",
    "redact",
    "url_passwords",
]
