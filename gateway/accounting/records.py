"""What one client request did, as recorded in the ledger and summed by the statistics.

A `RequestRecord` is written exactly once per client request, when the request ends (success,
error, or client disconnect). It lists every upstream call the request made (answer, fallback,
draft and verify calls alike) with the tokens each call was billed for, so that costs and
savings are computed from what really happened and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

UpstreamName = Literal["local", "cerebras"]
CallRole = Literal["answer", "draft", "verify", "verify_sample"]
CallStatus = Literal["ok", "cancelled", "error", "rate_limited"]
Outcome = Literal["ok", "error", "client_disconnected", "rejected"]
# The outcome of a request refused before any upstream call (gateway.accounting.refusals).
REFUSED: Literal["rejected"] = "rejected"
UPSTREAM_NAMES: tuple[UpstreamName, ...] = ("local", "cerebras")


@dataclass(slots=True)
class UpstreamCall:
    """One HTTP call to an upstream and the tokens it was billed for.

    `completion_tokens` counts tokens up to the moment the call ended or was cancelled; when the
    upstream sent no usage, both counts are estimates and `estimated` is True.
    """

    upstream: UpstreamName
    role: CallRole = "answer"
    status: CallStatus = "ok"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    estimated: bool = False
    error: str | None = None
    http_status: int | None = None
    # Part of completion_tokens spent thinking: the upstream's usage.completion_tokens_details
    # .reasoning_tokens when reported, else estimated from the streamed reasoning text.
    reasoning_tokens: int = 0
    # The call carried the gateway's own "do not think" parameter and the upstream accepted it.
    thinking_off: bool = False


@dataclass(slots=True)
class SpeculativeRecord:
    """The verdict of a speculative request (the spec's response metadata plus `decided_by`)."""

    draft_tokens: int = 0
    verified_tokens: int = 0
    accepted: bool = False
    spilled_over: bool = False
    similarity: float = 0.0
    decided_by: str = ""


@dataclass(slots=True)
class RequestRecord:
    """Everything the ledger keeps about one client request.

    `counterfactual_prompt_tokens` and `counterfactual_completion_tokens` are what the request
    would have cost had Cerebras served the delivered answer (prompt as sent, completion as
    delivered), `counterfactual_cached_tokens` the part of that prompt Cerebras reported cached
    when it did serve it; the saving is that counterfactual's price minus what was really billed
    (gateway.accounting.bill).
    """

    request_id: str
    started_at: float
    strategy: str
    stream: bool
    # The client protocol it came through (gateway.doors): chat, messages, responses.
    door: str = "chat"
    outcome: Outcome = "ok"
    http_status: int = 200
    model_used: UpstreamName | None = None
    error_type: str | None = None
    calls: list[UpstreamCall] = field(default_factory=list)
    ttft_s: float | None = None
    duration_s: float = 0.0
    routing_reason: str | None = None
    fallback: bool = False
    speculative: SpeculativeRecord | None = None
    counterfactual_prompt_tokens: int = 0
    counterfactual_completion_tokens: int = 0
    counterfactual_cached_tokens: int = 0

    def delivered_by(self, call: UpstreamCall) -> None:
        """The delivered answer is `call`'s: its tokens are the counterfactual (a cache is
        counted only when it was Cerebras' own)."""
        self.counterfactual_prompt_tokens = call.prompt_tokens
        self.counterfactual_completion_tokens = call.completion_tokens
        self.counterfactual_cached_tokens = call.cached_tokens if call.upstream == "cerebras" else 0
