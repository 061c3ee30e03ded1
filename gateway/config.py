"""Configuration: parsed once from YAML into frozen dataclasses, validated naming the key.

The spec's keys (`models.local`, `models.cerebras`, `routing`, `speculative_decoding`) keep their
meaning, so a config written for the spec works unchanged; new keys sit beside them. Strings of the
form `${VAR}` or `${VAR:-default}` are replaced from the environment; the Cerebras key falls back to
`CEREBRAS_API_KEY` when the config leaves it empty.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from .records import UPSTREAM_NAMES, UpstreamName
from .verdict import SCORER_NAMES

CHAT_COMPLETIONS_PATH = "/chat/completions"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PLACEHOLDER_KEYS = {"", "your-api-key", "changeme"}
VERIFY_STARTS = ("concurrent", "after_draft")
ROUTER_KINDS = ("learned", "heuristic")
DEFAULT_ROUTER = "heuristic"


class ConfigError(ValueError):
    """A config value is missing or wrong; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `first_token`: wait for the first streamed event; `idle`: each gap after it."""

    connect: float = 5.0
    first_token: float = 120.0
    idle: float = 60.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise ValueError(f"{f.name} must be > 0")


@dataclass(frozen=True, slots=True)
class Prices:
    """US dollars per million tokens."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million
        ) / 1_000_000


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One upstream. `endpoint` is the base URL (ending in /v1); `api_key` is never logged."""

    name: str
    kind: str
    enabled: bool
    endpoint: str
    model: str
    api_key: str = field(default="", repr=False)
    timeouts: Timeouts = Timeouts()
    prices: Prices = Prices()
    max_completion_tokens_cap: int | None = None

    @property
    def chat_url(self) -> str:
        return self.endpoint + CHAT_COMPLETIONS_PATH


@dataclass(frozen=True, slots=True)
class AdaptiveConfig:
    cool_down_duration: float = 60.0
    rate_limit_threshold: float = 0.2


@dataclass(frozen=True, slots=True)
class PlanLimits:
    """An upstream's quota as its plan states it; None = unknown (headers alone tell)."""

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    requests_per_day: float | None = None


@dataclass(frozen=True, slots=True)
class RateLimitsConfig:
    """Predictive admission (gateway.ratelimit). `reactive_strategies` skip the prediction."""

    reactive_strategies: tuple[str, ...] = ("always_cerebras",)
    cerebras: PlanLimits = PlanLimits()


BUDGET_ACTIONS = ("local", "reject")


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """Cerebras spend limits in US dollars per UTC day / month; None = no limit."""

    daily_usd: float | None = None
    monthly_usd: float | None = None
    on_exhausted: str = "local"


_DEFAULT_KEYWORDS: tuple[str, ...] = (
    "code",
    "debug",
    "architecture",
    "refactor",
    "implement",
    "optimize",
    "algorithm",
    "analyze",
    "design",
    "prove",
)


# `off`: send the upstream's own "do not think" parameter; `default`: send nothing (GLM 4.7 thinks
# by default on both upstreams). No effort levels: neither upstream documents one for GLM 4.7.
THINKING_MODES = ("off", "default")
ThinkingMode = Literal["off", "default"]


@dataclass(frozen=True, slots=True)
class ThinkingConfig:
    """`routing.thinking`: the thinking mode per route kind that a classifying strategy set."""

    simple: ThinkingMode = "off"
    complex: ThinkingMode = "default"


@dataclass(frozen=True, slots=True)
class EscalationConfig:
    """`routing.escalation` (gateway.router.escalation): after a failed local turn, the
    conversation's next `turns` requests go to Cerebras (None: until the task ends). State is
    kept for `max_conversations` conversations, each for `ttl_seconds` after its last turn."""

    enabled: bool = True
    turns: int | None = None
    max_conversations: int = 10_000
    ttl_seconds: float = 86_400.0


