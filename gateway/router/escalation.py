"""Escalation: a conversation whose local turn failed goes to Cerebras for its following turns.

`ConversationTracker` follows each conversation (gateway.router.conversation) from request to
request:

- `begin(request_id, body, headers)`, before the strategy runs: finds the conversation, reads the
  agent-loop signal of the previous answer (gateway.router.signals) and, when that answer was the
  local model's, labels it bad (source `agent_loop`) and escalates the conversation. A local
  answer the next request shows no failure for is labelled good with `agent_loop_ok_weight`.
  A request with no assistant turn yet starts a new task and ends any escalation of its key.
- `escalation(request_id)`: the reason to send this request to Cerebras, or None. Strategies that
  choose between local and Cerebras (smart_routing, smart_speculative) ask it and then route
  ("cerebras", "local") through the relay's `serve`, so the budget and the rate-limit gate still
  decide whether Cerebras may be called, and local still serves when it may not.
- `finish(request_id, model_used)`, after the response: remembers who answered which turn.
- `escalate_request(request_id, reason)`: explicit bad feedback escalates the rest of its task.

`routing.escalation.turns`: None keeps the conversation on Cerebras until its task ends (a new
task of the same key, or the TTL); an int, for that many requests. State is an LRU of at most
`max_conversations` keys, each forgotten `ttl_seconds` after its last turn, persisted in
`learning.db` (gateway.router.labels) so an escalation survives a restart. Answers (`turns`, for
feedback) are an LRU of at most `max_turns`. A forgotten conversation loses its escalation and
the judging of its last answer; its requests are served as any other.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.bounded import BoundedLRU
from gateway.config import EscalationConfig, LearnConfig
from gateway.router.conversation import TurnView, view
from gateway.router.labels import ConversationRow, LabelBook, LearningStore, LoadedState, TurnRow
from gateway.router.signals import Signal, detect

log = logging.getLogger("gateway.router.escalation")


@dataclass(slots=True)
class _Pending:
    view: TurnView
    escalation: str | None
    counted: bool = False


class ConversationTracker:
    """See the module docstring. Synchronous and cheap: called on the request path."""

    def __init__(
        self,
        escalation: EscalationConfig,
        learn: LearnConfig,
        store: LearningStore,
        labels: LabelBook,
        loaded: LoadedState,
        *,
        on_escalated_turn: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = escalation
        self.learn_cfg = learn
        self.store = store
        self.labels = labels
        self.clock = clock
        self.on_escalated_turn = on_escalated_turn
        self.conversations: BoundedLRU[str, ConversationRow] = BoundedLRU(
            escalation.max_conversations, sizeof=_conversation_bytes, mutable=True
        )
        self.turns: BoundedLRU[str, TurnRow] = BoundedLRU(escalation.max_turns, sizeof=_turn_bytes)
        self.pending: dict[str, _Pending] = {}
        self.escalated_turns = 0
        self._trimmed = float("-inf")
        for row in loaded.conversations:
            self.conversations.put(row.key, row)
        for turn in loaded.turns:
            known = self.conversations.peek(turn.conversation)
            if known is not None:  # one str per key, shared by its turns
                turn.conversation = known.key
            self.turns.put(turn.request_id, turn)
        self._trim()

    # --- bounded state --------------------------------------------------------------------------

    def _trim(self) -> None:
        """Forget what is older than the TTL (the count bounds hold on every put); at most once
        a second, which is far finer than any TTL."""
        now = self.clock()
        if now < self._trimmed + 1.0:
            return
        self._trimmed = now
        cutoff = now - self.cfg.ttl_seconds
        while (oldest := self.conversations.oldest()) is not None and oldest[1].updated < cutoff:
            self.conversations.pop(oldest[0])
        while (first := self.turns.oldest()) is not None and first[1].time < cutoff:
            self.turns.pop(first[0])

    def _get(self, key: str) -> ConversationRow | None:
        row = self.conversations.get(key)
        if row is None:
            return None
        if row.updated < self.clock() - self.cfg.ttl_seconds:
            self.conversations.pop(key)
            self.store.drop_conversation(key)
            return None
        return row

    def _save(self, row: ConversationRow) -> None:
        row.updated = self.clock()
        self.conversations.put(row.key, row)
        self.store.put_conversation(row)
        self._trim()

    # --- the request path -----------------------------------------------------------------------

    def begin(
        self, request_id: str, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> str | None:
        """Take in a new request; returns the escalation reason that applies to it, if any."""
        turn = view(body, headers)
        row = self._get(turn.key)
        if turn.starts_task:
            if row is not None and row.escalated:
                log.info("req=%s new task in conversation %s: escalation ends", request_id,
                         turn.key)  # fmt: skip
            row = ConversationRow(turn.key, None, None, 0, None, None, self.clock())
            self._save(row)
        elif row is not None:
            messages = body.get("messages")
            self._judge_previous(
                request_id, row, turn, messages if isinstance(messages, list) else []
            )
        reason = self._active(row)
        self.pending[request_id] = _Pending(turn, reason)
        return reason

    def _judge_previous(
        self, request_id: str, row: ConversationRow, turn: TurnView, messages: list[Any]
    ) -> None:
        """Label the answer this request follows up on; escalate when it was a failed local one."""
        follows_up = row.last_request_id is not None and row.last_turn == turn.answers_before
        if not follows_up or row.last_request_id is None:
            return  # a retry, an edited history, or a turn this gateway did not serve
        signal = detect(messages)
        previous, model = row.last_request_id, row.last_model
        row.last_request_id = None  # judge each answer once, even if the client retries
        if signal is None:
            weight = self.learn_cfg.agent_loop_ok_weight
            if model == "local" and self.learn_cfg.agent_loop and weight > 0:
                self.labels.add(previous, bad=False, source="agent_loop", weight=weight,
                                detail="next turn shows no failure")  # fmt: skip
            self._save(row)
            return
        detail = f"{signal.kind}: {signal.evidence}"
        if model == "local" and self.learn_cfg.agent_loop:
            self.labels.add(previous, bad=True, source="agent_loop", detail=detail)
        if model == "local" and self.cfg.enabled and not row.escalated:
            self._escalate(row, turn.answers_before, signal, request_id)
        self._save(row)

    def _escalate(self, row: ConversationRow, at_turn: int, signal: Signal, by: str) -> None:
        row.escalated = f"escalated: the local answer at turn {at_turn} {signal.description}"
        row.remaining = self.cfg.turns
        log.info("req=%s %s (%s: %s)", by, row.escalated, signal.kind, signal.evidence)

    def _active(self, row: ConversationRow | None) -> str | None:
        if row is None or not row.escalated:
            return None
        if row.remaining is not None and row.remaining <= 0:
            return None
        return row.escalated

    def escalation(self, request_id: str) -> str | None:
        """The reason this request goes to Cerebras (consumes one escalated turn), or None."""
        pending = self.pending.get(request_id)
        if pending is None or pending.escalation is None:
            return None
        if not pending.counted:
            pending.counted = True
            self.escalated_turns += 1
            row = self._get(pending.view.key)
            if row is not None and row.remaining is not None:
                row.remaining -= 1
                self._save(row)
            if self.on_escalated_turn is not None:
                self.on_escalated_turn()
        return pending.escalation

    def finish(self, request_id: str, model_used: str | None) -> None:
        """The request ended; `model_used` answered it (None: no answer reached the client)."""
        pending = self.pending.pop(request_id, None)
        if pending is None or model_used is None:
            return
        turn = pending.view
        now = self.clock()
        row = self._get(turn.key) or ConversationRow(turn.key, None, None, 0, None, None, now)
        answered = TurnRow(request_id, row.key, turn.turn, model_used, now)
        self.turns.put(request_id, answered)
        self.store.put_turn(answered)
        row.last_request_id = request_id
        row.last_model = model_used
        row.last_turn = turn.turn
        self._save(row)

    def escalate_request(self, request_id: str, reason: str) -> bool:
        """Escalate the conversation `request_id` belongs to (bad feedback); False if unknown."""
        turn = self.turns.get(request_id)
        if turn is None or not self.cfg.enabled:
            return False
        row = self._get(turn.conversation)
        if row is None or row.escalated:
            return False
        row.escalated = f"escalated: the local answer at turn {turn.turn} {reason}"
        row.remaining = self.cfg.turns
        log.info("req=%s %s", request_id, row.escalated)
        self._save(row)
        return True

    def usage(self) -> dict[str, dict[str, Any]]:
        """Sizes and bounds of the tracker's state (`/stats` memory block)."""
        return {
            "conversations": self.conversations.usage(),
            "turns": self.turns.usage(),
            "requests_in_flight": {"size": len(self.pending), "bound": None},
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "conversations": len(self.conversations),
            "escalated_conversations": sum(
                1 for row in self.conversations.values() if self._active(row)
            ),
            "escalated_turns": self.escalated_turns,
        }


# Estimated bytes of one remembered conversation and one answer. The key str is counted with
# the conversation; an answer shares it.
_CONVERSATION_ROW = sys.getsizeof(ConversationRow("", None, None, 0, None, None, 0.0))
_TURN_ROW = sys.getsizeof(TurnRow("", "", 0, None, 0.0))
_FLOAT = sys.getsizeof(0.0)


def _conversation_bytes(key: str, row: ConversationRow) -> int:
    size = _CONVERSATION_ROW + _FLOAT + sys.getsizeof(row.key)
    if row.last_request_id is not None:
        size += sys.getsizeof(row.last_request_id)
    if row.escalated is not None:
        size += sys.getsizeof(row.escalated)
    return size


def _turn_bytes(request_id: str, row: TurnRow) -> int:
    return _TURN_ROW + _FLOAT + sys.getsizeof(request_id)
