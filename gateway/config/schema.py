"""The config's shape: frozen dataclasses with each key's type, bounds and default, each written
once. A choice is a `Literal` type (with the tuple of its values); a number key is
`Annotated` with its `Within` bounds; gateway.config.reader reads a section by these types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Annotated, Any, Literal, get_args

from gateway.config.secrets import url_passwords

CHAT_COMPLETIONS_PATH = "/chat/completions"

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


# eq=False: typing caches Annotated by its arguments, and Within(0, 1) == Within(0.0, 1.0), but
# the message shows the bounds as written here.
@dataclass(frozen=True, slots=True, eq=False)
class Within:
    """The bounds of a number key, both included, as the error message shows them
    (`Annotated[int, Within(1, 64)]`). `positive`: 0 is refused too (a limit; null: none)."""

    low: float
    high: float
    positive: bool = False


# A share or a token probability.
Share = Annotated[float, Within(0, 1)]
# A positive limit (US dollars, requests, tokens); None: no limit.
Amount = Annotated[float, Within(0.0, 1e12, positive=True)]
Seconds = Annotated[float, Within(0.001, 86400)]
Count = Annotated[int, Within(1, 10_000_000)]


@dataclass(frozen=True, slots=True)
class KnownNames:
    """The names a config may give that packages above this one define: the registered
    strategies (`routing.strategy`, `routing.client_strategies`,
    `rate_limits.reactive_strategies`) and the verdict's scorers (`speculative_decoding.scorer`).
    """

    strategies: tuple[str, ...]
    scorers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `first_token`: wait for the first streamed event; `idle`: each gap after it."""

    connect: Annotated[float, Within(0.001, 3600)] = 5.0
    first_token: Seconds = 120.0
    idle: Seconds = 60.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise ValueError(f"{f.name} must be > 0")


PerMillion = Annotated[float, Within(0, 1e6)]


@dataclass(frozen=True, slots=True)
class Prices:
    """US dollars per million tokens, applied by gateway.accounting.bill and only there.

    `cached_input_per_million` prices the prompt tokens an upstream reports as served from its
    cache; None: the input price."""

    input_per_million: PerMillion = 0.0
    output_per_million: PerMillion = 0.0
    cached_input_per_million: PerMillion | None = None

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
    # 0 in the file turns the cap off (null means the default, like every other key).
    max_completion_tokens_cap: Annotated[int, Within(0, 10_000_000)] | None = None

    @property
    def chat_url(self) -> str:
        return self.endpoint + CHAT_COMPLETIONS_PATH


@dataclass(frozen=True, slots=True)
class AdaptiveConfig:
    cool_down_duration: Annotated[float, Within(0, 86400)] = 60.0
    rate_limit_threshold: Share = 0.2


@dataclass(frozen=True, slots=True)
class PlanLimits:
    """An upstream's quota as its plan states it; None = unknown (headers alone tell)."""

    requests_per_minute: Amount | None = None
    tokens_per_minute: Amount | None = None
    requests_per_day: Amount | None = None


@dataclass(frozen=True, slots=True)
class RateLimitsConfig:
    """Predictive admission (gateway.quota.gate). `reactive_strategies` skip the prediction."""

    reactive_strategies: tuple[str, ...] = ("always_cerebras",)
    cerebras: PlanLimits = PlanLimits()


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """Cerebras spend limits in US dollars per UTC day / month; None = no limit."""

    daily_usd: Amount | None = None
    monthly_usd: Amount | None = None
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
    turns: Annotated[int, Within(1, 1_000_000)] | None = None
    max_conversations: Count = 10_000
    ttl_seconds: Annotated[float, Within(1, 365 * 86_400)] = 86_400.0
    max_turns: Count = 20_000
    fingerprint_cache: Annotated[int, Within(1, 1_000_000)] = 1024


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
    agent_loop_ok_weight: Share = 0.2
    verify_sample: Share = 0.0
    remember_requests: Count = 5_000
    remember_bytes: Annotated[int, Within(64 * 1024, 2**40)] = 16 * 1024 * 1024
    max_labels: Annotated[int, Within(1, 100_000_000)] = 100_000
    label_ttl_seconds: Annotated[float, Within(1, 10 * 365 * 86_400)] = 90 * 86_400.0