@dataclass(frozen=True, slots=True)
class LearnConfig:
    """`routing.learn`: labels from outcomes. `agent_loop`: learn from agent-loop signals;
    `agent_loop_ok_weight`: weight of the "good" label for a local turn the next request shows
    no failure for (0: none); `verify_sample`: share (0..1) of local answers also asked of
    Cerebras afterwards and compared (gateway.router.verify); 0 never calls Cerebras."""

    agent_loop: bool = True
    agent_loop_ok_weight: float = 0.2
    verify_sample: float = 0.0


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    strategy: str = "smart_routing"
    simple_task_threshold: int = 1000
    complexity_keywords: tuple[str, ...] = _DEFAULT_KEYWORDS
    fallback_to_local: bool = True
    fallback_to_cerebras: bool = True
    # After content reached the client: `continue` on the other upstream (assistant prefill),
    # or `error` (one error event, the stream ends).
    fallback_mid_stream: str = "continue"
    # Strategies a client may pick per request (model name or x-gateway-strategy); None = all.
    client_strategies: tuple[str, ...] | None = None
    adaptive_cerebras: AdaptiveConfig = AdaptiveConfig()
    thinking: ThinkingConfig = ThinkingConfig()
    # gateway.router: `learned` (logistic model) or `heuristic` (keyword/length classifier).
    router: str = "heuristic"
    # Share of requests to send to Cerebras (0..1); None = the scorer's own threshold.
    target_cloud_share: float | None = None
    escalation: EscalationConfig = EscalationConfig()
    learn: LearnConfig = LearnConfig()


@dataclass(frozen=True, slots=True)
class SpeculativeConfig:
    """The spec's keys, then the verdict's own (see gateway.speculation and gateway.verdict).

    `verify_start`: concurrent | after_draft. `scorer`: a name in gateway.verdict.SCORERS.
    Probabilities (`logprob_min_*`) are token probabilities in 0..1, not log-probabilities.
    `cost_skip_ratio`: skip speculation when the prompt's share of a full Cerebras answer's
    cost (answer of `expected_answer_tokens`) is above it; 1.0 never skips.
    `announce_after`: seconds before the role chunk goes out if no upstream has accepted the
    request yet; failures before that still reach the client as real HTTP statuses.
    """

    enabled: bool = True
    draft_model: UpstreamName = "local"
    verify_model: UpstreamName = "cerebras"
    max_draft_tokens: int = 100
    min_confidence: float = 0.7
    parallel_enabled: bool = True
    max_concurrent_drafts: int = 3
    draft_timeout: float = 5.0
    verify_start: str = "concurrent"
    scorer: str = "levenshtein"
    accept_short_drafts: bool = True
    tool_call_min_similarity: float = 0.9
    logprob_signal: bool = False
    logprob_min_mean: float = 0.8
    logprob_min_low: float = 0.3
    logprob_low_quantile: float = 0.1
    cost_skip_ratio: float = 0.9
    expected_answer_tokens: int = 500
    announce_after: float = 0.25
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 10 * 1024 * 1024
    max_messages: int = 10_000
    max_event_bytes: int = 8 * 1024 * 1024
    shutdown_grace_seconds: float = 30.0
    workers: int = 1


STATE_ON_UNAVAILABLE = ("local", "fail_closed")


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Shared state (gateway.state). No `redis_url`: this process's memory only.

    `on_unavailable` while Redis cannot answer: `local` admits Cerebras calls on this replica's
    own state; `fail_closed` refuses Cerebras (requests are served by the local model)."""

    redis_url: str = field(default="", repr=False)
    timeout_ms: float = 50.0
    on_unavailable: str = "local"
    reservation_ttl_s: float = 120.0
    key_prefix: str = "glm"
    replica_id: str = ""


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Client keys; empty means no authentication (fine on loopback only)."""

    api_keys: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Concurrent chat requests in flight, overall and per client key (0 = unlimited)."""

    max_concurrent_requests: int = 512
    max_concurrent_per_key: int = 0


@dataclass(frozen=True, slots=True)
class StorageConfig:
    ledger_path: str = "data/ledger.db"
    log_path: str = "logs/api_server.log"
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 5
    log_level: str = "INFO"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    models: Mapping[UpstreamName, ModelConfig]
    routing: RoutingConfig = RoutingConfig()
    speculative_decoding: SpeculativeConfig = SpeculativeConfig()
    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    rate_limits: RateLimitsConfig = RateLimitsConfig()
    budget: BudgetConfig = BudgetConfig()
    state: StateConfig = StateConfig()
    source: str = "<defaults>"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def local(self) -> ModelConfig:
        return self.models["local"]

    @property
    def cerebras(self) -> ModelConfig:
        return self.models["cerebras"]

    def with_overrides(self, **changes: Any) -> GatewayConfig:
        return replace(self, **changes)


_MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "local": {
        "kind": "llamacpp",
        "enabled": True,
        "endpoint": "http://127.0.0.1:41447/v1",
        "model": "local-model",
        "prices": {"input_per_million": 0.0, "output_per_million": 0.0},
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


def expand_env(value: Any, env: Mapping[str, str]) -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string of a parsed YAML tree."""
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: _env_value(env, m.group(1), m.group(2)), value)
    if isinstance(value, dict):
        return {k: expand_env(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env) for v in value]
    return value


