"""The router's figures for `/metrics`, read from the Router when scraped."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.router.router import Router


class RouterCollector(Collector):
    """Threshold, measured cloud share, labels by source, escalations, requests told not to
    think, asks analysed and reused (gateway.router.asks)."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def collect(self) -> Iterable[Metric]:
        router = self.router
        yield GaugeMetricFamily(
            "glm_gateway_router_threshold",
            "Score at or above which an ask goes to Cerebras (learned router)",
            value=router.threshold("ask"),
        )
        share = router.cloud_share()
        yield GaugeMetricFamily(
            "glm_gateway_router_cloud_share_ratio",
            "Share of the last 1,000 routed requests the router sent to Cerebras",
            value=0.0 if share is None else share,
        )
        labels = CounterMetricFamily(
            "glm_gateway_router_labels",
            "Labels the router learned from, by source",
            labels=["source"],
        )
        for source, count in sorted(router.labels.items()):
            labels.add_metric([source], count)
        yield labels
        yield CounterMetricFamily(
            "glm_gateway_router_escalations",
            "Conversation turns escalated to Cerebras",
            value=router.escalations,
        )
        yield CounterMetricFamily(
            "glm_gateway_router_told_not_to_think",
            "Requests told not to think",
            value=router.no_think,
        )
        asks = CounterMetricFamily(
            "glm_gateway_router_asks",
            "Asks the router read: analysed anew, or reusing a kept analysis",
            labels=["outcome"],
        )
        for outcome, count in router.asks.counts().items():
            asks.add_metric([outcome], count)
        yield asks
