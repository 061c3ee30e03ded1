"""Checks of the Cerebras upstream: the key, the model list, a streamed answer and what its
rate-limit headers say next to the configured plan (`rate_limits.cerebras.*`)."""

from __future__ import annotations

from typing import Any

from gateway.config import GatewayConfig, PlanLimits
from gateway.doctor.options import DoctorOptions
from gateway.doctor.probes import StreamProbe, stream_probe
from gateway.doctor.report import Check, fail, ok, skip, warn
from gateway.errors import UpstreamHTTPError, UpstreamRateLimited
from gateway.ratelimit import RateLimitWatcher
from gateway.upstreams import Health, Upstream

NAMES = ("cerebras.key", "cerebras.models", "cerebras.stream", "cerebras.rate_limits")
PROMPT = "Reply with one word: hello."
KEY_FIX = (
    "export CEREBRAS_API_KEY=<a key from https://cloud.cerebras.ai> (or correct "
    "models.cerebras.api_key), then run the doctor again"
)
# Plan keys of `rate_limits.cerebras` and the header window each one corresponds to.
PLAN_WINDOWS = {
    "requests_per_minute": "requests-minute",
    "tokens_per_minute": "tokens-minute",
    "requests_per_day": "requests-day",
}


class CerebrasDoctor:
    """The Cerebras checks, in order. `serving` is True afterwards when Cerebras answered."""

    def __init__(self, upstream: Upstream, config: GatewayConfig, options: DoctorOptions) -> None:
        self.upstream = upstream
        self.config = config
        self.options = options
        self.serving = False

    async def run(self) -> list[Check]:
        """Every Cerebras check; no network call at all without a key."""
        up = self.upstream
        if not up.enabled:
            return [skip(name, "models.cerebras.enabled is false") for name in NAMES]
        if not up.config.api_key:
            return [
                fail(
                    "cerebras.key",
                    "no Cerebras API key: CEREBRAS_API_KEY is not set and models.cerebras.api_key "
                    "is empty (Cerebras is enabled but cannot serve)",
                    KEY_FIX + "; or set models.cerebras.enabled: false to run local only",
                ),
                *(skip(name, "no API key") for name in NAMES[1:]),
            ]
        health = await up.health()  # GET /models with the key
        # A 429 there only means "rate-limited now": the chat probe below tells more.
        if health.state == "down" and health.detail != "HTTP 429":
            return [
                skip("cerebras.key", "not checked: Cerebras is unreachable"),
                fail(
                    "cerebras.models",
                    f"Cerebras does not answer at {up.health_url()}: {health.detail}",
                    "check models.cerebras.endpoint and this machine's network or proxy",
                ),
                *(skip(name, "Cerebras is unreachable") for name in NAMES[2:]),
            ]
        rejected = f"{health.detail} on GET /v1/models" if health.state == "unauthorized" else ""
        probe = None
        if not rejected:
            body: dict[str, Any] = {
                "messages": [{"role": "user", "content": PROMPT}],
                "max_tokens": self.options.max_tokens,
            }
            probe = await stream_probe(up, body, self.options.probe_timeout)
            error = probe.error
            if isinstance(error, UpstreamHTTPError) and error.status in (401, 403):
                rejected = f"HTTP {error.status} on a chat completion"
        if rejected:
            return [
                fail(
                    "cerebras.key",
                    f"Cerebras rejected the key: set CEREBRAS_API_KEY to a valid key ({rejected})",
                    KEY_FIX,
                ),
                *(skip(name, "the key was rejected") for name in NAMES[1:]),
            ]
        assert probe is not None
        return [
            ok("cerebras.key", "the key is set and accepted"),
            await self.models(health),
            self.stream(probe),
            self.rate_limits(probe),
        ]

    async def models(self, health: Health) -> Check:
        up = self.upstream
        reply = await up.get_json(up.health_url(), self.options.probe_timeout)
        if reply is None or reply.status != 200:
            return warn(
                "cerebras.models",
                f"GET /v1/models answered {'nothing' if reply is None else reply.status}, so "
                f"whether {up.config.model} is offered is unknown",
                "run the doctor again in a minute",
            )
        data = reply.payload.get("data") if isinstance(reply.payload, dict) else None
        ids = [str(m["id"]) for m in data or [] if isinstance(m, dict) and m.get("id")]
        model = up.config.model
        latency = f"{health.latency_ms:.0f} ms" if health.latency_ms is not None else "n/a"
        if model in ids:
            return ok(
                "cerebras.models",
                f"{model} is offered ({len(ids)} model(s), GET /v1/models in {latency})",
                model=model,
                models=ids,
            )
        return warn(
            "cerebras.models",
            f"{model} is not among the models this key may use: {', '.join(ids) or 'none listed'}",
            "set models.cerebras.model to one of them",
            model=model,
            models=ids,
        )

    def stream(self, probe: StreamProbe) -> Check:
        error = probe.error
        if isinstance(error, UpstreamRateLimited):
            wait = f"{error.retry_after:.0f}s" if error.retry_after is not None else "the reset"
            return warn(
                "cerebras.stream",
                f"Cerebras rate-limited the probe: {error.message}",
                f"wait {wait}; set rate_limits.cerebras.* to your plan so the gateway predicts "
                "the limit and routes local before it",
                **probe.figures(),
            )
        if error is not None:
            status = f"HTTP {error.status}: " if isinstance(error, UpstreamHTTPError) else ""
            fix = (
                "set models.cerebras.model to a model your key may use (see cerebras.models)"
                if isinstance(error, UpstreamHTTPError) and error.status == 404
                else "check models.cerebras.endpoint; retry later if Cerebras is having trouble"
            )
            return fail(
                "cerebras.stream",
                f"Cerebras did not answer a {self.options.max_tokens}-token completion: "
                f"{status}{error.message}",
                fix,
                **probe.figures(),
            )
        self.serving = True
        return ok("cerebras.stream", probe.speed(), **probe.figures())

    def rate_limits(self, probe: StreamProbe) -> Check:
        """The windows the probe's headers reported (parsed by the gateway's own watcher)."""
        watcher = self.upstream.watcher
        plan = self.config.rate_limits.cerebras
        windows = _windows(watcher)
        plan_figures = {key: getattr(plan, key) for key in PLAN_WINDOWS}
        planned = [f"{key} {value:g}" for key, value in plan_figures.items() if value is not None]
        plan_text = f"plan (rate_limits.cerebras): {', '.join(planned) or 'not set'}"
        figures = {"windows": windows, "plan": plan_figures}
        if not windows:
            return warn(
                "cerebras.rate_limits",
                f"Cerebras sent no rate-limit headers; {plan_text}",
                "set rate_limits.cerebras.requests_per_minute, tokens_per_minute and "
                "requests_per_day to your plan so the gateway can predict its limits",
                **figures,
            )
        described = "; ".join(_describe(name, w) for name, w in windows.items())
        problems, fixes = _compare(plan, windows, self.config)
        if "requests-minute" not in windows and plan.requests_per_minute is None:
            described += "; requests per minute: not reported by Cerebras"
        detail = f"{described}; {plan_text}"
        if problems:
            return warn(
                "cerebras.rate_limits",
                f"{'; '.join(problems)} ({detail})",
                "; ".join(fixes),
                **figures,
            )
        return ok("cerebras.rate_limits", detail, **figures)


