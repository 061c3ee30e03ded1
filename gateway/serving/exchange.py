"""One client request in flight: its body, its sink, its record, and the upstreams it may use."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.accounting.records import RequestRecord, UpstreamName
from gateway.accounting.tokens import PromptEstimate, PromptMemo, once
from gateway.config import GatewayConfig, ThinkingMode
from gateway.quota.admission import OpenGate, UpstreamGate
from gateway.upstreams import Upstream
from gateway.wire.sinks import Sink

Recorder = Callable[[RequestRecord], Awaitable[object]]


@dataclass(slots=True)
class Exchange:
    """Per-request state shared by the handler, the strategy and the relay.

    `metadata` is merged into the final chunk (stream) or the body (non-stream): `model_used`,
    `routing_reason`, `speculative_decoding` ... `finalize()` records the request exactly once;
    `finish()` ends a successful answer with it.
    """

    request_id: str
    body: dict[str, Any]
    stream: bool
    include_usage: bool
    sink: Sink
    record: RequestRecord
    upstreams: Mapping[UpstreamName, Upstream]
    config: GatewayConfig
    recorder: Recorder
    gate: UpstreamGate = field(default_factory=OpenGate)
    started: float = field(default_factory=time.monotonic)
    metadata: dict[str, Any] = field(default_factory=dict)
    recorded: bool = False
    # The client's own thinking wish (a door's decoded `thinking`), overriding the route's.
    client_thinking: ThinkingMode | None = None
    # The prompt size of `body`, measured at most once (admission, cancelled calls, calls
    # without reported usage and the learned token ratios need it); `body` is never changed in
    # place.
    prompt_tokens: PromptMemo = field(init=False)

    def __post_init__(self) -> None:
        self.prompt_tokens = once(self.body)

    def prompt_estimate(self, name: UpstreamName) -> PromptEstimate:
        """`body`'s prompt tokens as `name` counts them (its learned characters per token): the
        one estimate every admission of this request to `name` uses."""
        return self.upstreams[name].chars_per_token.estimate(self.prompt_tokens)

    def thinking_mode(self, routed: ThinkingMode | None) -> ThinkingMode | None:
        """The thinking mode of this request's answer calls: the client's own wish when its door
        decoded one, else `routed` (the route choice's `routing.thinking` mode; None: the
        strategy classified nothing, and thinking is left untouched)."""
        return self.client_thinking if self.client_thinking is not None else routed

    def fallback_allowed(self, name: UpstreamName) -> bool:
        routing = self.config.routing
        return routing.fallback_to_local if name == "local" else routing.fallback_to_cerebras

    def set_reason(self, reason: str) -> None:
        self.record.routing_reason = reason
        self.metadata["routing_reason"] = reason

    async def finish(self, usage: dict[str, Any]) -> None:
        """End the answer: the sink writes all but its end marker, the request is recorded (its
        ledger row committed), then the end marker goes out. A client that saw `[DONE]` (or a
        door's terminal event, or the non-stream body) is thus never missing from the ledger."""
        await self.sink.finish(usage, self.metadata)
        await self.finalize()
        await self.sink.close()

    async def finalize(self) -> None:
        """Complete the record (timings, outcome as already set) and store it, once."""
        if self.recorded:
            return
        self.recorded = True
        record = self.record
        record.duration_s = time.monotonic() - self.started
        if record.outcome == "client_disconnected":
            self._count_partial_answer()
        first = self.sink.first_content_at
        if first is not None and record.ttft_s is None:
            record.ttft_s = first - self.started
        await self.recorder(record)

    def _count_partial_answer(self) -> None:
        """A client that left mid-answer still received part of it: the counterfactual is what
        Cerebras would have billed for that part (the committed call's tokens so far)."""
        record, committed = self.record, self.sink.model_used
        if not self.sink.committed or committed is None:
            return
        record.model_used = committed  # type: ignore[assignment]
        if record.counterfactual_prompt_tokens or record.counterfactual_completion_tokens:
            return
        for call in reversed(record.calls):
            if call.upstream == committed:
                record.delivered_by(call)
                return
