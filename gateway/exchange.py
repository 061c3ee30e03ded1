"""One client request in flight: its body, its sink, its record, and the upstreams it may use."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .admission import OpenGate, UpstreamGate
from .config import GatewayConfig
from .records import RequestRecord, UpstreamName
from .sinks import Sink
from .upstreams import OpenAICompatibleUpstream

Recorder = Callable[[RequestRecord], Awaitable[None]]


@dataclass(slots=True)
class Exchange:
    """Per-request state shared by the handler, the strategy and the relay.

    `metadata` is merged into the final chunk (stream) or the body (non-stream): `model_used`,
    `routing_reason`, `speculative_decoding` ... `finalize()` records the request exactly once.
    """

    request_id: str
    body: dict[str, Any]
    stream: bool
    include_usage: bool
    sink: Sink
    record: RequestRecord
    upstreams: Mapping[UpstreamName, OpenAICompatibleUpstream]
    config: GatewayConfig
    recorder: Recorder
    gate: UpstreamGate = field(default_factory=OpenGate)
    started: float = field(default_factory=time.monotonic)
    metadata: dict[str, Any] = field(default_factory=dict)
    recorded: bool = False

    def fallback_allowed(self, name: UpstreamName) -> bool:
        routing = self.config.routing
        return routing.fallback_to_local if name == "local" else routing.fallback_to_cerebras

    def set_reason(self, reason: str) -> None:
        self.record.routing_reason = reason
        self.metadata["routing_reason"] = reason

    async def finalize(self) -> None:
        """Complete the record (timings, outcome as already set) and store it, once."""
        if self.recorded:
            return
        self.recorded = True
        record = self.record
        record.duration_s = time.monotonic() - self.started
        first = self.sink.first_content_at
        if first is not None and record.ttft_s is None:
            record.ttft_s = first - self.started
        await self.recorder(record)
