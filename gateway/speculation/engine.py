"""One speculative request: start the calls, wait for the windows, decide, commit one stream.

The verdict, in order (the first rule that applies decides; `decided_by` names it):

1. The verify answer finished before the verdict (`verify_complete`): it is paid in full, so
   it is committed; nothing is left to save and it is the better answer.
2. No draft has answer content: the verify stream is committed (`draft_failed`, `draft_refused`,
   `draft_empty`, `draft_timeout`) once it has content; if it fails before, a live draft is
   (`verify_failed`, ...); with `verify_start: after_draft` Cerebras answers alone.
3. Local signals, without Cerebras: several drafts agreeing (`consensus`, parallel only), a draft
   finished below `max_draft_tokens` (`short_draft`), confident llama.cpp logprobs (`logprobs`);
   with `scorer: learned`, the router's draft model instead (`learned`). A draft that hedges or
   refuses ("I'm not sure", "I can't" ...) gets no local signal: it goes to verification, and a
   usable verify answer is committed (`draft_hedged`); so does a draft the learned scorer escalates.
4. Verification unavailable: the draft is committed (`verify_refused`, `verify_failed`,
   `verify_rate_limited`, `verify_timeout`).
5. The windows compared (`levenshtein`, `token_set`, `final_answer`, `tool_calls`): at or above
   the threshold the draft is committed, else the verify stream.

The loser is cancelled at the verdict, before the winner's window is replayed. A committed
stream that fails after its content reached the client is continued on the other upstream when
it may be (gateway.serving.continuation), as for every strategy.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence

from gateway.accounting.records import SpeculativeRecord, UpstreamName
from gateway.config import GatewayConfig, ThinkingMode
from gateway.errors import UpstreamEmptyResponse, UpstreamError, UpstreamRateLimited
from gateway.quota.admission import Refusal, Ticket
from gateway.router import Router, hedges
from gateway.router.answer import logprob_confidence
from gateway.router.choice import Route, RouteChoice, choose_route
from gateway.serving.continuation import continue_stream
from gateway.serving.exchange import Exchange
from gateway.serving.relay import complete, no_upstream_error, serve
from gateway.speculation.cost import prompt_cost_share
from gateway.speculation.race import Lane, Race
from gateway.speculation.verdict import SCORER_NAMES, SCORERS, Score, agreement
from gateway.speculation.window import Window
from gateway.wire.sinks import StreamSink

log = logging.getLogger("gateway.speculation")

# `speculative_decoding.scorer: learned`: the router judges the draft itself (Router.judge_draft).
LEARNED_SCORER = "learned"
# Every name `speculative_decoding.scorer` accepts (gateway.strategies.known_names).
SCORER_CHOICES: tuple[str, ...] = (*SCORER_NAMES, LEARNED_SCORER)

Verify = Lane | Refusal | None


def _finished(verify: Verify) -> bool:
    return isinstance(verify, Lane) and verify.window.finished and verify.window.usable


class Speculator:
    """What the speculative strategies of one app share: settings, scorer and router."""

    def __init__(self, config: GatewayConfig, router: Router | None = None) -> None:
        self.cfg = config.speculative_decoding
        # A routed request goes to the draft upstream when simple, the verifying one when not.
        self.pair: Route = (self.cfg.draft_model, self.cfg.verify_model)
        # The app's shared router; a private in-memory one when none is given (unit use).
        self.router = router if router is not None else Router(config, store_path=None)
        # `learned` judges the draft itself; window comparisons then use levenshtein.
        self.learned = self.cfg.scorer == LEARNED_SCORER
        self.scorer = SCORERS["levenshtein" if self.learned else self.cfg.scorer]
        self.prices = config.models[self.cfg.verify_model].prices

    async def serve(
        self, ex: Exchange, *, drafts: int, label: str, choice: RouteChoice | None = None
    ) -> None:
        """Serve `ex` speculatively with `drafts` local drafts, unless it cannot pay off.

        `choice`: the route a caller already chose for `ex` (see `route`); its thinking mode is
        the calls'."""
        cfg = self.cfg
        if not cfg.enabled:
            await self.route(ex, f"{label}: speculation disabled", choice)
            return
        share = prompt_cost_share(ex.body, self.prices, cfg.expected_answer_tokens)
        if share > cfg.cost_skip_ratio:
            why = (
                f"{label}: speculation skipped, the prompt is {share:.0%} of a full answer's "
                f"cost (> {cfg.cost_skip_ratio:.0%})"
            )
            await self.route(ex, why, choice)
            return
        thinking = choice.thinking if choice is not None else None
        await Speculation(self, ex, drafts, label, thinking).run()

    async def route(self, ex: Exchange, why: str, choice: RouteChoice | None = None) -> None:
        """No speculation: `choice`, or when None the router (`routing.router`), picks the
        upstream; a request is classified only once, so the router counts it once."""
        if choice is None:
            choice = choose_route(ex.request_id, ex.body, self.router, pair=self.pair)
        log.info("%s %s; %s", ex.request_id, why, choice.reason)
        await serve(ex, choice.route, reason=f"{why}; {choice.reason}", thinking=choice.thinking)


