"""Verification samples (`routing.learn.verify_sample`): a share of local answers is also asked of
Cerebras after the client's response ended, compared with the verdict scorers, and the comparison
becomes a router label (source `verify_sample`). Off by default: every sample is a paid call.

Contracts:
- `draw()`, at request start: True for a share `verify_sample` of requests, never when it is 0.
  Only a drawn request keeps its streamed answer (gateway.wire.sinks.KeepingStreamSink; a
  CollectSink assembles it anyway), so other requests pay nothing per chunk.
- `submit(ex)`, after the response was delivered: when local committed an `ok`, complete answer
  (not cut by `length`), starts one tracked background task; nothing else runs on the request
  path.
- The task asks the app's gate (budget, 429 cool-downs, prediction) like any Cerebras call; a
  refusal skips the sample. The call streams internally like every upstream call, with thinking
  off (reasoning is not compared, and Cerebras bills it as output) and `max_completion_tokens`
  capped by `verify_cap`. It is recorded as its own ledger row (strategy and call role
  `verify_sample`), so the budget, /stats and /metrics count its cost.
- Label: bad when the local answer agrees below the threshold (`tool_call_min_similarity` when
  tool calls decide, else `min_confidence`), good otherwise, through Learning's LabelBook
  (persisted in learning.db, handed to Router.learn). No label when the call fails or is empty.
- `close()` waits `CLOSE_GRACE_S` for samples in flight, then cancels the rest; nothing leaks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.accounting.bill import Bill
from gateway.accounting.records import RequestRecord
from gateway.accounting.tokens import completion_limit, estimate_text_tokens, once
from gateway.config import GatewayConfig
from gateway.errors import UpstreamError
from gateway.quota.admission import Refusal, UpstreamGate
from gateway.router.labels import LabelBook
from gateway.serving.exchange import Exchange
from gateway.serving.pump import pump_call
from gateway.speculation.verdict import SCORERS, Answer, Score, ToolCall, agreement
from gateway.upstreams import Upstream
from gateway.wire.assembly import Assembly, ChoiceParts
from gateway.wire.chunk import Chunk
from gateway.wire.sinks import CollectSink, KeepingStreamSink, Sink

log = logging.getLogger("gateway.speculation.verify_sample")

SOURCE: Final = "verify_sample"
CLOSE_GRACE_S = 5.0
# The cap: enough Cerebras tokens to decide the comparison (see `verify_cap`).
MIN_CAP = 64
CAP_MARGIN = 16
MAX_CAP_FACTOR = 3.0

# Stores a finished record and returns its bill (gateway.accounting.recorder.Recorder.record).
Recorder = Callable[[RequestRecord], Awaitable[Bill]]


@dataclass(frozen=True, slots=True)
class Sample:
    """A local answer to verify: the client's request and what local answered."""

    request_id: str
    body: Mapping[str, Any]
    answer: Answer
    cap: int


def answer_of(parts: ChoiceParts) -> Answer:
    """The verdict's view of one assembled choice (text and tool calls, reasoning excluded)."""
    calls = tuple(
        ToolCall(call.name, "".join(call.arguments)) for _, call in sorted(parts.tool_calls.items())
    )
    return Answer(parts.text, calls, complete=parts.finish_reason != "length")


def kept_answer(sink: Sink) -> Answer | None:
    """The committed answer a sink kept (choice 0), or None when it keeps none. Any door's sink
    keeps one by exposing an Assembly as `kept` (a stream) or `assembly` (a whole body)."""
    assembly: Assembly
    if isinstance(sink, KeepingStreamSink):
        assembly = sink.kept
    elif isinstance(sink, CollectSink):
        assembly = sink.assembly
    else:
        found = getattr(sink, "kept", None) or getattr(sink, "assembly", None)
        if not isinstance(found, Assembly):
            return None
        assembly = found
    if not assembly.has_answer():
        return None
    return answer_of(assembly.first())


def verify_cap(answer: Answer, threshold: float, client_limit: int | None) -> int:
    """`max_completion_tokens` for the verification call.

    Two texts of a and b characters agree at most 2a/(a+b) by levenshtein, so once Cerebras's
    answer is longer than a*(2/threshold - 1) the verdict is "disagrees" whatever follows: more
    tokens would not change the label. The factor is bounded to 1..3 (token counts are
    estimates), never below MIN_CAP, never above the client's own limit."""
    chars = len(answer.text) + sum(len(c.name) + len(c.arguments) for c in answer.tool_calls)
    factor = min(MAX_CAP_FACTOR, max(1.0, 2.0 / max(threshold, 1e-6) - 1.0))
    cap = max(MIN_CAP, math.ceil(estimate_text_tokens(chars) * factor) + CAP_MARGIN)
    return min(cap, client_limit) if client_limit is not None else cap


