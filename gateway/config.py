"""Configuration: parsed once from YAML into frozen dataclasses, validated naming the key.

The original GLM Token Saver keys (`models.local`, `models.cerebras`, `routing`,
`speculative_decoding`) keep their meaning, so a config written for the original project loads
unchanged (tests/unit/config/test_config.py keeps one verbatim); new keys sit beside them.
Strings of the form `${VAR}` or `${VAR:-default}` are replaced from the environment; the Cerebras
key falls back to `CEREBRAS_API_KEY` when the config leaves it empty.

This module is the ground of the package graph: it imports nothing from the gateway. Names that
packages above define (strategies, verdict scorers) are passed in as `KnownNames` by the caller
that loads the config (gateway.strategies.known_names()).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml

CHAT_COMPLETIONS_PATH = "/chat/completions"
# The file the commands read when no --config is given and it exists (see `config_path`).
DEFAULT_CONFIG_PATH = Path("conf/gateway.yaml")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PLACEHOLDER_KEYS = {"", "your-api-key", "changeme"}

# The two upstreams, by the names used in config keys, records and the ledger.
UpstreamName = Literal["local", "cerebras"]
UPSTREAM_NAMES: tuple[UpstreamName, ...] = get_args(UpstreamName)
ModelKind = Literal["llamacpp", "cerebras", "openai"]
MODEL_KINDS: tuple[ModelKind, ...] = get_args(ModelKind)
VerifyStart = Literal["concurrent", "after_draft"]
VERIFY_STARTS: tuple[VerifyStart, ...] = get_args(VerifyStart)
RouterKind = Literal["learned", "heuristic"]
ROUTER_KINDS: tuple[RouterKind, ...] = get_args(RouterKind)
MidStreamMode = Literal["continue", "error"]
MID_STREAM_MODES: tuple[MidStreamMode, ...] = get_args(MidStreamMode)
BudgetAction = Literal["local", "reject"]
BUDGET_ACTIONS: tuple[BudgetAction, ...] = get_args(BudgetAction)
StateFallback = Literal["local", "fail_closed"]
STATE_ON_UNAVAILABLE: tuple[StateFallback, ...] = get_args(StateFallback)
_Choice = TypeVar("_Choice", bound=str)


class ConfigError(ValueError):
    """A config value is missing or wrong; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class KnownNames:
    """The names a config may give that packages above this one define: the registered
    strategies (`routing.strategy`, `routing.client_strategies`,
    `rate_limits.reactive_strategies`) and the verdict's scorers (`speculative_decoding.scorer`).
    """

    strategies: tuple[str, ...]
    scorers: tuple[str, ...]


def config_path(given: str | Path | None) -> Path | None:
    """The config file a command reads: `given`, else DEFAULT_CONFIG_PATH when it exists, else
    None (the built-in defaults)."""
    if given is not None:
        return Path(given)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


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
    """US dollars per million tokens, applied by gateway.accounting.bill and only there.

    `cached_input_per_million` prices the prompt tokens an upstream reports as served from its
    cache; None: the input price."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0
    cached_input_per_million: float | None = None

    @property
    def cached_rate(self) -> float:
        """The price of a cached prompt token, per million."""
        cached = self.cached_input_per_million
        return self.input_per_million if cached is None else cached


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One upstream. `endpoint` is the base URL (ending in /v1); `api_key` is never logged."""

    name: UpstreamName
    kind: ModelKind
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
    """Predictive admission (gateway.quota.gate). `reactive_strategies` skip the prediction."""

    reactive_strategies: tuple[str, ...] = ("always_cerebras",)
    cerebras: PlanLimits = PlanLimits()


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """Cerebras spend limits in US dollars per UTC day / month; None = no limit."""

    daily_usd: float | None = None
    monthly_usd: float | None = None
    on_exhausted: BudgetAction = "local"


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
ThinkingMode = Literal["off", "default"]
THINKING_MODES: tuple[ThinkingMode, ...] = get_args(ThinkingMode)


@dataclass(frozen=True, slots=True)
class ThinkingConfig:
    """`routing.thinking`: the thinking mode per route kind that a classifying strategy set."""

    simple: ThinkingMode = "off"
    complex: ThinkingMode = "default"