def _windows(watcher: RateLimitWatcher) -> dict[str, dict[str, float | None]]:
    now = watcher.clock()
    out: dict[str, dict[str, float | None]] = {}
    for name, window in sorted(watcher.windows.items()):
        reset = None if window.reset_at is None else max(0.0, round(window.reset_at - now, 1))
        out[name] = {"limit": window.limit, "remaining": window.remaining, "reset_s": reset}
    return out


def _describe(name: str, window: dict[str, float | None]) -> str:
    limit, remaining, reset = window["limit"], window["remaining"], window["reset_s"]
    text = f"{name}: {_num(remaining)} of {_num(limit)} left"
    return text + (f", resets in {reset:g}s" if reset is not None else "")


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def _compare(
    plan: PlanLimits, windows: dict[str, dict[str, Any]], config: GatewayConfig
) -> tuple[list[str], list[str]]:
    """Warnings: a plan above what Cerebras reports, and a window below the gate's threshold."""
    problems: list[str] = []
    fixes: list[str] = []
    for key, header in PLAN_WINDOWS.items():
        planned = getattr(plan, key)
        limit = windows.get(header, {}).get("limit")
        if planned is not None and limit is not None and planned > limit:
            problems.append(
                f"rate_limits.cerebras.{key} is {planned:g} but Cerebras reports {limit:g}"
            )
            fixes.append(f"set rate_limits.cerebras.{key}: {limit:g}")
    threshold = config.routing.adaptive_cerebras.rate_limit_threshold
    for name, window in windows.items():
        limit, remaining = window["limit"], window["remaining"]
        if limit and remaining is not None and remaining / limit < threshold:
            problems.append(f"{name} is nearly used up ({remaining / limit:.0%} left)")
            reset = window["reset_s"]
            fixes.append(
                f"wait for the {name} reset ({'unknown' if reset is None else f'{reset:g}s'}); "
                "meanwhile the gateway sends requests to local"
            )
    return problems, fixes