def _env_value(env: Mapping[str, str], name: str, default: str | None) -> str:
    """`${VAR:-default}` as in the shell: the default also applies when VAR is set but empty."""
    value = env.get(name, "")
    if default is not None and not value:
        return default
    return value


def normalize_endpoint(url: str) -> str:
    """Accept a base URL or the full chat-completions URL; return the base (no trailing slash)."""
    url = url.strip().rstrip("/")
    if url.endswith(CHAT_COMPLETIONS_PATH):
        url = url[: -len(CHAT_COMPLETIONS_PATH)]
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url!r}")
    return url


class _Reader:
    """Typed access into one YAML mapping, raising ConfigError that names file and key path."""

    def __init__(self, data: Mapping[str, Any], path: str, source: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: {path or 'top level'} must be a mapping")
        self.data = data
        self.path = path
        self.source = source

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, why: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self._key(key)}: {why}")

    def section(self, key: str) -> _Reader:
        value = self.data.get(key)
        return _Reader(value if value is not None else {}, self._key(key), self.source)

    def get(self, key: str, kind: type, default: Any) -> Any:
        value = self.data.get(key, default)
        if value is None:
            return default
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, bool):
            raise self.error(key, "expected an integer")
        if not isinstance(value, kind):
            raise self.error(key, f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    def number(self, key: str, default: float, *, low: float, high: float) -> float:
        value = self.get(key, float, default)
        if not low <= value <= high:
            raise self.error(key, f"must be between {low} and {high}, got {value}")
        return float(value)

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        value = self.get(key, int, default)
        if not low <= value <= high:
            raise self.error(key, f"must be between {low} and {high}, got {value}")
        return int(value)


def _timeouts(r: _Reader, base: Timeouts) -> Timeouts:
    return Timeouts(
        connect=r.number("connect", base.connect, low=0.001, high=3600),
        first_token=r.number("first_token", base.first_token, low=0.001, high=86400),
        idle=r.number("idle", base.idle, low=0.001, high=86400),
    )


def _model(name: str, r: _Reader, env: Mapping[str, str], timeouts: Timeouts) -> ModelConfig:
    defaults = _MODEL_DEFAULTS.get(name, _MODEL_DEFAULTS["local"])
    merged = {**defaults, **{k: v for k, v in r.data.items() if v is not None}}
    m = _Reader(expand_env(merged, env), r.path, r.source)
    try:
        endpoint = normalize_endpoint(m.get("endpoint", str, ""))
    except ValueError as exc:
        raise m.error("endpoint", str(exc)) from None
    kind = m.get("kind", str, defaults["kind"])
    if kind not in ("llamacpp", "cerebras", "openai"):
        raise m.error("kind", "must be llamacpp, cerebras or openai")
    api_key = m.get("api_key", str, "")
    if api_key.strip() in _PLACEHOLDER_KEYS and name == "cerebras":
        api_key = env.get("CEREBRAS_API_KEY", "")
    price_reader = m.section("prices")
    cap = m.data.get("max_completion_tokens_cap")
    if cap is not None:
        # 0 turns the cap off (null would mean "the default", like every other key).
        cap = m.integer("max_completion_tokens_cap", 8192, low=0, high=10_000_000) or None
    return ModelConfig(
        name=name,
        kind=kind,
        enabled=m.get("enabled", bool, True),
        endpoint=endpoint,
        model=m.get("model", str, ""),
        api_key=api_key.strip(),
        timeouts=_timeouts(m.section("timeouts"), timeouts),
        prices=Prices(
            input_per_million=price_reader.number("input_per_million", 0.0, low=0, high=1e6),
            output_per_million=price_reader.number("output_per_million", 0.0, low=0, high=1e6),
        ),
        max_completion_tokens_cap=cap,
    )


def _client_strategies(r: _Reader) -> tuple[str, ...] | None:
    names = r.data.get("client_strategies")
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise r.error("client_strategies", "must be a list of strategy names")
    return tuple(names)


def _auth(r: _Reader, env: Mapping[str, str]) -> AuthConfig:
    """Keys from `auth.api_keys` plus the comma-separated `GATEWAY_API_KEYS` variable."""
    keys = r.get("api_keys", list, [])
    if not all(isinstance(k, str) for k in keys):
        raise r.error("api_keys", "must be a list of strings")
    keys = [*keys, *env.get("GATEWAY_API_KEYS", "").split(",")]
    cleaned = tuple(dict.fromkeys(k.strip() for k in keys if k.strip()))
    if any(len(k) < 8 for k in cleaned):
        raise r.error("api_keys", "client keys must be at least 8 characters")
    return AuthConfig(api_keys=cleaned)


MID_STREAM_MODES = ("continue", "error")


def _choice(r: _Reader, key: str, default: str, allowed: tuple[str, ...]) -> str:
    value: str = r.get(key, str, default)
    if value not in allowed:
        raise r.error(key, f"must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _thinking_mode(r: _Reader, key: str, default: ThinkingMode) -> ThinkingMode:
    value = r.data.get(key)
    if value is None:
        return default
    if value is False:  # YAML 1.1 reads a bare `off` as false
        return "off"
    if value not in THINKING_MODES:
        shown = "on/yes/true" if value is True else repr(value)
        raise r.error(key, f"must be one of {', '.join(THINKING_MODES)}, got {shown}")
    return "off" if value == "off" else "default"


def _thinking(r: _Reader) -> ThinkingConfig:
    for key in r.data:
        if key not in ("simple", "complex"):
            raise r.error(str(key), "unknown route kind (expected simple or complex)")
    return ThinkingConfig(
        simple=_thinking_mode(r, "simple", "off"),
        complex=_thinking_mode(r, "complex", "default"),
    )


def _speculative(r: _Reader) -> SpeculativeConfig:
    known = {f.name for f in fields(SpeculativeConfig)} - {"extra"}
    draft = _choice(r, "draft_model", "local", UPSTREAM_NAMES)
    verify = _choice(r, "verify_model", "cerebras", UPSTREAM_NAMES)
    if draft == verify:
        raise r.error("verify_model", "must differ from draft_model")
    return SpeculativeConfig(
        enabled=r.get("enabled", bool, True),
        draft_model="local" if draft == "local" else "cerebras",
        verify_model="local" if verify == "local" else "cerebras",
        max_draft_tokens=r.integer("max_draft_tokens", 100, low=1, high=1_000_000),
        min_confidence=r.number("min_confidence", 0.7, low=0, high=1),
        parallel_enabled=r.get("parallel_enabled", bool, True),
        max_concurrent_drafts=r.integer("max_concurrent_drafts", 3, low=1, high=64),
        draft_timeout=r.number("draft_timeout", 5.0, low=0.001, high=3600),
        verify_start=_choice(r, "verify_start", "concurrent", VERIFY_STARTS),
        scorer=_choice(r, "scorer", "levenshtein", (*SCORER_NAMES, "learned")),
        accept_short_drafts=r.get("accept_short_drafts", bool, True),
        tool_call_min_similarity=r.number("tool_call_min_similarity", 0.9, low=0, high=1),
        logprob_signal=r.get("logprob_signal", bool, False),
        logprob_min_mean=r.number("logprob_min_mean", 0.8, low=0, high=1),
        logprob_min_low=r.number("logprob_min_low", 0.3, low=0, high=1),
        logprob_low_quantile=r.number("logprob_low_quantile", 0.1, low=0, high=1),
        cost_skip_ratio=r.number("cost_skip_ratio", 0.9, low=0, high=1),
        expected_answer_tokens=r.integer("expected_answer_tokens", 500, low=1, high=10_000_000),
        announce_after=r.number("announce_after", 0.25, low=0, high=60),
        extra={k: v for k, v in r.data.items() if k not in known},
    )


def _escalation(r: _Reader) -> EscalationConfig:
    turns = r.data.get("turns")
    return EscalationConfig(
        enabled=r.get("enabled", bool, True),
        turns=None if turns is None else r.integer("turns", 1, low=1, high=1_000_000),
        max_conversations=r.integer("max_conversations", 10_000, low=1, high=10_000_000),
        ttl_seconds=r.number("ttl_seconds", 86_400.0, low=1, high=365 * 86_400),
    )


def _learn(r: _Reader) -> LearnConfig:
    return LearnConfig(
        agent_loop=r.get("agent_loop", bool, True),
        agent_loop_ok_weight=r.number("agent_loop_ok_weight", 0.2, low=0, high=1),
        verify_sample=r.number("verify_sample", 0.0, low=0, high=1),
    )


def _optional_share(r: _Reader, key: str) -> float | None:
    if r.data.get(key) is None:
        return None
    return r.number(key, 0.0, low=0.0, high=1.0)


def _optional_amount(r: _Reader, key: str) -> float | None:
    if r.data.get(key) is None:
        return None
    value = r.number(key, 0.0, low=0.0, high=1e12)
    if value <= 0:
        raise r.error(key, "must be > 0 (or null for no limit)")
    return value


def _rate_limits(r: _Reader) -> RateLimitsConfig:
    names = r.get("reactive_strategies", list, ["always_cerebras"])
    if not all(isinstance(n, str) and n for n in names):
        raise r.error("reactive_strategies", "must be a list of strategy names")
    plan = r.section("cerebras")
    return RateLimitsConfig(
        reactive_strategies=tuple(names),
        cerebras=PlanLimits(
            requests_per_minute=_optional_amount(plan, "requests_per_minute"),
            tokens_per_minute=_optional_amount(plan, "tokens_per_minute"),
            requests_per_day=_optional_amount(plan, "requests_per_day"),
        ),
    )


def _budget(r: _Reader) -> BudgetConfig:
    action = r.get("on_exhausted", str, "local")
    if action not in BUDGET_ACTIONS:
        raise r.error("on_exhausted", f"must be one of {', '.join(BUDGET_ACTIONS)}")
    return BudgetConfig(
        daily_usd=_optional_amount(r, "daily_usd"),
        monthly_usd=_optional_amount(r, "monthly_usd"),
        on_exhausted=action,
    )


def _state(r: _Reader, env: Mapping[str, str]) -> StateConfig:
    """`state.*`; `GATEWAY_REDIS_URL` overrides `state.redis_url`."""
    url = env.get("GATEWAY_REDIS_URL") or r.get("redis_url", str, "")
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise r.error("redis_url", "must start with redis://, rediss:// or unix://")
    return StateConfig(
        redis_url=url,
        timeout_ms=r.number("timeout_ms", 50.0, low=1, high=60_000),
        on_unavailable=_choice(r, "on_unavailable", "local", STATE_ON_UNAVAILABLE),
        reservation_ttl_s=r.number("reservation_ttl_s", 120.0, low=1, high=86_400),
        key_prefix=r.get("key_prefix", str, "glm"),
        replica_id=r.get("replica_id", str, ""),
    )


def parse_config(
    data: Mapping[str, Any] | None,
    *,
    source: str = "<config>",
    env: Mapping[str, str] | None = None,
) -> GatewayConfig:
    """Build a validated GatewayConfig from parsed YAML (None means all defaults)."""
    env = os.environ if env is None else env
    top = _Reader(expand_env(data or {}, env), "", source)
    timeouts = _timeouts(top.section("timeouts"), Timeouts())
    models_r = top.section("models")
    models = {name: _model(name, models_r.section(name), env, timeouts) for name in UPSTREAM_NAMES}
    for extra in models_r.data:
        if extra not in UPSTREAM_NAMES:
            raise models_r.error(str(extra), "unknown upstream (expected local or cerebras)")

    rr = top.section("routing")
    ar = rr.section("adaptive_cerebras")
    keywords = rr.get("complexity_keywords", list, list(_DEFAULT_KEYWORDS))
    if not all(isinstance(k, str) for k in keywords):
        raise rr.error("complexity_keywords", "must be a list of strings")
    fallback = rr.section("fallback")
    routing = RoutingConfig(
        strategy=rr.get("strategy", str, "smart_routing"),
        simple_task_threshold=rr.integer("simple_task_threshold", 1000, low=0, high=10_000_000),
        complexity_keywords=tuple(k.lower() for k in keywords),
        fallback_to_local=fallback.get("to_local", bool, True),
        fallback_to_cerebras=fallback.get("to_cerebras", bool, True),
        fallback_mid_stream=_choice(fallback, "mid_stream", "continue", MID_STREAM_MODES),
        client_strategies=_client_strategies(rr),
        adaptive_cerebras=AdaptiveConfig(
            cool_down_duration=ar.number("cool_down_duration", 60.0, low=0, high=86400),
            rate_limit_threshold=ar.number("rate_limit_threshold", 0.2, low=0, high=1),
        ),
        thinking=_thinking(rr.section("thinking")),
        router=_choice(rr, "router", DEFAULT_ROUTER, ROUTER_KINDS),
        target_cloud_share=_optional_share(rr, "target_cloud_share"),
        escalation=_escalation(rr.section("escalation")),
        learn=_learn(rr.section("learn")),
    )

    speculative = _speculative(top.section("speculative_decoding"))

    vr = top.section("server")
    server = ServerConfig(
        host=vr.get("host", str, "127.0.0.1"),
        port=vr.integer("port", 8000, low=0, high=65535),
        max_body_bytes=vr.integer("max_body_bytes", 10 * 1024 * 1024, low=1024, high=2**31),
        max_messages=vr.integer("max_messages", 10_000, low=1, high=10_000_000),
        max_event_bytes=vr.integer("max_event_bytes", 8 * 1024 * 1024, low=1024, high=2**31),
        shutdown_grace_seconds=vr.number("shutdown_grace_seconds", 30.0, low=0, high=3600),
        workers=vr.integer("workers", 1, low=1, high=256),
    )
    auth = _auth(top.section("auth"), env)
    lr = top.section("limits")
    limits = LimitsConfig(
        max_concurrent_requests=lr.integer("max_concurrent_requests", 512, low=0, high=10**6),
        max_concurrent_per_key=lr.integer("max_concurrent_per_key", 0, low=0, high=10**6),
    )
    st = top.section("storage")
    storage = StorageConfig(
        ledger_path=st.get("ledger_path", str, "data/ledger.db"),
        log_path=st.get("log_path", str, "logs/api_server.log"),
        log_max_bytes=st.integer("log_max_bytes", 10 * 1024 * 1024, low=1024, high=2**40),
        log_backups=st.integer("log_backups", 5, low=0, high=1000),
        log_level=st.get("log_level", str, "INFO").upper(),
    )
    return GatewayConfig(
        models=models,
        routing=routing,
        speculative_decoding=speculative,
        server=server,
        storage=storage,
        auth=auth,
        limits=limits,
        rate_limits=_rate_limits(top.section("rate_limits")),
        budget=_budget(top.section("budget")),
        state=_state(top.section("state"), env),
        source=source,
        raw=dict(data or {}),
    )


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read and validate a YAML config file; None gives the built-in defaults."""
    if path is None:
        return parse_config(None, source="<defaults>", env=env)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from None
    return parse_config(data, source=str(p), env=env)