@dataclass(frozen=True, slots=True)
class EscalationConfig:
    """`routing.escalation` (gateway.router.escalation): after a failed local turn, the
    conversation's next `turns` requests go to Cerebras (None: until the task ends). State is
    kept for `max_conversations` conversations, each for `ttl_seconds` after its last turn, in
    memory and in learning.db. `max_turns`: answers remembered (in memory and learning.db rows)
    so that feedback and agent-loop labels can find them. `fingerprint_cache`: system prompts
    whose hash is cached, keyed by a digest (gateway.router.conversation)."""

    enabled: bool = True
    turns: int | None = None
    max_conversations: int = 10_000
    ttl_seconds: float = 86_400.0
    max_turns: int = 20_000
    fingerprint_cache: int = 1024


@dataclass(frozen=True, slots=True)
class LearnConfig:
    """`routing.learn`: labels from outcomes. `agent_loop`: learn from agent-loop signals;
    `agent_loop_ok_weight`: weight of the "good" label for a local turn the next request shows
    no failure for (0: none); `verify_sample`: share (0..1) of local answers also asked of
    Cerebras afterwards and compared (gateway.speculation.verify_sample); 0 never calls
    Cerebras.
    `remember_requests` / `remember_bytes`: requests whose router features are kept for a later
    label, at most that many and that many bytes in memory (router.db keeps as many rows).
    `max_labels`: label rows kept in learning.db and in router.db (the newest), each deleted
    `label_ttl_seconds` after it was written."""

    agent_loop: bool = True
    agent_loop_ok_weight: float = 0.2
    verify_sample: float = 0.0
    remember_requests: int = 5_000
    remember_bytes: int = 16 * 1024 * 1024
    max_labels: int = 100_000
    label_ttl_seconds: float = 90 * 86_400.0


# `routing.model_routes` values: an upstream (served by always_local / always_cerebras, the other
# one still a fallback), or `strategy` (the strategy's own choice).
MODEL_ROUTES = ("local", "cerebras", "strategy")
# Claude Code's haiku-tier calls are background work (titles, summaries): local by default, under
# smart_routing only (a configured map applies under any default strategy).
DEFAULT_MODEL_ROUTES: tuple[tuple[str, str], ...] = (("*haiku*", "local"),)


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    strategy: str = "smart_routing"
    simple_task_threshold: int = 1000
    complexity_keywords: tuple[str, ...] = _DEFAULT_KEYWORDS
    fallback_to_local: bool = True
    fallback_to_cerebras: bool = True
    # After content reached the client: `continue` on the other upstream (assistant prefill),
    # or `error` (one error event, the stream ends).
    fallback_mid_stream: MidStreamMode = "continue"
    # Strategies a client may pick per request (model name or x-gateway-strategy); None = all.
    client_strategies: tuple[str, ...] | None = None
    adaptive_cerebras: AdaptiveConfig = AdaptiveConfig()
    thinking: ThinkingConfig = ThinkingConfig()
    # gateway.router: `learned` (logistic model) or `heuristic` (keyword/length classifier).
    router: RouterKind = "heuristic"
    # Share of requests to send to Cerebras (0..1) under either router; None = its own rule.
    target_cloud_share: float | None = None
    # smart_routing only: an ask routed local is drafted for `max_draft_tokens` and the learned
    # draft scorer accepts the draft or escalates it to Cerebras (the draft withheld); the
    # target share then applies to those escalations, not to the ask routing.
    judge_draft: bool = False
    escalation: EscalationConfig = EscalationConfig()
    learn: LearnConfig = LearnConfig()
    # Model-name patterns (shell globs, case-insensitive) -> a route in MODEL_ROUTES, first match
    # wins; None: DEFAULT_MODEL_ROUTES under smart_routing. Never overrides a strategy the
    # client named (x-gateway-strategy or a model `glm-token-saver/<strategy>`).
    model_routes: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True, slots=True)
class SpeculativeConfig:
    """The original project's keys (`enabled` .. `draft_timeout`), then the verdict's own (see
    gateway.speculation and gateway.speculation.verdict).

    `verify_start`: concurrent | after_draft. `scorer`: a name in
    gateway.speculation.engine.SCORER_CHOICES (checked by `cross_check`). Probabilities
    (`logprob_min_*`) are token probabilities in 0..1, not log-probabilities.
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
    verify_start: VerifyStart = "concurrent"
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


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 10 * 1024 * 1024
    max_messages: int = 10_000
    max_event_bytes: int = 8 * 1024 * 1024
    shutdown_grace_seconds: float = 30.0
    workers: int = 1


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Shared state (gateway.state). No `redis_url`: this process's memory only.

    `on_unavailable` while Redis cannot answer: `local` admits Cerebras calls on this replica's
    own state; `fail_closed` refuses Cerebras (requests are served by the local model)."""

    redis_url: str = field(default="", repr=False)
    timeout_ms: float = 50.0
    on_unavailable: StateFallback = "local"
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
class AnthropicDoorConfig:
    """`doors.anthropic` (gateway.doors.anthropic). `strip_billing_header`: drop Claude Code's
    per-prompt billing line (`x-anthropic-billing-header: cc_version=...;`) from the start of the
    system prompt, so that the upstreams' prefix caches can reuse the rest of it."""

    strip_billing_header: bool = True


