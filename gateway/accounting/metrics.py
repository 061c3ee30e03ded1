"""Prometheus metrics (`GET /metrics`), fed from each finished request's record.

`Metrics.observe` counts each record as plain numbers (dicts keyed by label values, bucket counts
by strategy); a collector turns them into metric families only when `/metrics` is scraped, in the
text prometheus_client's own counters and histograms gave. One registry per app, so several apps
in one process (tests) never share counters. Rate-limit headroom and in-flight requests are read
at scrape time, not pushed.

With shared state, `fleet_exposition` adds `glm_gateway_fleet_*` families: the fleet's totals as
`/stats` sums them from every replica's published account. They carry their own names so that a
Prometheus scraping every replica and summing the per-replica families never counts twice.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from gateway.accounting.bill import Bill, Tariff, bill, token_count
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


class _Tally(dict[tuple[str, ...], float]):
    """A counter family's values by label values, as plain numbers; `created` keeps the wall
    time each label set was first counted (the `_created` sample Prometheus clients emit)."""

    __slots__ = ("name", "doc", "labels", "wall", "created")

    def __init__(
        self, name: str, doc: str, labels: tuple[str, ...], wall: Callable[[], float]
    ) -> None:
        super().__init__()
        self.name, self.doc, self.labels, self.wall = name, doc, labels, wall
        self.created: dict[tuple[str, ...], float] = {}

    def __missing__(self, key: tuple[str, ...]) -> float:
        # `tally[key] += amount` on a new key stores 0.0 + amount (a float, as Prometheus
        # clients count), not this call.
        self.created[key] = self.wall()
        return 0.0

    def family(self, created: bool) -> Metric:
        counter = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in self.items():
            counter.add_metric(key, value, self.created[key] if created else None)
        return counter


# The `le` label of each bucket, written as prometheus_client writes it (untyped there).
_BUCKET_LABELS: tuple[str, ...] = tuple(
    floatToGoString(b)  # type: ignore[no-untyped-call]
    for b in (*_LATENCY_BUCKETS, math.inf)
)


class _Latency(dict[str, list[float]]):
    """A latency histogram by strategy: per strategy the count in each bucket (not cumulative;
    the last one is +Inf) followed by the sum of the observations; `created` as in `_Tally`."""

    __slots__ = ("name", "doc", "wall", "created")

    def __init__(self, name: str, doc: str, wall: Callable[[], float]) -> None:
        super().__init__()
        self.name, self.doc, self.wall = name, doc, wall
        self.created: dict[str, float] = {}

    def __missing__(self, strategy: str) -> list[float]:
        self.created[strategy] = self.wall()
        row: list[float] = [0] * len(_BUCKET_LABELS)
        row.append(0.0)
        self[strategy] = row
        return row

    def observe(self, strategy: str, seconds: float) -> None:
        """Count `seconds` (not NaN) in the first bucket whose bound is at least `seconds`."""
        row = self[strategy]
        row[bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        row[-1] += seconds

    def family(self, created: bool) -> Metric:
        histogram = HistogramMetricFamily(self.name, self.doc, labels=["strategy"])
        for strategy, row in self.items():
            buckets, total = [], 0.0
            for le, count in zip(_BUCKET_LABELS, row, strict=False):  # row ends with the sum
                total += count
                buckets.append((le, total))
            histogram.add_metric([strategy], buckets, row[-1])
            if created:
                when = self.created[strategy]
                labels = {"strategy": strategy}
                histogram.samples.append(Sample(self.name + "_created", labels, when, None, None))
        return histogram


_NUMBERS = (int, float)  # a tuple: `int | float` would be built anew on every call


def _tokens(value: Any) -> float:
    """A call's token count as counted here: numbers below 0 (and NaN) as 0, others as they
    are; anything else as the ledger stores it (gateway.accounting.bill)."""
    if isinstance(value, _NUMBERS):
        return value if value > 0 else 0
    return token_count(value)


def _created_series() -> bool:
    """Whether `_created` samples are emitted: prometheus_client's own switch
    (PROMETHEUS_DISABLE_CREATED_SERIES, `disable_created_metrics()`), read as its metrics do."""
    return bool(getattr(prometheus_metrics, "_use_created", True))


class _RecordedCollector(Collector):
    """What `Metrics.observe` counted, as metric families when scraped."""

    def __init__(self, families: Iterable[_Tally | _Latency]) -> None:
        self.families = tuple(families)

    def collect(self) -> Iterable[Metric]:
        created = _created_series()
        for family in self.families:
            yield family.family(created)


class Metrics:
    """The per-request counters and latency histograms of `/metrics`, kept as plain numbers
    (`requests[(strategy, upstream, outcome)]` and so on) and rendered when scraped. `observe`
    and `render` run on one thread, the event loop's."""

    def __init__(
        self,
        prices: Tariff,
        watchers: Mapping[str, RateLimitWatcher],
        in_flight: Callable[[], int],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.prices = prices

        def tally(name: str, doc: str, *labels: str) -> _Tally:
            return _Tally(name, doc, labels, wall)

        self.requests = tally(
            "glm_gateway_requests_total",
            "Client requests by strategy, serving upstream and outcome",
            *("strategy", "upstream", "outcome"),
        )
        self.tokens = tally(
            "glm_gateway_tokens_total",
            "Tokens billed by upstreams, by kind (prompt/completion) and call role",
            *("upstream", "kind", "role"),
        )
        self.cost = tally(
            "glm_gateway_cost_dollars_total",
            "US dollars billed by each upstream, verify and cancelled calls included",
            "upstream",
        )
        self.upstream_calls = tally(
            "glm_gateway_upstream_calls_total",
            "Upstream calls by role and how they ended",
            *("upstream", "role", "status"),
        )
        self.verdicts = tally(
            "glm_gateway_speculative_verdicts_total",
            "Speculative verdicts by deciding signal and result",
            *("decided_by", "accepted"),
        )
        self.ttft = _Latency(
            "glm_gateway_time_to_first_token_seconds",
            "Time from request to the first answer content sent to the client",
            wall,
        )
        self.duration = _Latency(
            "glm_gateway_request_duration_seconds", "Time from request to its end", wall
        )
        self.registry = CollectorRegistry(auto_describe=True)
        recorded = (self.requests, self.tokens, self.cost, self.upstream_calls, self.verdicts)
        self.registry.register(_RecordedCollector((*recorded, self.ttft, self.duration)))
        self.registry.register(_LiveCollector(watchers, in_flight))

    def observe(self, record: RequestRecord, billed: Bill | None = None) -> None:
        """Count one finished request with its bill (priced here when not given); never raises
        on odd values."""
        billed = bill(record, self.prices) if billed is None else billed
        strategy = record.strategy
        self.requests[strategy, record.model_used or "none", record.outcome] += 1
        prices, tokens, calls, costs = self.prices, self.tokens, self.upstream_calls, self.cost
        for call, cost in zip(record.calls, billed.calls, strict=True):
            upstream, role = call.upstream, call.role
            calls[upstream, role, call.status] += 1
            tokens[upstream, "prompt", role] += _tokens(call.prompt_tokens)
            tokens[upstream, "completion", role] += _tokens(call.completion_tokens)
            if upstream in prices and not cost < 0:  # NaN is added, as Prometheus counters do
                costs[(upstream,)] += cost
        spec = record.speculative
        if spec is not None:
            self.verdicts[spec.decided_by or "unknown", str(spec.accepted).lower()] += 1
        ttft = record.ttft_s
        if ttft is not None and ttft >= 0:
            self.ttft.observe(strategy, ttft)
        if record.duration_s >= 0:
            self.duration.observe(strategy, record.duration_s)

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
