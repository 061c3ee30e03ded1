"""Prometheus metrics (`GET /metrics`), fed from each finished request's record.

One registry per app, so several apps in one process (tests) never share counters. Rate-limit
headroom and in-flight requests are read at scrape time, not pushed.

With shared state, `fleet_exposition` adds `glm_gateway_fleet_*` families: the fleet's totals as
`/stats` sums them from every replica's published account. They carry their own names so that a
Prometheus scraping every replica and summing the per-replica families never counts twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.accounting.bill import Bill, Tariff, bill
from gateway.accounting.records import RequestRecord
from gateway.ratelimit import RateLimitWatcher

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


MemoryUsage = Callable[[], Mapping[str, Mapping[str, Any]]]
"""What `Services.memory` returns: per structure `{"size", "bound", "bytes"?, ...}`."""


# `/stats` memory key -> (metric name after glm_gateway_memory_, help)
_MEMORY_GAUGES = {
    "size": ("entries", "Entries (SQLite tables: rows) a bounded structure holds now"),
    "bound": ("entries_bound", "Most entries (rows) a structure may hold"),
    "bytes": ("bytes", "Estimated bytes a structure holds (where entries vary in size)"),
    "bytes_bound": ("bytes_bound", "Most estimated bytes a structure may hold"),
}


class MemoryCollector(Collector):
    """The `/stats` memory block as gauges, read when scraped: entries (or rows) and bytes of
    each bounded structure, their bounds, and what was evicted to keep them."""

    def __init__(self, usage: MemoryUsage) -> None:
        self.usage = usage

    def collect(self) -> Iterable[Metric]:
        prefix = "glm_gateway_memory_"
        families = {
            key: GaugeMetricFamily(prefix + suffix, doc, labels=["structure"])
            for key, (suffix, doc) in _MEMORY_GAUGES.items()
        }
        evicted = CounterMetricFamily(
            prefix + "evictions",
            "Entries (rows) dropped to keep a structure within its bounds or TTL",
            labels=["structure"],
        )
        for name, block in self.usage().items():
            for key, family in families.items():
                value = block.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    family.add_metric([name], value)
            dropped = block.get("evicted", block.get("deleted"))
            if isinstance(dropped, int):
                evicted.add_metric([name], dropped)
        yield from families.values()
        yield evicted


class _Children:
    """A labelled metric's children by their label values: `labels()` validates, converts and
    locks on every call, a measurable part of recording a request; each child is looked up
    there once. As bounded as the metric itself, which keeps every child it made."""

    __slots__ = ("labels", "known")

    def __init__(self, metric: Counter | Histogram) -> None:
        self.labels = metric.labels
        self.known: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self.known.get(values)
        if child is None:
            child = self.known[values] = self.labels(*values)
        return child


class Metrics:
    def __init__(
        self,
        prices: Tariff,
        watchers: Mapping[str, RateLimitWatcher],
        in_flight: Callable[[], int],
    ) -> None:
        self.prices = prices
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, list(labels), registry=r)

        def latency(name: str, doc: str) -> Histogram:
            return Histogram(name, doc, ["strategy"], buckets=_LATENCY_BUCKETS, registry=r)

        self.requests = counter(
            "glm_gateway_requests_total",
            "Client requests by strategy, serving upstream and outcome",
            *("strategy", "upstream", "outcome"),
        )
        self.tokens = counter(
            "glm_gateway_tokens_total",
            "Tokens billed by upstreams, by kind (prompt/completion) and call role",
            *("upstream", "kind", "role"),
        )
        self.cost = counter(
            "glm_gateway_cost_dollars_total",
            "US dollars billed by each upstream, verify and cancelled calls included",
            "upstream",
        )
        self.upstream_calls = counter(
            "glm_gateway_upstream_calls_total",
            "Upstream calls by role and how they ended",
            *("upstream", "role", "status"),
        )
        self.verdicts = counter(
            "glm_gateway_speculative_verdicts_total",
            "Speculative verdicts by deciding signal and result",
            *("decided_by", "accepted"),
        )
        self.ttft = latency(
            "glm_gateway_time_to_first_token_seconds",
            "Time from request to the first answer content sent to the client",
        )
        self.duration = latency(
            "glm_gateway_request_duration_seconds", "Time from request to its end"
        )
        r.register(_LiveCollector(watchers, in_flight))
        self._requests = _Children(self.requests)
        self._tokens = _Children(self.tokens)
        self._cost = _Children(self.cost)
        self._upstream_calls = _Children(self.upstream_calls)
        self._verdicts = _Children(self.verdicts)
        self._ttft = _Children(self.ttft)
        self._duration = _Children(self.duration)

    def observe(self, record: RequestRecord, billed: Bill | None = None) -> None:
        """Count one finished request with its bill (priced here when not given); never raises
        on odd values."""
        billed = bill(record, self.prices) if billed is None else billed
        strategy = record.strategy
        self._requests(strategy, record.model_used or "none", record.outcome).inc()
        prices, tokens = self.prices, self._tokens
        for call, cost in zip(record.calls, billed.calls, strict=True):
            upstream, role = call.upstream, call.role
            self._upstream_calls(upstream, role, call.status).inc()
            tokens(upstream, "prompt", role).inc(max(0, call.prompt_tokens))
            tokens(upstream, "completion", role).inc(max(0, call.completion_tokens))
            if upstream in prices:
                self._cost(upstream).inc(cost)
        if record.speculative is not None:
            spec = record.speculative
            self._verdicts(spec.decided_by or "unknown", str(spec.accepted).lower()).inc()
        if record.ttft_s is not None and record.ttft_s >= 0:
            self._ttft(strategy).observe(record.ttft_s)
        if record.duration_s >= 0:
            self._duration(strategy).observe(record.duration_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _counter_by(
    name: str, doc: str, label: str, counts: Mapping[str, float]
) -> CounterMetricFamily:
    """A counter family with one sample per `counts` entry, labelled `label`."""
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in counts.items():
        family.add_metric([key], value)
    return family


class _FleetCollector(Collector):
    """The fleet's totals from a `/stats` body built by `fleet_statistics`, and the fleet's
    budget spend per period (None when the store could not say)."""

    def __init__(self, stats: Mapping[str, Any], spend: Mapping[str, float] | None) -> None:
        self.stats = stats
        self.spend = spend

    def collect(self) -> Iterable[Metric]:
        stats, prefix = self.stats, "glm_gateway_fleet_"
        yield GaugeMetricFamily(
            prefix + "replicas_reported",
            "Replicas whose published account the fleet figures sum",
            value=stats["fleet"]["replicas_reported"],
        )
        yield _counter_by(
            prefix + "requests",
            "Fleet client requests by serving upstream",
            "upstream",
            stats["requests"]["by_model"],
        )
        yield _counter_by(
            prefix + "requests_by_outcome",
            "Fleet client requests by outcome",
            "outcome",
            stats["requests"]["by_outcome"],
        )
        tokens = CounterMetricFamily(
            prefix + "tokens",
            "Fleet tokens billed by upstream and kind",
            labels=["upstream", "kind"],
        )
        for upstream, counts in stats["tokens"]["by_model"].items():
            for kind in ("prompt", "completion"):
                tokens.add_metric([upstream, kind], counts[kind])
        yield tokens
        costs = stats["costs"]
        yield _counter_by(
            prefix + "cost_dollars",
            "Fleet US dollars billed",
            "upstream",
            {"all": costs["total_cost_usd"], "cerebras": costs["cerebras_cost_usd"]},
        )
        yield _counter_by(
            prefix + "errors",
            "Fleet upstream errors by upstream",
            "upstream",
            stats["errors"]["by_model"],
        )
        yield CounterMetricFamily(
            prefix + "rate_limit_hits",
            "Fleet upstream 429 answers",
            value=stats["rate_limits"]["total_hits"],
        )
        if self.spend is not None:
            spend = GaugeMetricFamily(
                prefix + "budget_spent_dollars",
                "Fleet Cerebras spend in the current budget period",
                labels=["period"],
            )
            for period, value in self.spend.items():
                spend.add_metric([period], value)
            yield spend


def fleet_exposition(stats: Mapping[str, Any], spend: Mapping[str, float] | None) -> bytes:
    """The `glm_gateway_fleet_*` families in the text format, to append to `Metrics.render()`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_FleetCollector(stats, spend))
    return generate_latest(registry)