@dataclass(frozen=True, slots=True)
class DoorsConfig:
    """`doors`: settings of the client protocols other than chat completions."""

    anthropic: AnthropicDoorConfig = AnthropicDoorConfig()


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
    doors: DoorsConfig = DoorsConfig()
    source: str = "<defaults>"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def local(self) -> ModelConfig:
        return self.models["local"]

    @property
    def cerebras(self) -> ModelConfig:
        return self.models["cerebras"]

    def secrets(self) -> list[str]:
        """Every secret this config holds, for redaction: the upstreams' API keys, the client
        keys and the passwords inside its URLs (the upstreams' endpoints, `state.redis_url`)."""
        found = [m.api_key for m in self.models.values()] + list(self.auth.api_keys)
        for url in [m.endpoint for m in self.models.values()] + [self.state.redis_url]:
            found += url_passwords(url)
        return list(dict.fromkeys(secret for secret in found if secret))


URL_MASK = "***"
# Query parameters that carry a password (redis-py reads `?password=` from redis and unix URLs).
_PASSWORD_PARAMS = frozenset({"password"})
# The password of a URL's user info, for URLs urlsplit cannot parse.
_USERINFO_PASSWORD = re.compile(r"(//[^/?#@:]*:)([^/?#@]*)@")


def url_passwords(url: str) -> list[str]:
    """The passwords written in `url` (user info and `password=` query parameters), as written
    and percent-decoded."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:  # unparseable (a stray '['): the user info's password, if any
        written = [m.group(2) for m in _USERINFO_PASSWORD.finditer(url)]
    else:
        query = parse_qsl(parts.query, keep_blank_values=True)
        written = [parts.password or ""]
        written += [value for key, value in query if key in _PASSWORD_PARAMS]
    found = []
    for password in written:
        found += [password, unquote(password)]
    return list(dict.fromkeys(p for p in found if p))


# Shorter secrets are not searched for in shown text: they would mask ordinary words.
MIN_REDACTED_SECRET = 4


def redact(value: Any, secrets: Iterable[str], mask: str) -> Any:
    """`value` (a string, or dicts and lists of them, keys included) with every secret of
    MIN_REDACTED_SECRET characters or more replaced by `mask`, the longest first."""
    keys = sorted({s for s in secrets if len(s) >= MIN_REDACTED_SECRET}, key=len, reverse=True)
    return _redact(value, keys, mask)


def _redact(value: Any, keys: list[str], mask: str) -> Any:
    if isinstance(value, str):
        for key in keys:
            value = value.replace(key, mask)
        return value
    if isinstance(value, dict):
        return {_redact(k, keys, mask): _redact(v, keys, mask) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v, keys, mask) for v in value]
    return value


def mask_url(url: str) -> str:
    """`url` for showing: each password in it (see url_passwords) replaced by URL_MASK."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unparseable (a stray '['): mask whatever follows a user name's ':'
        return _USERINFO_PASSWORD.sub(lambda m: f"{m.group(1)}{URL_MASK}@", url)
    if not url_passwords(url):
        return url
    netloc = parts.netloc
    if parts.password:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{URL_MASK}@{host}"
    # Other parameters stay exactly as written.
    query = "&".join(
        f"{key}={URL_MASK}" if unquote(key) in _PASSWORD_PARAMS else piece
        for piece in parts.query.split("&")
        for key in [piece.partition("=")[0]]
    )
    # Rebuilt by hand: urlunsplit drops the empty authority of unix:///path URLs.
    masked = f"{parts.scheme}://{netloc}{parts.path}"
    masked += f"?{query}" if query else ""
    return masked + (f"#{parts.fragment}" if parts.fragment else "")


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
        raise ValueError(f"not an http(s) URL: {mask_url(url)!r}")
    return url