class VerifySampler:
    """See the module docstring. One per app (Services.verifier)."""

    def __init__(
        self,
        config: GatewayConfig,
        upstream: Upstream,
        gate: UpstreamGate,
        labels: LabelBook,
        recorder: Recorder,
        *,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.share = config.routing.learn.verify_sample
        self.verdict = config.speculative_decoding
        # `learned` judges drafts, not pairs of answers: compare with levenshtein then.
        name = self.verdict.scorer
        self.scorer = SCORERS[name if name in SCORERS else "levenshtein"]
        self.upstream = upstream
        self.gate = gate
        self.labels = labels
        self.recorder = recorder
        self.rng = rng
        self.closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.counts = {"samples": 0, "refused": 0, "failed": 0, "good": 0, "bad": 0}
        self.cost_usd = 0.0

    # --- the request path -----------------------------------------------------------------------

    def draw(self) -> bool:
        """Whether a new request is a sample candidate (decided before it is served)."""
        return self.share > 0 and not self.closed and self.rng() < self.share

    def submit(self, ex: Exchange) -> bool:
        """Verify `ex`'s answer in the background if local committed a complete one."""
        record = ex.record
        if self.closed or record.outcome != "ok" or record.model_used != "local":
            return False
        if ex.sink.model_used != "local" or not self.upstream.enabled:
            return False
        if self.upstream.precheck() is not None:  # no API key: no call at all
            return False
        answer = kept_answer(ex.sink)
        if answer is None or not answer.complete:
            return False
        threshold = (
            self.verdict.tool_call_min_similarity if answer.tool_calls
            else self.verdict.min_confidence
        )  # fmt: skip
        cap = verify_cap(answer, threshold, completion_limit(ex.body))
        sample = Sample(ex.request_id, ex.body, answer, cap)
        task = asyncio.get_running_loop().create_task(
            self._run(sample), name=f"verify_sample:{ex.request_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    # --- the background task --------------------------------------------------------------------

    async def _run(self, sample: Sample) -> None:
        try:
            reference = await self._ask(sample)
            if reference is not None:
                self._label(sample, reference)
        except asyncio.CancelledError:
            raise
        except Exception:  # a sample is optional: a bug here must never surface anywhere else
            log.exception("req=%s verification sample failed", sample.request_id)

    async def _ask(self, sample: Sample) -> Answer | None:
        """Cerebras's answer to the sampled request; None when refused, failed or empty."""
        name = self.upstream.name
        body = dict(sample.body)
        body.pop("max_tokens", None)
        body.pop("n", None)
        body["max_completion_tokens"] = sample.cap
        estimate = self.upstream.chars_per_token.estimate(once(body))
        admission = await self.gate.admit(name, body, estimate)
        if isinstance(admission, Refusal):
            self.counts["refused"] += 1
            log.info("req=%s verification sample skipped: %s", sample.request_id,
                     admission.reason)  # fmt: skip
            return None
        self.counts["samples"] += 1
        record = RequestRecord(
            request_id=f"{sample.request_id}:{SOURCE}",
            started_at=time.time(),
            strategy=SOURCE,
            stream=False,
            routing_reason=f"verification sample of {sample.request_id}",
        )
        record.model_used = "cerebras"
        started = time.monotonic()
        assembly = Assembly()

        async def feed(batch: list[Chunk]) -> None:
            for chunk in batch:
                assembly.add_chunk(chunk.data)

        try:
            await pump_call(
                self.upstream,
                body,
                calls=record.calls,
                ticket=admission,
                gate=self.gate,
                feed=feed,
                role=SOURCE,
                request_id=record.request_id,
                thinking="off",
            )
        except UpstreamError as exc:
            record.outcome, record.error_type = "error", exc.error_type
            record.http_status = exc.status
            self.counts["failed"] += 1
            log.info("req=%s verification sample failed: %s", sample.request_id, exc.message)
            return None
        except asyncio.CancelledError:  # shutdown cut it short: a paid call, not a good one
            record.outcome, record.error_type = "error", "cancelled"
            raise
        finally:
            record.duration_s = time.monotonic() - started
            await self._record(record)
        if not assembly.has_answer():
            self.counts["failed"] += 1
            log.info("req=%s verification sample: empty answer", sample.request_id)
            return None
        return answer_of(assembly.first())

    async def _record(self, record: RequestRecord) -> None:
        """Store the sample's record and count what it cost."""
        try:
            self.cost_usd += (await self.recorder(record)).total_usd
        except Exception:  # the ledger's own errors are logged there; never fail the sample
            log.exception("req=%s verification sample could not be recorded", record.request_id)

    def _label(self, sample: Sample, reference: Answer) -> None:
        scorer = self.scorer
        if scorer.needs_full_answer and not reference.complete:
            scorer = SCORERS["levenshtein"]
        score: Score = agreement(sample.answer, reference, scorer)
        threshold = (
            self.verdict.tool_call_min_similarity if score.method == "tool_calls"
            else self.verdict.min_confidence
        )  # fmt: skip
        bad = score.value < threshold
        self.counts["bad" if bad else "good"] += 1
        self.labels.add(
            sample.request_id, bad=bad, source=SOURCE, score=score.value,
            detail=f"cerebras agrees {score.value:.3f} by {score.method} (threshold {threshold:g})",
        )  # fmt: skip

    # --- lifecycle and statistics ---------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def drain(self) -> None:
        """Wait until every sample in flight has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self, grace: float = CLOSE_GRACE_S) -> None:
        """Start no more samples; wait `grace` seconds for those in flight, cancel the rest."""
        self.closed = True
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        await self.drain()

    def snapshot(self) -> dict[str, Any]:
        """The `/stats` learning.verify_samples block (since start; labels persist apart)."""
        return {
            "share": self.share,
            **self.counts,
            "in_flight": self.in_flight,
            "cost_usd": round(self.cost_usd, 6),
        }