# `routing.model_routes` values: an upstream (served by always_local / always_cerebras, the other
# one still a fallback), or `strategy` (the strategy's own choice).
ModelRoute = Literal["local", "cerebras", "strategy"]
MODEL_ROUTES: tuple[ModelRoute, ...] = get_args(ModelRoute)
# Claude Code's haiku-tier calls are background work (titles, summaries): local by default, under
# smart_routing only (a configured map applies under any default strategy).
DEFAULT_MODEL_ROUTES: tuple[tuple[str, ModelRoute], ...] = (("*haiku*", "local"),)


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    strategy: str = "smart_routing"
    simple_task_threshold: Annotated[int, Within(0, 10_000_000)] = 1000
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
    target_cloud_share: Annotated[float, Within(0.0, 1.0)] | None = None
    # smart_routing only: an ask routed local is drafted for `max_draft_tokens` and the learned
    # draft scorer accepts the draft or escalates it to Cerebras (the draft withheld); the
    # target share then applies to those escalations, not to the ask routing.
    judge_draft: bool = False
    escalation: EscalationConfig = EscalationConfig()
    learn: LearnConfig = LearnConfig()
    # Model-name patterns (shell globs, case-insensitive) -> a route in MODEL_ROUTES, first match
    # wins; None: DEFAULT_MODEL_ROUTES under smart_routing. Never overrides a strategy the
    # client named (x-gateway-strategy or a model `glm-token-saver/<strategy>`).
    model_routes: tuple[tuple[str, ModelRoute], ...] | None = None


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
    max_draft_tokens: Annotated[int, Within(1, 1_000_000)] = 100
    min_confidence: Share = 0.7
    parallel_enabled: bool = True
    max_concurrent_drafts: Annotated[int, Within(1, 64)] = 3
    draft_timeout: Annotated[float, Within(0.001, 3600)] = 5.0
    verify_start: VerifyStart = "concurrent"
    scorer: str = "levenshtein"
    accept_short_drafts: bool = True
    tool_call_min_similarity: Share = 0.9
    logprob_signal: bool = False
    logprob_min_mean: Share = 0.8
    logprob_min_low: Share = 0.3
    logprob_low_quantile: Share = 0.1
    cost_skip_ratio: Share = 0.9
    expected_answer_tokens: Count = 500
    announce_after: Annotated[float, Within(0, 60)] = 0.25


Bytes = Annotated[int, Within(1024, 2**31)]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: Annotated[int, Within(0, 65535)] = 8000
    max_body_bytes: Bytes = 10 * 1024 * 1024
    max_messages: Count = 10_000
    max_event_bytes: Bytes = 8 * 1024 * 1024
    shutdown_grace_seconds: Annotated[float, Within(0, 3600)] = 30.0
    workers: Annotated[int, Within(1, 256)] = 1


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Shared state (gateway.state). No `redis_url`: this process's memory only.

    `on_unavailable` while Redis cannot answer: `local` admits Cerebras calls on this replica's
    own state; `fail_closed` refuses Cerebras (requests are served by the local model)."""

    redis_url: str = field(default="", repr=False)
    timeout_ms: Annotated[float, Within(1, 60_000)] = 50.0
    on_unavailable: StateFallback = "local"
    reservation_ttl_s: Annotated[float, Within(1, 86_400)] = 120.0
    key_prefix: str = "glm"
    replica_id: str = ""


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Client keys; empty means no authentication (fine on loopback only)."""

    api_keys: tuple[str, ...] = field(default=(), repr=False)


InFlight = Annotated[int, Within(0, 10**6)]


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Concurrent chat requests in flight, overall and per client key (0 = unlimited)."""

    max_concurrent_requests: InFlight = 512
    max_concurrent_per_key: InFlight = 0


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


# `storage.log_level`: the names the logging module knows (case-insensitive in the file).
LogLevel = Literal["CRITICAL", "FATAL", "ERROR", "WARN", "WARNING", "INFO", "DEBUG", "NOTSET"]
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)


@dataclass(frozen=True, slots=True)
class StorageConfig:
    ledger_path: str = "data/ledger.db"
    log_path: str = "logs/api_server.log"
    log_max_bytes: Annotated[int, Within(1024, 2**40)] = 10 * 1024 * 1024
    log_backups: Annotated[int, Within(0, 1000)] = 5
    log_level: LogLevel = "INFO"


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
