"""Each section of the YAML turned into its dataclass, every value checked as it is read: the
schema's types read most keys (`Reader.fields`); here are the keys that need more (defaults per
upstream, environment variables, checks between keys, YAML quirks)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from gateway.config.reader import Reader, expand_env
from gateway.config.schema import (
    CHAT_COMPLETIONS_PATH,
    LOG_LEVELS,
    MID_STREAM_MODES,
    MODEL_ROUTES,
    THINKING_MODES,
    UPSTREAM_NAMES,
    AdaptiveConfig,
    AuthConfig,
    BudgetConfig,
    DoorsConfig,
    GatewayConfig,
    LimitsConfig,
    ModelConfig,
    ModelRoute,
    RateLimitsConfig,
    RoutingConfig,
    ServerConfig,
    SpeculativeConfig,
    StateConfig,
    StorageConfig,
    ThinkingConfig,
    ThinkingMode,
    Timeouts,
    UpstreamName,
)
from gateway.config.secrets import mask_url

_PLACEHOLDER_KEYS = {"", "your-api-key", "changeme"}


# Per-upstream defaults: what differs between the two upstreams. Everything else defaults in
# ModelConfig itself.
_MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "local": {
        "kind": "llamacpp",
        "enabled": True,
        "endpoint": "http://127.0.0.1:41447/v1",
        "model": "local-model",
    },
    "cerebras": {
        "kind": "cerebras",
        "enabled": True,
        "endpoint": "https://api.cerebras.ai/v1",
        "model": "zai-glm-4.7",
        "api_key": "${CEREBRAS_API_KEY:-}",
        "prices": {"input_per_million": 2.25, "output_per_million": 2.75},
        "max_completion_tokens_cap": 8192,
    },
}


def normalize_endpoint(url: str) -> str:
    """Accept a base URL or the full chat-completions URL; return the base (no trailing slash)."""
    url = url.strip().rstrip("/")
    if url.endswith(CHAT_COMPLETIONS_PATH):
        url = url[: -len(CHAT_COMPLETIONS_PATH)]
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {mask_url(url)!r}")
    return url


def _model(
    name: UpstreamName, r: Reader, env: Mapping[str, str], timeouts: Timeouts
) -> ModelConfig:
    defaults = _MODEL_DEFAULTS[name]
    r.data = expand_env({**defaults, **{k: v for k, v in r.data.items() if v is not None}}, env)
    try:
        endpoint = normalize_endpoint(r.get("endpoint", str) or "")
    except ValueError as exc:
        raise r.error("endpoint", str(exc)) from None
    api_key = r.get("api_key", str) or ""
    if api_key.strip() in _PLACEHOLDER_KEYS and name == "cerebras":
        api_key = env.get("CEREBRAS_API_KEY", "")
    kind = defaults["kind"]
    base = ModelConfig(name=name, kind=kind, enabled=True, endpoint="", model="", timeouts=timeouts)
    # `name` is the section's own name, not a key in it.
    model = r.fields(base, name=name, endpoint=endpoint, api_key=api_key.strip())
    # The cached price stated, so that `config check` shows what a cached token is billed at.
    prices = replace(model.prices, cached_input_per_million=model.prices.cached_rate)
    return replace(
        model, prices=prices, max_completion_tokens_cap=model.max_completion_tokens_cap or None
    )


def _auth(r: Reader, env: Mapping[str, str]) -> AuthConfig:
    """Keys from `auth.api_keys` plus the comma-separated `GATEWAY_API_KEYS` variable."""
    keys = [*(r.strings("api_keys", "strings") or ()), *env.get("GATEWAY_API_KEYS", "").split(",")]
    cleaned = tuple(dict.fromkeys(k.strip() for k in keys if k.strip()))
    if any(len(k) < 8 for k in cleaned):
        raise r.error("api_keys", "client keys must be at least 8 characters")
    return AuthConfig(api_keys=cleaned)


def _thinking_mode(r: Reader, key: str) -> ThinkingMode | None:
    value = r.raw(key)
    if value is None:
        return None
    if value is False:  # YAML 1.1 reads a bare `off` as false
        return "off"
    if value not in THINKING_MODES:
        shown = "on/yes/true" if value is True else repr(value)
        raise r.error(key, f"must be one of {', '.join(THINKING_MODES)}, got {shown}")
    return "off" if value == "off" else "default"


def _speculative(r: Reader) -> SpeculativeConfig:
    result = r.fields(SpeculativeConfig())
    if result.draft_model == result.verify_model:
        raise r.error("verify_model", "must differ from draft_model")
    return result


def _model_routes(r: Reader, key: str) -> tuple[tuple[str, ModelRoute], ...] | None:
    value = r.raw(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise r.error(key, "must map model-name patterns to local, cerebras or strategy")
    routes = []
    for pattern, route in value.items():
        if not isinstance(pattern, str) or not pattern:
            raise r.error(key, f"pattern {pattern!r} must be a non-empty string")
        routes.append((pattern, r.one_of(f"{key}.{pattern}", route, MODEL_ROUTES)))
    return tuple(routes)


def _routing(r: Reader) -> RoutingConfig:
    keywords = r.strings("complexity_keywords", "strings")
    fallback = r.section("fallback")
    # Before `thinking`, so that unknown keys are listed in the order they always were.
    adaptive = r.section("adaptive_cerebras").fields(AdaptiveConfig())
    thinking = r.section("thinking")
    return r.fields(
        RoutingConfig(),
        complexity_keywords=None if keywords is None else tuple(k.lower() for k in keywords),
        fallback_to_local=fallback.get("to_local", bool),
        fallback_to_cerebras=fallback.get("to_cerebras", bool),
        fallback_mid_stream=fallback.choice("mid_stream", MID_STREAM_MODES),
        client_strategies=r.strings("client_strategies", "strategy names"),
        adaptive_cerebras=adaptive,
        thinking=thinking.fields(
            ThinkingConfig(),
            simple=_thinking_mode(thinking, "simple"),
            complex=_thinking_mode(thinking, "complex"),
        ),
        model_routes=_model_routes(r, "model_routes"),
    )


def _rate_limits(r: Reader) -> RateLimitsConfig:
    names = r.strings("reactive_strategies", "strategy names")
    if names is not None and not all(names):
        raise r.error("reactive_strategies", "must be a list of strategy names")
    return r.fields(RateLimitsConfig(), reactive_strategies=names)


def _storage(r: Reader) -> StorageConfig:
    level = r.get("log_level", str)
    return r.fields(
        StorageConfig(),
        log_level=None if level is None else r.one_of("log_level", level.upper(), LOG_LEVELS),
    )


def _state(r: Reader, env: Mapping[str, str]) -> StateConfig:
    """`state.*`; `GATEWAY_REDIS_URL` overrides `state.redis_url`."""
    url = env.get("GATEWAY_REDIS_URL") or r.get("redis_url", str)
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise r.error("redis_url", "must start with redis://, rediss:// or unix://")
    return r.fields(StateConfig(), redis_url=url)


def read_config(
    top: Reader, env: Mapping[str, str], *, source: str, raw: Mapping[str, Any]
) -> GatewayConfig:
    """Every section of the config under `top` (the whole YAML, `${VAR}`s expanded)."""
    timeouts = top.section("timeouts").fields(Timeouts())
    models_r = top.section("models")
    models = {name: _model(name, models_r.section(name), env, timeouts) for name in UPSTREAM_NAMES}
    return GatewayConfig(
        models=models,
        routing=_routing(top.section("routing")),
        speculative_decoding=_speculative(top.section("speculative_decoding")),
        server=top.section("server").fields(ServerConfig()),
        storage=_storage(top.section("storage")),
        auth=_auth(top.section("auth"), env),
        limits=top.section("limits").fields(LimitsConfig()),
        rate_limits=_rate_limits(top.section("rate_limits")),
        budget=top.section("budget").fields(BudgetConfig()),
        state=_state(top.section("state"), env),
        doors=top.section("doors").fields(DoorsConfig()),
        source=source,
        raw=raw,
    )
