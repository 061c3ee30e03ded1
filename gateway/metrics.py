"""Prometheus metrics (`GET /metrics`), fed from each finished request's record.

One registry per app, so several apps in one process (tests) never share counters. Rate-limit
headroom and in-flight requests are read at scrape time, not pushed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .config import Prices
from .ratelimit import RateLimitWatcher
from .records import RequestRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _LiveCollector(Collector):
    """Values read when scraped: headroom per rate-limit window, requests in flight."""

    def __init__(
        self, watchers: Mapping[str, RateLimitWatcher], in_flight: Callable[[], int]
    ) -> None:
        self.watchers = watchers
        self.in_flight = in_flight

    def collect(self) -> Iterable[Metric]:
        headroom = GaugeMetricFamily(
            "glm_gateway_rate_limit_headroom_ratio",
            "Fraction of each upstream rate-limit window left, from its latest headers",
            labels=["upstream", "window"],
        )
        for name, watcher in self.watchers.items():
            for window, value in watcher.headroom().items():
                if value is not None:
                    headroom.add_metric([name, window], value)
        yield headroom
        yield GaugeMetricFamily(
            "glm_gateway_in_flight_requests",
            "Chat requests (streams included) being served right now",
            value=self.in_flight(),
        )


class Metrics:
    def __init__(
        self,
        prices: Mapping[str, Prices],
        watchers: Mapping[str, RateLimitWatcher],
        in_flight: Callable[[], int],
    ) -> None:
        self.prices = prices
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "glm_gateway_requests_total",
            "Client requests by strategy, serving upstream and outcome",
            ["strategy", "upstream", "outcome"],
            registry=r,
        )
        self.tokens = Counter(
            "glm_gateway_tokens_total",
            "Tokens billed by upstreams, by kind (prompt/completion) and call role",
            ["upstream", "kind", "role"],
            registry=r,
        )
        self.cost = Counter(
            "glm_gateway_cost_dollars_total",
            "US dollars billed by each upstream, verify and cancelled calls included",
            ["upstream"],
            registry=r,
        )
        self.upstream_calls = Counter(
            "glm_gateway_upstream_calls_total",
            "Upstream calls by role and how they ended",
            ["upstream", "role", "status"],
            registry=r,
        )
        self.verdicts = Counter(
            "glm_gateway_speculative_verdicts_total",
            "Speculative verdicts by deciding signal and result",
            ["decided_by", "accepted"],
            registry=r,
        )
        self.ttft = Histogram(
            "glm_gateway_time_to_first_token_seconds",
            "Time from request to the first answer content sent to the client",
            ["strategy"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            "glm_gateway_request_duration_seconds",
            "Time from request to its end",
            ["strategy"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        r.register(_LiveCollector(watchers, in_flight))

    def observe(self, record: RequestRecord) -> None:
        """Count one finished request; never raises on odd values."""
        self.requests.labels(record.strategy, record.model_used or "none", record.outcome).inc()
        for call in record.calls:
            self.upstream_calls.labels(call.upstream, call.role, call.status).inc()
            prompt, completion = max(0, call.prompt_tokens), max(0, call.completion_tokens)
            self.tokens.labels(call.upstream, "prompt", call.role).inc(prompt)
            self.tokens.labels(call.upstream, "completion", call.role).inc(completion)
            prices = self.prices.get(call.upstream)
            if prices is not None:
                self.cost.labels(call.upstream).inc(prices.cost(prompt, completion))
        if record.speculative is not None:
            spec = record.speculative
            self.verdicts.labels(spec.decided_by or "unknown", str(spec.accepted).lower()).inc()
        if record.ttft_s is not None and record.ttft_s >= 0:
            self.ttft.labels(record.strategy).observe(record.ttft_s)
        if record.duration_s >= 0:
            self.duration.labels(record.strategy).observe(record.duration_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
