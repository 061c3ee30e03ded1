"""Learning from outcomes, wired together: one `Learning` per app (Services.learning and
StrategyContext.learning).

- agent-loop signals and escalation: gateway.router.escalation.ConversationTracker;
- explicit feedback: `feedback(request_id, score)` (the HTTP side is gateway.http.feedback);
- verification samples (`routing.learn.verify_sample`):
  gateway.speculation.verify_sample.VerifySampler, which labels through `labels` below (source
  `verify_sample`);
- labels: gateway.router.labels.LabelBook, handed to the `learner` (the app's Router.learn).

Everything is persisted in `learning.db` beside the ledger.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.config import GatewayConfig
from gateway.router.conversation import CACHE
from gateway.router.escalation import ConversationTracker
from gateway.router.labels import LabelBook, Learner, LearningStore, store_path_beside
from gateway.storage.writer import WriterThread

# Feedback scores live in -1..1: below 0 the answer was bad, above 0 good, |score| the weight.
SCORE_MIN = -1.0
SCORE_MAX = 1.0


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    """`known`: the request id was served by this gateway; `applied`: the learner took the
    label; `escalated`: bad feedback on a local answer moved its conversation to Cerebras."""

    known: bool
    model_used: str | None = None
    bad: bool | None = None
    applied: bool = False
    escalated: bool = False


class Learning:
    """See the module docstring. `close()` commits what is queued."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        learner: Learner | None,
        on_escalated_turn: Callable[[], None] | None = None,
        store_path: str | None = None,
        writer: WriterThread | None = None,
    ) -> None:
        routing = config.routing
        self.config = config
        path = store_path or store_path_beside(config.storage.ledger_path)
        self.store = LearningStore(path, writer=writer)
        escalation, learn = routing.escalation, routing.learn
        CACHE.resize(escalation.fingerprint_cache)
        loaded = self.store.load(
            ttl_seconds=escalation.ttl_seconds,
            max_rows=escalation.max_turns,
            max_conversations=escalation.max_conversations,
            max_labels=learn.max_labels,
            label_ttl_seconds=learn.label_ttl_seconds,
        )
        self.labels = LabelBook(self.store, learner, dict(loaded.label_counts))
        self.tracker = ConversationTracker(
            routing.escalation,
            routing.learn,
            self.store,
            self.labels,
            loaded,
            on_escalated_turn=on_escalated_turn,
        )

    def feedback(self, request_id: str, score: float) -> FeedbackResult:
        """Apply a user's score (-1..1) to a request this gateway answered.

        Only local answers become labels ("was the local answer good enough"); a score for a
        Cerebras answer is stored but teaches the router nothing. Bad feedback on a local answer
        also escalates the rest of its conversation."""
        if not math.isfinite(score) or not SCORE_MIN <= score <= SCORE_MAX:
            raise ValueError(f"score must be a number from {SCORE_MIN:g} to {SCORE_MAX:g}")
        turn = self.tracker.turns.get(request_id)
        if turn is None:
            return FeedbackResult(known=False)
        if score == 0:
            self.store.put_label(request_id, "feedback", False, 0.0, score, False, "neutral")
            return FeedbackResult(True, turn.model_used)
        bad = score < 0
        if turn.model_used != "local":
            self.store.put_label(
                request_id, "feedback", bad, abs(score), score, False, f"{turn.model_used} answer"
            )
            return FeedbackResult(True, turn.model_used, bad)
        applied = self.labels.add(
            request_id, bad=bad, source="feedback", weight=abs(score), score=score,
            detail=f"score {score:g}",
        )  # fmt: skip
        escalated = bad and self.tracker.escalate_request(
            request_id, f"was rated bad (feedback {score:g})"
        )
        return FeedbackResult(True, turn.model_used, bad, applied, escalated)

    def snapshot(self) -> dict[str, Any]:
        """The `/stats` learning block."""
        return {
            **self.tracker.snapshot(),
            "labels_applied": dict(sorted(self.labels.counts.items())),
        }

    def usage(self) -> dict[str, dict[str, Any]]:
        """Sizes and bounds of the conversation state and learning.db (`/stats` memory)."""
        return {
            "fingerprint_cache": CACHE.entries.usage(),
            **self.tracker.usage(),
            **self.store.usage(),
        }

    def flush(self) -> None:
        self.store.flush()

    async def committed(self) -> None:
        """Wait until the learned state queued so far (labels, escalations, the router's weights)
        is committed; `feedback` answers only then."""
        await self.store.committed()

    def close(self) -> None:
        self.store.close()
