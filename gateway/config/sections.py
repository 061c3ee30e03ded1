"""Each section of the YAML turned into its dataclass, every value checked as it is read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from gateway.config.reader import Reader, expand_env, fill
from gateway.config.schema import (
    BUDGET_ACTIONS,
    CHAT_COMPLETIONS_PATH,
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
    BudgetConfig,
    DoorsConfig,
    EscalationConfig,
    GatewayConfig,
    LearnConfig,
    LimitsConfig,
    ModelConfig,
    ModelRoute,
    PlanLimits,
    Prices,
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


def _timeouts(r: Reader, base: Timeouts) -> Timeouts:
    result: Timeouts = fill(
        base,
        connect=r.number("connect", low=0.001, high=3600),
        first_token=r.number("first_token", low=0.001, high=86400),
        idle=r.number("idle", low=0.001, high=86400),
    )
    return result


def _prices(r: Reader) -> Prices:
    result: Prices = fill(
        Prices(),
        input_per_million=r.number("input_per_million", low=0, high=1e6),
        output_per_million=r.number("output_per_million", low=0, high=1e6),
        cached_input_per_million=r.number("cached_input_per_million", low=0, high=1e6),
    )
    # Stated, so that `config check` shows the price a cached token is billed at.
    return replace(result, cached_input_per_million=result.cached_rate)


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
    model = ModelConfig(
        name=name,
        kind=r.choice("kind", MODEL_KINDS) or defaults["kind"],
        enabled=r.get("enabled", bool),
        endpoint=endpoint,
        model=r.get("model", str) or "",
        api_key=api_key.strip(),
        timeouts=_timeouts(r.section("timeouts"), timeouts),
        prices=_prices(r.section("prices")),
    )
    cap = r.integer("max_completion_tokens_cap", low=0, high=10_000_000)
    # 0 turns the cap off (null would mean "the default", like every other key).
    return replace(model, max_completion_tokens_cap=cap or None)


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


def _thinking(r: Reader) -> ThinkingConfig:
    result: ThinkingConfig = fill(
        ThinkingConfig(), simple=_thinking_mode(r, "simple"), complex=_thinking_mode(r, "complex")
    )
    return result


def _speculative(r: Reader) -> SpeculativeConfig:
    base = SpeculativeConfig()
    draft = r.choice("draft_model", UPSTREAM_NAMES) or base.draft_model
    verify = r.choice("verify_model", UPSTREAM_NAMES) or base.verify_model
    if draft == verify:
        raise r.error("verify_model", "must differ from draft_model")
    result: SpeculativeConfig = fill(
        base,
        enabled=r.get("enabled", bool),
        draft_model=draft,
        verify_model=verify,
        max_draft_tokens=r.integer("max_draft_tokens", low=1, high=1_000_000),
        min_confidence=r.number("min_confidence", low=0, high=1),
        parallel_enabled=r.get("parallel_enabled", bool),
        max_concurrent_drafts=r.integer("max_concurrent_drafts", low=1, high=64),
        draft_timeout=r.number("draft_timeout", low=0.001, high=3600),
        verify_start=r.choice("verify_start", VERIFY_STARTS),
        scorer=r.get("scorer", str),
        accept_short_drafts=r.get("accept_short_drafts", bool),
        tool_call_min_similarity=r.number("tool_call_min_similarity", low=0, high=1),
        logprob_signal=r.get("logprob_signal", bool),
        logprob_min_mean=r.number("logprob_min_mean", low=0, high=1),
        logprob_min_low=r.number("logprob_min_low", low=0, high=1),
        logprob_low_quantile=r.number("logprob_low_quantile", low=0, high=1),
        cost_skip_ratio=r.number("cost_skip_ratio", low=0, high=1),
        expected_answer_tokens=r.integer("expected_answer_tokens", low=1, high=10_000_000),
        announce_after=r.number("announce_after", low=0, high=60),
    )
    return result


def _escalation(r: Reader) -> EscalationConfig:
    result: EscalationConfig = fill(
        EscalationConfig(),
        enabled=r.get("enabled", bool),
        turns=r.integer("turns", low=1, high=1_000_000),
        max_conversations=r.integer("max_conversations", low=1, high=10_000_000),
        ttl_seconds=r.number("ttl_seconds", low=1, high=365 * 86_400),
        max_turns=r.integer("max_turns", low=1, high=10_000_000),
        fingerprint_cache=r.integer("fingerprint_cache", low=1, high=1_000_000),
    )
    return result


def _learn(r: Reader) -> LearnConfig:
    result: LearnConfig = fill(
        LearnConfig(),
        agent_loop=r.get("agent_loop", bool),
        agent_loop_ok_weight=r.number("agent_loop_ok_weight", low=0, high=1),
        verify_sample=r.number("verify_sample", low=0, high=1),
        remember_requests=r.integer("remember_requests", low=1, high=10_000_000),
        remember_bytes=r.integer("remember_bytes", low=64 * 1024, high=2**40),
        max_labels=r.integer("max_labels", low=1, high=100_000_000),
        label_ttl_seconds=r.number("label_ttl_seconds", low=1, high=10 * 365 * 86_400),
    )
    return result


def _amount(r: Reader, key: str) -> float | None:
    """A positive limit; null (or absent) means no limit."""
    value = r.number(key, low=0.0, high=1e12)
    if value is not None and value <= 0:
        raise r.error(key, "must be > 0 (or null for no limit)")
    return value


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
    ar = r.section("adaptive_cerebras")
    result: RoutingConfig = fill(
        RoutingConfig(),
        strategy=r.get("strategy", str),
        simple_task_threshold=r.integer("simple_task_threshold", low=0, high=10_000_000),
        complexity_keywords=None if keywords is None else tuple(k.lower() for k in keywords),
        fallback_to_local=fallback.get("to_local", bool),
        fallback_to_cerebras=fallback.get("to_cerebras", bool),
        fallback_mid_stream=fallback.choice("mid_stream", MID_STREAM_MODES),
        client_strategies=r.strings("client_strategies", "strategy names"),
        adaptive_cerebras=fill(
            AdaptiveConfig(),
            cool_down_duration=ar.number("cool_down_duration", low=0, high=86400),
            rate_limit_threshold=ar.number("rate_limit_threshold", low=0, high=1),
        ),
        thinking=_thinking(r.section("thinking")),
        router=r.choice("router", ROUTER_KINDS),
        target_cloud_share=r.number("target_cloud_share", low=0.0, high=1.0),
        judge_draft=r.get("judge_draft", bool),
        escalation=_escalation(r.section("escalation")),
        learn=_learn(r.section("learn")),
        model_routes=_model_routes(r, "model_routes"),
    )
    return result


def _rate_limits(r: Reader) -> RateLimitsConfig:
    names = r.strings("reactive_strategies", "strategy names")
    if names is not None and not all(names):
        raise r.error("reactive_strategies", "must be a list of strategy names")
    plan = r.section("cerebras")
    result: RateLimitsConfig = fill(
        RateLimitsConfig(),
        reactive_strategies=names,
        cerebras=PlanLimits(
            requests_per_minute=_amount(plan, "requests_per_minute"),
            tokens_per_minute=_amount(plan, "tokens_per_minute"),
            requests_per_day=_amount(plan, "requests_per_day"),
        ),
    )
    return result


def _budget(r: Reader) -> BudgetConfig:
    result: BudgetConfig = fill(
        BudgetConfig(),
        daily_usd=_amount(r, "daily_usd"),
        monthly_usd=_amount(r, "monthly_usd"),
        on_exhausted=r.choice("on_exhausted", BUDGET_ACTIONS),
    )
    return result


def _server(r: Reader) -> ServerConfig:
    result: ServerConfig = fill(
        ServerConfig(),
        host=r.get("host", str),
        port=r.integer("port", low=0, high=65535),
        max_body_bytes=r.integer("max_body_bytes", low=1024, high=2**31),
        max_messages=r.integer("max_messages", low=1, high=10_000_000),
        max_event_bytes=r.integer("max_event_bytes", low=1024, high=2**31),
        shutdown_grace_seconds=r.number("shutdown_grace_seconds", low=0, high=3600),
        workers=r.integer("workers", low=1, high=256),
    )
    return result


def _limits(r: Reader) -> LimitsConfig:
    result: LimitsConfig = fill(
        LimitsConfig(),
        max_concurrent_requests=r.integer("max_concurrent_requests", low=0, high=10**6),
        max_concurrent_per_key=r.integer("max_concurrent_per_key", low=0, high=10**6),
    )
    return result


def _storage(r: Reader) -> StorageConfig:
    level = r.get("log_level", str)
    result: StorageConfig = fill(
        StorageConfig(),
        ledger_path=r.get("ledger_path", str),
        log_path=r.get("log_path", str),
        log_max_bytes=r.integer("log_max_bytes", low=1024, high=2**40),
        log_backups=r.integer("log_backups", low=0, high=1000),
        log_level=None if level is None else r.one_of("log_level", level.upper(), LOG_LEVELS),
    )
    return result


def _doors(r: Reader) -> DoorsConfig:
    anthropic = r.section("anthropic")
    return DoorsConfig(
        anthropic=fill(
            AnthropicDoorConfig(),
            strip_billing_header=anthropic.get("strip_billing_header", bool),
        )
    )


def _state(r: Reader, env: Mapping[str, str]) -> StateConfig:
    """`state.*`; `GATEWAY_REDIS_URL` overrides `state.redis_url`."""
    url = env.get("GATEWAY_REDIS_URL") or r.get("redis_url", str)
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise r.error("redis_url", "must start with redis://, rediss:// or unix://")
    result: StateConfig = fill(
        StateConfig(),
        redis_url=url,
        timeout_ms=r.number("timeout_ms", low=1, high=60_000),
        on_unavailable=r.choice("on_unavailable", STATE_ON_UNAVAILABLE),
        reservation_ttl_s=r.number("reservation_ttl_s", low=1, high=86_400),
        key_prefix=r.get("key_prefix", str),
        replica_id=r.get("replica_id", str),
    )
    return result


def read_config(
    top: Reader, env: Mapping[str, str], *, source: str, raw: Mapping[str, Any]
) -> GatewayConfig:
    """Every section of the config under `top` (the whole YAML, `${VAR}`s expanded)."""
    timeouts = _timeouts(top.section("timeouts"), Timeouts())
    models_r = top.section("models")
    models = {name: _model(name, models_r.section(name), env, timeouts) for name in UPSTREAM_NAMES}
    return GatewayConfig(
        models=models,
        routing=_routing(top.section("routing")),
        speculative_decoding=_speculative(top.section("speculative_decoding")),
        server=_server(top.section("server")),
        storage=_storage(top.section("storage")),
        auth=_auth(top.section("auth"), env),
        limits=_limits(top.section("limits")),
        rate_limits=_rate_limits(top.section("rate_limits")),
        budget=_budget(top.section("budget")),
        state=_state(top.section("state"), env),
        doors=_doors(top.section("doors")),
        source=source,
        raw=raw,
    )
