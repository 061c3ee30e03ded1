"""`Metrics`: counted as plain numbers, rendered when scraped, byte for byte as the
prometheus_client counters and histograms it replaced rendered the same records."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import metrics as prometheus_metrics

from gateway.accounting.bill import Bill, Tariff, bill
from gateway.accounting.metrics import _LATENCY_BUCKETS, Metrics, _LiveCollector
from gateway.accounting.records import RequestRecord, SpeculativeRecord, UpstreamCall
from gateway.config import Prices

PRICES = {"local": Prices(0.0, 0.0), "cerebras": Prices(2.0, 3.0, 0.5)}
# Prices the config would refuse, for the NaN and infinite costs they give.
ODD_PRICES = {"local": Prices(math.inf, 0.0), "cerebras": Prices(2.0, math.nan)}


class ReferenceMetrics:
    """The implementation before this one (prometheus_client's Counter and Histogram, one
    child per label set), kept here only to pin the exposition against it."""

    def __init__(self, prices: Tariff) -> None:
        self.prices = prices
        self.registry = r = CollectorRegistry(auto_describe=True)

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
        r.register(_LiveCollector({}, lambda: 3))

    def observe(self, record: RequestRecord, billed: Bill | None = None) -> None:
        billed = bill(record, self.prices) if billed is None else billed
        strategy = record.strategy
        self.requests.labels(strategy, record.model_used or "none", record.outcome).inc()
        for call, cost in zip(record.calls, billed.calls, strict=True):
            upstream, role = call.upstream, call.role
            self.upstream_calls.labels(upstream, role, call.status).inc()
            self.tokens.labels(upstream, "prompt", role).inc(max(0, call.prompt_tokens))
            self.tokens.labels(upstream, "completion", role).inc(max(0, call.completion_tokens))
            if upstream in self.prices:
                self.cost.labels(upstream).inc(cost)
        if record.speculative is not None:
            spec = record.speculative
            self.verdicts.labels(spec.decided_by or "unknown", str(spec.accepted).lower()).inc()
        if record.ttft_s is not None and record.ttft_s >= 0:
            self.ttft.labels(strategy).observe(record.ttft_s)
        if record.duration_s >= 0:
            self.duration.labels(strategy).observe(record.duration_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _clock() -> Callable[[], float]:
    """A wall clock that moves a quarter second each time it is read."""
    ticks = itertools.count()
    return lambda: 1_790_000_000.0 + next(ticks) / 4


def _pair(prices: Tariff) -> tuple[ReferenceMetrics, Callable[..., None], Metrics]:
    """The reference, a function observing with it under its own clock, and the new metrics
    with an identical clock: both read their clock once per new label set, in the same order."""
    reference, reference_clock = ReferenceMetrics(prices), _clock()
    metrics = Metrics(prices, {}, lambda: 3, wall=_clock())

    def observe_reference(record: RequestRecord, billed: Bill | None = None) -> None:
        with mock.patch.object(prometheus_metrics.time, "time", reference_clock):
            reference.observe(record, billed)

    return reference, observe_reference, metrics


def _call(upstream: str, role: str, status: str, prompt: Any, completion: Any) -> UpstreamCall:
    call = UpstreamCall(upstream, role, status)  # type: ignore[arg-type]
    call.prompt_tokens, call.completion_tokens = prompt, completion
    return call


def _record(
    strategy: str,
    model_used: str | None,
    outcome: str,
    calls: list[UpstreamCall],
    speculative: SpeculativeRecord | None = None,
    ttft: float | None = None,
    duration: float = 0.0,
) -> RequestRecord:
    record = RequestRecord(request_id="r", started_at=0.0, strategy=strategy, stream=True)
    record.calls.extend(calls)
    record.model_used = model_used  # type: ignore[assignment]
    record.outcome = outcome  # type: ignore[assignment]
    record.speculative, record.ttft_s, record.duration_s = speculative, ttft, duration
    return record


def _varied_records() -> list[RequestRecord]:
    """Several strategies, upstreams and outcomes; calls of every role; verdicts; latencies on
    and around every bucket edge, None, negative, NaN and infinite; odd token counts."""
    edges = [*_LATENCY_BUCKETS, *(float(b) for b in _LATENCY_BUCKETS), 0, 0.0, 301.0, 1e9]
    records = [
        _record("always_local", "local", "ok", [_call("local", "answer", "ok", 12_000, 20)]),
        _record(
            "speculative",
            "cerebras",
            "ok",
            [
                _call("local", "draft", "ok", 12_000, 250),
                _call("cerebras", "verify", "cancelled", 12_000, 40),
                _call("cerebras", "answer", "ok", 12_000, 300),
            ],
            SpeculativeRecord(accepted=False, decided_by="similarity"),
            ttft=0.4,
            duration=2.0,
        ),
        _record(
            "speculative",
            "local",
            "client_disconnected",
            [_call("local", "draft", "ok", 5, 7), _call("cerebras", "verify", "error", 0, 0)],
            SpeculativeRecord(accepted=True, decided_by=""),
            ttft=-1.0,
            duration=-0.5,
        ),
        _record("smart_routing", None, "error", [], ttft=math.nan, duration=math.inf),
        _record(
            "always_cerebras",
            "cerebras",
            "rate_limited",
            [_call("cerebras", "answer", "rate_limited", -3, math.nan)],
            ttft=math.inf,
            duration=-math.inf,
        ),
        _record(
            "always_cerebras",
            "cerebras",
            "ok",
            [
                _call("cerebras", "answer", "ok", 2.9, True),
                _call("elsewhere", "answer", "ok", math.inf, -0.0),
                _call("cerebras", "answer", "ok", 2**60, 10**6),
            ],
        ),
        _record('odd "strategy"\\\n', "local", "ok", [_call("local", "answer", "ok", 1, 1)]),
    ]
    for i, edge in enumerate(edges):
        nudged = math.nextafter(float(edge), math.inf)
        records.append(
            _record(["always_local", "adaptive"][i % 2], "local", "ok", [], None, edge, nudged)
        )
    return records


@pytest.mark.parametrize("prices", [PRICES, ODD_PRICES], ids=["prices", "odd-prices"])
@pytest.mark.parametrize("created", [True, False], ids=["created", "no-created"])
def test_the_exposition_is_byte_for_byte_the_prometheus_clients(
    prices: Tariff, created: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prometheus_metrics, "_use_created", created)
    reference, observe_reference, metrics = _pair(prices)
    assert metrics.render() == reference.render()  # nothing counted yet
    for n, record in enumerate(_varied_records() * 2):
        billed = bill(record, prices) if n % 3 else None  # handed in, or priced by each
        observe_reference(record, billed)
        metrics.observe(record, billed)
    rendered = metrics.render()
    assert rendered == reference.render()
    assert (b"_created{" in rendered) is created
    assert b'glm_gateway_requests_total{outcome="ok",strategy="always_local"' in rendered


_names = st.sampled_from(["always_local", "speculative", "adaptive", 'q"\\'])
_upstreams = st.sampled_from(["local", "cerebras", "other"])
_tokens = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
_seconds = st.one_of(
    st.none(),
    st.sampled_from([*_LATENCY_BUCKETS, 0.0, -0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
)
_calls = st.builds(
    _call,
    _upstreams,
    st.sampled_from(["answer", "draft", "verify"]),
    st.sampled_from(["ok", "cancelled", "error", "rate_limited"]),
    _tokens,
    _tokens,
)
_records = st.builds(
    _record,
    _names,
    st.sampled_from([None, "local", "cerebras"]),
    st.sampled_from(["ok", "error", "client_disconnected", "rate_limited"]),
    st.lists(_calls, max_size=4),
    st.one_of(
        st.none(),
        st.builds(
            SpeculativeRecord,
            accepted=st.booleans(),
            decided_by=st.sampled_from(["", "similarity", "length"]),
        ),
    ),
    _seconds,
    _seconds.filter(lambda s: s is not None),
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(records=st.lists(_records, max_size=12), odd_prices=st.booleans())
def test_any_records_render_as_the_prometheus_client_rendered_them(
    records: list[RequestRecord], odd_prices: bool
) -> None:
    prices = ODD_PRICES if odd_prices else PRICES
    reference, observe_reference, metrics = _pair(prices)
    for record in records:
        observe_reference(record)
        metrics.observe(record)
    assert metrics.render() == reference.render()


def test_the_counts_are_plain_numbers_by_label_values() -> None:
    metrics = Metrics(PRICES, {}, lambda: 0)
    record = _record(
        "speculative",
        "cerebras",
        "ok",
        [_call("local", "draft", "ok", 100, 10), _call("cerebras", "answer", "ok", 100, 20)],
        SpeculativeRecord(accepted=True, decided_by="similarity"),
        ttft=0.1,
        duration=0.5,
    )
    for _ in range(3):
        metrics.observe(record)
    assert metrics.requests == {("speculative", "cerebras", "ok"): 3}
    assert metrics.tokens[("cerebras", "completion", "answer")] == 60
    assert metrics.upstream_calls[("local", "draft", "ok")] == 3
    assert metrics.cost == {("local",): 0.0, ("cerebras",): pytest.approx(3 * 260e-6)}
    assert metrics.verdicts == {("similarity", "true"): 3}
    buckets = list(_LATENCY_BUCKETS)
    ttft = metrics.ttft["speculative"]
    assert ttft[buckets.index(0.1)] == 3 and sum(ttft[:-1]) == 3
    assert ttft[-1] == pytest.approx(0.3)
    assert metrics.duration["speculative"][buckets.index(0.5)] == 3


def test_a_label_set_keeps_the_time_it_was_first_counted() -> None:
    now = [100.0]
    metrics = Metrics(PRICES, {}, lambda: 0, wall=lambda: now[0])
    metrics.observe(_record("a", "local", "ok", [], duration=1.0))
    now[0] = 200.0
    metrics.observe(_record("a", "local", "ok", [], duration=1.0))
    metrics.observe(_record("a", "local", "error", [], duration=1.0))
    text = metrics.render().decode()
    assert 'glm_gateway_requests_created{outcome="ok",strategy="a",upstream="local"} 100.0' in text
    assert 'glm_gateway_requests_created{outcome="error",strategy="a",upstream="local"} 200.0' in (
        text
    )
    assert 'glm_gateway_request_duration_seconds_created{strategy="a"} 100.0' in text
    assert 'glm_gateway_request_duration_seconds_count{strategy="a"} 3.0' in text


def test_values_the_prometheus_client_raised_on_are_counted_without_raising() -> None:
    """A negative cost (a negative price) is left out; token counts that are not numbers are
    counted as the ledger stores them (0, or the number a string spells)."""
    prices = {"cerebras": Prices(-1.0, 0.0)}
    metrics = Metrics(prices, {}, lambda: 0)
    calls = [
        _call("cerebras", "answer", "ok", 1000, None),
        _call("cerebras", "answer", "ok", "12", object()),
    ]
    metrics.observe(_record("a", "cerebras", "ok", calls))
    assert ("cerebras",) not in metrics.cost
    assert metrics.tokens[("cerebras", "prompt", "answer")] == 1012
    assert metrics.tokens[("cerebras", "completion", "answer")] == 0
    assert b"glm_gateway_tokens_total" in metrics.render()