class _Reader:
    """Typed access into one YAML mapping (a closed record), raising ConfigError that names file
    and key path. Every key asked for is remembered, so `unknown_keys` can refuse the rest.

    Reading methods return None when the key is absent or null: the caller then keeps the
    dataclass's own default, so each default is written once, in its dataclass.
    """

    def __init__(
        self, data: Any, path: str, source: str, readers: list[_Reader] | None = None
    ) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: {path or 'top level'} must be a mapping")
        self.data: Mapping[str, Any] = data
        self.path = path
        self.source = source
        self.asked: set[str] = set()
        self.readers = [] if readers is None else readers
        self.readers.append(self)

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, why: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self._key(key)}: {why}")

    def raw(self, key: str) -> Any:
        """The value as written (None when absent), marking the key as known."""
        self.asked.add(key)
        return self.data.get(key)

    def section(self, key: str) -> _Reader:
        value = self.raw(key)
        data = value if value is not None else {}
        return _Reader(data, self._key(key), self.source, self.readers)

    def get(self, key: str, kind: type) -> Any:
        value = self.raw(key)
        if value is None:
            return None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, bool):
            raise self.error(key, "expected an integer")
        if not isinstance(value, kind):
            raise self.error(key, f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    def number(self, key: str, *, low: float, high: float) -> float | None:
        value = self.get(key, float)
        if value is not None and not low <= value <= high:
            raise self.error(key, f"must be between {low} and {high}, got {value}")
        return None if value is None else float(value)

    def integer(self, key: str, *, low: int, high: int) -> int | None:
        value = self.get(key, int)
        if value is not None and not low <= value <= high:
            raise self.error(key, f"must be between {low} and {high}, got {value}")
        return None if value is None else int(value)

    def choice(self, key: str, allowed: tuple[_Choice, ...]) -> _Choice | None:
        value: str | None = self.get(key, str)
        if value is None:
            return None
        for option in allowed:
            if value == option:
                return option
        raise self.error(key, f"must be one of {', '.join(allowed)}, got {value!r}")

    def strings(self, key: str, what: str) -> tuple[str, ...] | None:
        value = self.get(key, list)
        if value is None:
            return None
        if not all(isinstance(v, str) for v in value):
            raise self.error(key, f"must be a list of {what}")
        return tuple(value)

    def unknown_keys(self) -> list[str]:
        """One message per key never asked for, with the closest known key when one is close."""
        messages = []
        for key in self.data:
            if key in self.asked:
                continue
            message = f"{self.source}: {self._key(str(key))}: unknown key"
            close = difflib.get_close_matches(str(key), sorted(self.asked), n=1, cutoff=0.6)
            if close:
                message += f"; did you mean {self._key(close[0])}?"
            messages.append(message)
        return messages


def _fill(base: Any, **values: Any) -> Any:
    """`base` with the values that were given (None = not given: keep base's default)."""
    return replace(base, **{k: v for k, v in values.items() if v is not None})


def _timeouts(r: _Reader, base: Timeouts) -> Timeouts:
    result: Timeouts = _fill(
        base,
        connect=r.number("connect", low=0.001, high=3600),
        first_token=r.number("first_token", low=0.001, high=86400),
        idle=r.number("idle", low=0.001, high=86400),
    )
    return result


def _prices(r: _Reader) -> Prices:
    result: Prices = _fill(
        Prices(),
        input_per_million=r.number("input_per_million", low=0, high=1e6),
        output_per_million=r.number("output_per_million", low=0, high=1e6),
        cached_input_per_million=r.number("cached_input_per_million", low=0, high=1e6),
    )
    # Stated, so that `config check` shows the price a cached token is billed at.
    return replace(result, cached_input_per_million=result.cached_rate)


def _model(
    name: UpstreamName, r: _Reader, env: Mapping[str, str], timeouts: Timeouts
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


def _auth(r: _Reader, env: Mapping[str, str]) -> AuthConfig:
    """Keys from `auth.api_keys` plus the comma-separated `GATEWAY_API_KEYS` variable."""
    keys = [*(r.strings("api_keys", "strings") or ()), *env.get("GATEWAY_API_KEYS", "").split(",")]
    cleaned = tuple(dict.fromkeys(k.strip() for k in keys if k.strip()))
    if any(len(k) < 8 for k in cleaned):
        raise r.error("api_keys", "client keys must be at least 8 characters")
    return AuthConfig(api_keys=cleaned)


def _thinking_mode(r: _Reader, key: str) -> ThinkingMode | None:
    value = r.raw(key)
    if value is None:
        return None
    if value is False:  # YAML 1.1 reads a bare `off` as false
        return "off"
    if value not in THINKING_MODES:
        shown = "on/yes/true" if value is True else repr(value)
        raise r.error(key, f"must be one of {', '.join(THINKING_MODES)}, got {shown}")
    return "off" if value == "off" else "default"


def _thinking(r: _Reader) -> ThinkingConfig:
    result: ThinkingConfig = _fill(
        ThinkingConfig(), simple=_thinking_mode(r, "simple"), complex=_thinking_mode(r, "complex")
    )
    return result


def _speculative(r: _Reader) -> SpeculativeConfig:
    base = SpeculativeConfig()
    draft = r.choice("draft_model", UPSTREAM_NAMES) or base.draft_model
    verify = r.choice("verify_model", UPSTREAM_NAMES) or base.verify_model
    if draft == verify:
        raise r.error("verify_model", "must differ from draft_model")
    result: SpeculativeConfig = _fill(
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


def _escalation(r: _Reader) -> EscalationConfig:
    result: EscalationConfig = _fill(
        EscalationConfig(),
        enabled=r.get("enabled", bool),
        turns=r.integer("turns", low=1, high=1_000_000),
        max_conversations=r.integer("max_conversations", low=1, high=10_000_000),
        ttl_seconds=r.number("ttl_seconds", low=1, high=365 * 86_400),
        max_turns=r.integer("max_turns", low=1, high=10_000_000),
        fingerprint_cache=r.integer("fingerprint_cache", low=1, high=1_000_000),
    )
    return result


def _learn(r: _Reader) -> LearnConfig:
    result: LearnConfig = _fill(
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


def _amount(r: _Reader, key: str) -> float | None:
    """A positive limit; null (or absent) means no limit."""
    value = r.number(key, low=0.0, high=1e12)
    if value is not None and value <= 0:
        raise r.error(key, "must be > 0 (or null for no limit)")
    return value


def _model_routes(r: _Reader, key: str) -> tuple[tuple[str, str], ...] | None:
    value = r.raw(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise r.error(key, "must map model-name patterns to local, cerebras or strategy")
    routes = []
    for pattern, route in value.items():
        if not isinstance(pattern, str) or not pattern:
            raise r.error(key, f"pattern {pattern!r} must be a non-empty string")
        if route not in MODEL_ROUTES:
            raise r.error(
                f"{key}.{pattern}", f"must be one of {', '.join(MODEL_ROUTES)}, got {route!r}"
            )
        routes.append((pattern, str(route)))
    return tuple(routes)


def _routing(r: _Reader) -> RoutingConfig:
    keywords = r.strings("complexity_keywords", "strings")
    fallback = r.section("fallback")
    ar = r.section("adaptive_cerebras")
    result: RoutingConfig = _fill(
        RoutingConfig(),
        strategy=r.get("strategy", str),
        simple_task_threshold=r.integer("simple_task_threshold", low=0, high=10_000_000),
        complexity_keywords=None if keywords is None else tuple(k.lower() for k in keywords),
        fallback_to_local=fallback.get("to_local", bool),
        fallback_to_cerebras=fallback.get("to_cerebras", bool),
        fallback_mid_stream=fallback.choice("mid_stream", MID_STREAM_MODES),
        client_strategies=r.strings("client_strategies", "strategy names"),
        adaptive_cerebras=_fill(
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


def _rate_limits(r: _Reader) -> RateLimitsConfig:
    names = r.strings("reactive_strategies", "strategy names")
    if names is not None and not all(names):
        raise r.error("reactive_strategies", "must be a list of strategy names")
    plan = r.section("cerebras")
    result: RateLimitsConfig = _fill(
        RateLimitsConfig(),
        reactive_strategies=names,
        cerebras=PlanLimits(
            requests_per_minute=_amount(plan, "requests_per_minute"),
            tokens_per_minute=_amount(plan, "tokens_per_minute"),
            requests_per_day=_amount(plan, "requests_per_day"),
        ),
    )
    return result


def _budget(r: _Reader) -> BudgetConfig:
    result: BudgetConfig = _fill(
        BudgetConfig(),
        daily_usd=_amount(r, "daily_usd"),
        monthly_usd=_amount(r, "monthly_usd"),
        on_exhausted=r.choice("on_exhausted", BUDGET_ACTIONS),
    )
    return result


def _server(r: _Reader) -> ServerConfig:
    result: ServerConfig = _fill(
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


def _limits(r: _Reader) -> LimitsConfig:
    result: LimitsConfig = _fill(
        LimitsConfig(),
        max_concurrent_requests=r.integer("max_concurrent_requests", low=0, high=10**6),
        max_concurrent_per_key=r.integer("max_concurrent_per_key", low=0, high=10**6),
    )
    return result


def _storage(r: _Reader) -> StorageConfig:
    level = r.get("log_level", str)
    result: StorageConfig = _fill(
        StorageConfig(),
        ledger_path=r.get("ledger_path", str),
        log_path=r.get("log_path", str),
        log_max_bytes=r.integer("log_max_bytes", low=1024, high=2**40),
        log_backups=r.integer("log_backups", low=0, high=1000),
        log_level=None if level is None else level.upper(),
    )
    return result


def _doors(r: _Reader) -> DoorsConfig:
    anthropic = r.section("anthropic")
    return DoorsConfig(
        anthropic=_fill(
            AnthropicDoorConfig(),
            strip_billing_header=anthropic.get("strip_billing_header", bool),
        )
    )


def cross_check(config: GatewayConfig, names: KnownNames) -> None:
    """Checks between keys and against the given strategy and scorer names; raise ConfigError
    naming the key.

    parse_config runs it when given the names; create_app runs it again for configs changed
    after parsing (--strategy).
    """
    scorer = config.speculative_decoding.scorer
    if scorer not in names.scorers:
        raise ConfigError(
            f"{config.source}: speculative_decoding.scorer: must be one of "
            f"{', '.join(names.scorers)}, got {scorer!r}"
        )
    known = sorted(names.strategies)
    reactive = config.rate_limits.reactive_strategies
    named = [("routing.strategy", config.routing.strategy)]
    named += [("routing.client_strategies", n) for n in config.routing.client_strategies or ()]
    named += [("rate_limits.reactive_strategies", n) for n in reactive]
    for key, name in named:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{config.source}: {key}: unknown strategy {name!r}{hint} "
                f"(available: {', '.join(known)})"
            )


def _state(r: _Reader, env: Mapping[str, str]) -> StateConfig:
    """`state.*`; `GATEWAY_REDIS_URL` overrides `state.redis_url`."""
    url = env.get("GATEWAY_REDIS_URL") or r.get("redis_url", str)
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise r.error("redis_url", "must start with redis://, rediss:// or unix://")
    result: StateConfig = _fill(
        StateConfig(),
        redis_url=url,
        timeout_ms=r.number("timeout_ms", low=1, high=60_000),
        on_unavailable=r.choice("on_unavailable", STATE_ON_UNAVAILABLE),
        reservation_ttl_s=r.number("reservation_ttl_s", low=1, high=86_400),
        key_prefix=r.get("key_prefix", str),
        replica_id=r.get("replica_id", str),
    )
    return result


def parse_config(
    data: Mapping[str, Any] | None,
    *,
    source: str = "<config>",
    env: Mapping[str, str] | None = None,
    names: KnownNames | None = None,
) -> GatewayConfig:
    """Build a validated GatewayConfig from parsed YAML (None means all defaults).

    One pass: types and bounds while reading, then every key never read is refused (naming the
    closest known one), then, given `names`, the names the config gives (`cross_check`; without
    them the caller runs it, as create_app does). Raises ConfigError naming file and key path.
    """
    env = os.environ if env is None else env
    top = _Reader(expand_env(data or {}, env), "", source)
    timeouts = _timeouts(top.section("timeouts"), Timeouts())
    models_r = top.section("models")
    models = {name: _model(name, models_r.section(name), env, timeouts) for name in UPSTREAM_NAMES}
    config = GatewayConfig(
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
        raw=dict(data or {}),
    )
    unknown = [message for reader in top.readers for message in reader.unknown_keys()]
    if unknown:
        raise ConfigError("\n".join(unknown))
    if names is not None:
        cross_check(config, names)
    return config


def load_config(
    path: str | Path | None,
    env: Mapping[str, str] | None = None,
    *,
    names: KnownNames | None = None,
) -> GatewayConfig:
    """Read and validate a YAML config file (see parse_config); None gives the built-in
    defaults."""
    if path is None:
        return parse_config(None, source="<defaults>", env=env, names=names)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from None
    return parse_config(data, source=str(p), env=env, names=names)