class Speculation:
    """The speculative run of one request (see the module docstring for the verdict)."""

    def __init__(
        self,
        owner: Speculator,
        ex: Exchange,
        drafts: int,
        label: str,
        thinking: ThinkingMode | None = None,
    ) -> None:
        """`thinking`: the route choice's thinking mode (None: no choice was made)."""
        self.cfg = owner.cfg
        self.scorer = owner.scorer
        self.router = owner.router
        self.learned = owner.learned
        # Set when the draft must not be committed even if the windows agree: (decided_by,
        # detail), for a hedging draft or the learned scorer's escalation.
        self.escalation: tuple[str, str] | None = None
        self.accept_detail: str | None = None  # why the learned scorer accepted the draft
        self.ex = ex
        self.drafts = drafts
        self.label = label
        self.thinking = thinking
        self.limit = None if self.scorer.needs_full_answer else self.cfg.max_draft_tokens
        self.loop = asyncio.get_running_loop()
        seed = ex.body.get("seed")
        self.seed = seed if isinstance(seed, int) else random.randrange(1, 2**31)
        body = ex.body
        self.add_logprobs = (
            (self.cfg.logprob_signal or self.learned)
            and not body.get("tools")
            and body.get("logprobs") is not True
        )

    async def run(self) -> None:
        sink = self.ex.sink
        model = self.ex.body.get("model")
        if isinstance(sink, StreamSink) and isinstance(model, str) and not sink.model_name:
            sink.model_name = model  # the role chunk goes out before an upstream names one
        failure: Exception | None = None
        try:
            async with asyncio.TaskGroup() as group:
                race = Race(self.ex, group, thinking=self.thinking)
                race.announce_after(self.cfg.announce_after)
                try:
                    await self._serve(race)
                except Exception as exc:  # re-raised below, once every call is closed
                    failure = exc
                finally:
                    race.cancel_all()
        finally:
            self._publish()
        if failure is not None:
            raise failure

    # --- calls ----------------------------------------------------------------------------------

    async def _admit(self, name: UpstreamName) -> Ticket | Refusal | None:
        """The gate's answer for a call to `name` (None when it is disabled)."""
        upstream = self.ex.upstreams[name]
        if not upstream.enabled:
            return None
        estimate = self.ex.prompt_estimate(name)
        return await self.ex.gate.admit(upstream.name, self.ex.body, estimate)

    def _start_draft(self, race: Race, index: int, admission: Ticket | Refusal | None) -> Lane:
        ex = self.ex
        upstream = ex.upstreams[self.cfg.draft_model]
        overrides: dict[str, object] = {}
        if self.drafts > 1:
            overrides["seed"] = self.seed + index
        if self.add_logprobs:
            overrides.update(logprobs=True, top_logprobs=1)
        label = "draft" if self.drafts == 1 else f"draft{index + 1}"
        lane = Lane(
            upstream,
            "draft",
            label,
            Window(self.limit),
            overrides=overrides,
            strip_logprobs=self.add_logprobs,
        )
        if admission is not None:
            if not isinstance(admission, Refusal):
                return race.start(lane, admission)
            refusal = admission
        else:
            refusal = Refusal(upstream.name, f"{upstream.name} is disabled")
        log.info("%s no %s: %s", ex.request_id, label, refusal.reason)
        lane.refusal = refusal
        lane.window.error = UpstreamError(upstream.name, f"{upstream.name}: {refusal.reason}")
        race.lanes.append(lane)
        return lane

    def _start_verify(self, race: Race, admission: Ticket | Refusal | None) -> Lane | Refusal:
        ex = self.ex
        upstream = ex.upstreams[self.cfg.verify_model]
        if admission is None:
            return Refusal(upstream.name, f"{upstream.name} is disabled")
        if isinstance(admission, Refusal):
            log.info("%s no verification: %s", ex.request_id, admission.reason)
            return admission
        return race.start(Lane(upstream, "verify", "verify", Window(self.limit)), admission)

    # --- verdict --------------------------------------------------------------------------------

    async def _serve(self, race: Race) -> None:
        cfg = self.cfg
        deadline = self.loop.time() + cfg.draft_timeout
        verify: Verify = None
        if cfg.verify_start == "concurrent":
            admission = await self._admit(cfg.verify_model)
            verify = self._start_verify(race, admission)
        drafts = []
        for i in range(self.drafts):
            admission = await self._admit(cfg.draft_model)
            drafts.append(self._start_draft(race, i, admission))
        await race.pump(lambda: _finished(verify) or all(d.window.ready for d in drafts), deadline)
        if len(drafts) > 1 and not any(d.window.usable for d in drafts) and not _finished(verify):
            log.info("%s every parallel draft failed; one sequential draft", self.ex.request_id)
            admission = await self._admit(cfg.draft_model)
            drafts = [self._start_draft(race, len(drafts), admission)]
            deadline = self.loop.time() + cfg.draft_timeout
            await race.pump(lambda: _finished(verify) or drafts[0].window.ready, deadline)
        await self._decide(race, drafts, verify, deadline)

    async def _decide(
        self, race: Race, drafts: list[Lane], verify: Verify, deadline: float
    ) -> None:
        cfg = self.cfg
        candidates = [d for d in drafts if d.window.usable and d.window.has_answer]
        chosen, consensus = self._choose(candidates)
        if isinstance(verify, Lane) and _finished(verify):
            similarity = self._compare(chosen.window, verify.window) if chosen else None
            await self._commit(race, verify, "verify_complete", similarity)
            return
        if chosen is None:
            await self._without_draft(race, drafts, verify)
            return
        for draft in drafts:
            if draft is not chosen:
                await race.stop(draft)
        signal = self._local_signal(chosen, consensus)
        if signal is not None:
            detail = self.accept_detail if signal == "learned" else None
            await self._commit(race, chosen, signal, consensus, detail=detail)
            return
        if verify is None:
            admission = await self._admit(cfg.verify_model)
            verify = self._start_verify(race, admission)
            deadline = self.loop.time() + cfg.draft_timeout
        if isinstance(verify, Refusal):
            await self._commit(race, chosen, "verify_refused")
            return
        lane = verify
        await race.pump(
            lambda: lane.window.ready or chosen.window.error is not None,
            max(deadline, self.loop.time()),
        )
        window = lane.window
        if chosen.window.error is not None:
            if not window.usable:
                raise no_upstream_error([chosen.window.error, *self._errors([lane])])
            await self._commit(race, lane, "draft_failed")
        elif window.error is not None:
            limited = isinstance(window.error, UpstreamRateLimited)
            await self._commit(race, chosen, "verify_rate_limited" if limited else "verify_failed")
        elif not window.has_answer:
            await self._commit(
                race, chosen, "verify_failed" if window.finished else "verify_timeout"
            )
        elif self.escalation is not None:
            decided_by, detail = self.escalation
            await self._commit(race, lane, decided_by, detail=detail)
        else:
            score = self._compare(chosen.window, window)
            if window.finished:
                await self._commit(race, lane, "verify_complete", score)
            elif score.value >= self._threshold(score):
                await self._commit(race, chosen, score.method, score)
            else:
                await self._commit(race, lane, score.method, score)

    async def _without_draft(self, race: Race, drafts: list[Lane], verify: Verify) -> None:
        """No draft has answer content: Cerebras answers if it can, else a live draft."""
        why = self._draft_trouble(drafts)
        if isinstance(verify, Lane) and verify.window.usable:
            window = verify.window
            # Commit only on content: until Cerebras sent some, a live draft may still answer.
            await race.pump(lambda: window.has_content or not window.usable, None)
            if window.usable:
                await self._commit(race, verify, why)
                return
        if verify is None:
            await race.stop_all()
            self._record(accepted=False, decided_by=why)
            self._publish()
            reason = f"{self.label}: no usable draft ({why}), {self.cfg.verify_model} answers"
            log.info("%s %s", self.ex.request_id, reason)
            await serve(self.ex, (self.cfg.verify_model,), reason=reason, thinking=self.thinking)
            return
        alive = [d for d in drafts if d.window.usable]
        if alive:
            await self._commit(race, alive[0], self._verify_trouble(verify))
            return
        raise no_upstream_error([*self._errors(drafts), *self._errors([verify])])

    def _choose(self, candidates: list[Lane]) -> tuple[Lane | None, Score | None]:
        """The draft agreeing most with the others, and its mean agreement (None if alone)."""
        if len(candidates) < 2:
            return (candidates[0] if candidates else None), None
        scores = {
            (i, j): self._compare(a.window, b.window)
            for i, a in enumerate(candidates)
            for j, b in enumerate(candidates)
            if i < j
        }
        best: tuple[Lane, Score] | None = None
        for i, lane in enumerate(candidates):
            mine = [s for pair, s in scores.items() if i in pair]
            tools = any(s.method == "tool_calls" for s in mine)
            mean = Score(sum(s.value for s in mine) / len(mine), "tool_calls" if tools else "text")
            if best is None or mean.value > best[1].value:
                best = (lane, mean)
        assert best is not None
        return best

    def _local_signal(self, chosen: Lane, consensus: Score | None) -> str | None:
        cfg = self.cfg
        window = chosen.window
        text = window.answer().text if window.has_answer else ""
        if hedges(text):  # before every accepting signal: a short hedge is no answer
            self.escalation = ("draft_hedged", "draft_hedged: the draft hedges or refuses")
            return None
        if consensus is not None:
            return "consensus" if consensus.value >= self._threshold(consensus) else None
        if not window.ready:
            return None
        if self.learned:
            decision = self.router.judge_draft(
                self.ex.request_id,
                self.ex.body,
                text,
                window.tokens,
                complete=window.complete,
                logprobs=window.logprobs,
            )
            log.info("%s draft %s", self.ex.request_id, decision.reason)
            if not decision.cloud:
                self.accept_detail = decision.reason
                return "learned"
            self.escalation = ("learned", decision.reason)
            return None
        if cfg.accept_short_drafts and window.complete and window.tokens < cfg.max_draft_tokens:
            return "short_draft"
        if cfg.logprob_signal and window.logprobs:
            mean, low = logprob_confidence(window.logprobs, cfg.logprob_low_quantile)
            log.info(
                "%s draft token probability: mean %.3f, p%.0f %.3f",
                self.ex.request_id,
                mean,
                cfg.logprob_low_quantile * 100,
                low,
            )
            if mean >= cfg.logprob_min_mean and low >= cfg.logprob_min_low:
                return "logprobs"
        return None

    def _compare(self, a: Window, b: Window) -> Score:
        """Agreement of two windows, a cut one compared to as much of the other."""
        open_lengths = [w.tokens for w in (a, b) if not w.complete]
        cut = min(open_lengths) if open_lengths else None
        scorer = self.scorer
        if scorer.needs_full_answer and cut is not None:
            scorer = SCORERS["levenshtein"]
        return agreement(
            a.answer(None if a.complete else cut), b.answer(None if b.complete else cut), scorer
        )

    def _threshold(self, score: Score) -> float:
        if score.method == "tool_calls":
            return self.cfg.tool_call_min_similarity
        return self.cfg.min_confidence

    @staticmethod
    def _draft_trouble(drafts: list[Lane]) -> str:
        if all(d.refusal is not None for d in drafts):
            return "draft_refused"
        if any(d.window.error is None and d.window.finished for d in drafts):
            return "draft_empty"
        if all(d.window.error is not None for d in drafts):
            return "draft_failed"
        return "draft_timeout"

    @staticmethod
    def _verify_trouble(verify: Lane | Refusal) -> str:
        if isinstance(verify, Refusal):
            return "verify_refused"
        if isinstance(verify.window.error, UpstreamRateLimited):
            return "verify_rate_limited"
        return "verify_failed"

    @staticmethod
    def _errors(lanes: Sequence[Lane | Refusal | None]) -> list[UpstreamError | Refusal]:
        out: list[UpstreamError | Refusal] = []
        for lane in lanes:
            if lane is None:
                continue
            if isinstance(lane, Refusal):
                out.append(lane)
            elif lane.refusal is not None:
                out.append(lane.refusal)
            elif lane.window.error is not None:
                out.append(lane.window.error)
        return out

    # --- commit and record ----------------------------------------------------------------------

    async def _commit(
        self,
        race: Race,
        lane: Lane,
        decided_by: str,
        score: Score | None = None,
        *,
        detail: str | None = None,
    ) -> None:
        """Cancel every other call, then stream `lane` to the client and finish the response.

        `detail` (e.g. the learned scorer's reason) replaces `decided_by` in routing_reason."""
        ex = self.ex
        await race.stop_all(keep=lane)
        accepted = lane.role == "draft"
        self._record(accepted=accepted, decided_by=decided_by, score=score)
        verdict = "draft accepted" if accepted else f"{lane.name} committed"
        if detail is None:
            detail = decided_by
            if score is not None and decided_by in (score.method, "consensus"):
                relation = ">=" if score.value >= self._threshold(score) else "<"
                detail += f" {score.value:.2f} {relation} {self._threshold(score):.2f}"
            elif score is not None:
                detail += f", similarity {score.value:.2f}"
        ex.set_reason(f"{self.label}: {verdict} ({detail})")
        log.info("%s verdict: %s (%s)", ex.request_id, verdict, detail)
        self._publish()
        try:
            stream = await race.commit(lane)
        except UpstreamError as exc:
            self._publish()  # the continuation finishes the response with this metadata
            if ex.sink.committed and await continue_stream(ex, exc):
                return
            raise
        if not ex.sink.has_answer():
            raise UpstreamEmptyResponse(
                lane.name, f"{lane.name}: answer had neither text nor a tool call"
            )
        self._publish()
        await complete(ex, lane.name, stream)

    def _record(self, *, accepted: bool, decided_by: str, score: Score | None = None) -> None:
        self.ex.record.speculative = SpeculativeRecord(
            accepted=accepted,
            spilled_over=not accepted,
            similarity=round(score.value, 4) if score is not None else 0.0,
            decided_by=decided_by,
        )

    def _publish(self) -> None:
        """Fill the verdict's token counts from the settled calls; expose it as metadata."""
        record = self.ex.record
        spec = record.speculative
        if spec is None:
            return
        spec.draft_tokens = sum(c.completion_tokens for c in record.calls if c.role == "draft")
        spec.verified_tokens = sum(c.completion_tokens for c in record.calls if c.role == "verify")
        self.ex.metadata["speculative_decoding"] = {
            "draft_tokens": spec.draft_tokens,
            "verified_tokens": spec.verified_tokens,
            "accepted": spec.accepted,
            "spilled_over": spec.spilled_over,
            "similarity": spec.similarity,
            "decided_by": spec.decided_by,
        }
