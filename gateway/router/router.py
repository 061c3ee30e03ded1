"""The Router: decides whether an ask (or a local draft) should go to Cerebras, and learns.

See gateway.router's docstring for the API contract; this module holds the implementation.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from gateway.bounded import BoundedLRU
from gateway.config import GatewayConfig
from gateway.router.asks import AskAnalyses, AskAnalysis
from gateway.router.calibration import WINDOW, ShareCalibrator
from gateway.router.classifier import TaskClassifier, current_ask
from gateway.router.features import Features, combine, draft_features
from gateway.router.heuristic import COMPLEX, HeuristicScore
from gateway.router.model import LinearModel
from gateway.router.packed import Packed, pack, packed_bytes, remembered_bytes, unpack
from gateway.router.store import LABELS, RouterStore
from gateway.storage.connection import MEMORY
from gateway.storage.writer import WriterThread

log = logging.getLogger("gateway.router")

MODELS = ("ask", "draft")  # "ask": the ask alone; "draft": ask and local draft together
HEURISTIC = "heuristic"  # the calibration window of the heuristic's continuous score
FORCED = 1.0  # the score a keyword-forced ask adds to a window: it ranks above every other
# A window re-scored after learning at most once per this many decisions: a re-score of 1,000
# vectors takes tens of milliseconds, and a few labels move the threshold only a little.
RESCORE_EVERY = 10
REMEMBER = 5000  # requests whose features are kept for a later label (routing.learn's default)
LEARN_RATE = 0.5
STORE_NAME = "router.db"


class RouterError(RuntimeError):
    """The shipped weights cannot be read (the message names the file)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """`cloud`: send to Cerebras (for a draft: escalate it). `reason` is human-readable, e.g.
    "learned: p(local fails)=0.71 >= threshold 0.55"; `score` is None for heuristic rules."""

    cloud: bool
    reason: str
    score: float | None = None


def shipped_weights_path() -> Path:
    return Path(str(resources.files("gateway.router").joinpath("weights.json")))


def load_weights(path: Path) -> tuple[dict[str, LinearModel], str]:
    """The models in a weights file and the file's sha256 digest."""
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
        models = {name: LinearModel.from_json(data["models"][name]) for name in MODELS}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RouterError(f"{path}: cannot load router weights: {exc}") from None
    return models, hashlib.sha256(raw).hexdigest()


def store_path_for(config: GatewayConfig) -> str:
    """`router.db` in the ledger's directory; in memory when the ledger is."""
    ledger = config.storage.ledger_path
    if ledger == MEMORY:
        return MEMORY
    return str(Path(ledger).parent / STORE_NAME)


class Router:
    """See gateway.router for the contract."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        store_path: str | Path | None = None,
        weights_path: Path | None = None,
        writer: WriterThread | None = None,
    ) -> None:
        routing = config.routing
        self.kind: str = routing.router
        # `routing.thinking`: the thinking mode a simple and a complex ask are served with.
        self.thinking = routing.thinking
        self.target: float | None = routing.target_cloud_share
        # With `judge_draft` the target share is the draft scorer's: asks route by their own rule.
        self.ask_target = None if routing.judge_draft else self.target
        self.classifier = TaskClassifier(routing.complexity_keywords, routing.simple_task_threshold)
        self.heuristic = HeuristicScore(self.classifier)
        self.asks = AskAnalyses(self.classifier, self.heuristic)
        self.low_quantile = config.speculative_decoding.logprob_low_quantile
        path = weights_path or shipped_weights_path()
        try:
            self.models, digest = load_weights(path)
        except RouterError:
            needs = routing.judge_draft or config.speculative_decoding.scorer == "learned"
            if self.kind == "learned" or needs:
                raise
            log.warning("router: no usable weights in %s; learning starts from zero", path)
            self.models, digest = {name: LinearModel() for name in MODELS}, "none"
        learn = routing.learn
        self.store = RouterStore(
            store_path,
            window=WINDOW,
            remember=learn.remember_requests,
            feature_ttl_seconds=routing.escalation.ttl_seconds,
            max_labels=learn.max_labels,
            label_ttl_seconds=learn.label_ttl_seconds,
            writer=writer,
        )
        loaded = self.store.load(digest)
        for name, updates in loaded.weights.items():
            if name in self.models:
                self.models[name].weights.update(updates)
        self.online_updates = sum(len(u) for u in loaded.weights.values())
        # Each window is restored with its decisions, so the realised share's feedback
        # (gateway.router.calibration) goes on where it stopped.
        self.calibrators = {
            name: ShareCalibrator(
                self.ask_target if name == "ask" else self.target,
                self.models[name].threshold,
                scores=[s for s, _ in loaded.scores.get(name, [])],
                decisions=[c for _, c in loaded.scores.get(name, [])],
            )
            for name in MODELS
        }
        self.calibrators[HEURISTIC] = ShareCalibrator(
            self.ask_target,
            COMPLEX,
            scores=[s for s, _ in loaded.scores.get(HEURISTIC, [])],
            decisions=[c for _, c in loaded.scores.get(HEURISTIC, [])],
        )
        # What each calibration window's scores were computed from, oldest first: the ask or
        # draft vector, packed (a window of distinct pasted asks held as dicts would take about
        # 120 MB), or None for a keyword-forced ask (always FORCED) or a score loaded from the
        # store (kept as it is). A model that learned is re-scored from these (`_rescore`).
        self.window_vectors: dict[str, deque[Packed | None]] = {
            name: deque((None for _ in range(len(self.calibrators[name]))), maxlen=WINDOW)
            for name in MODELS
        }
        self.stale: set[str] = set()
        self.since_rescore = dict.fromkeys(MODELS, 0)
        # Decisions over the last WINDOW routed requests (True = Cerebras), for the measured share.
        self.routed: deque[bool] = deque(
            (cloud for _, cloud in loaded.scores.get("routed", [])), maxlen=WINDOW
        )
        # Packed (gateway.router.packed): a dict of floats costs several times the numbers.
        self.remembered: BoundedLRU[str, dict[str, Packed]] = BoundedLRU(
            learn.remember_requests, max_bytes=learn.remember_bytes, sizeof=remembered_bytes
        )
        for request_id, name, vector in loaded.features:
            self._remember(request_id, name, vector, persist=False)
        self.labels: dict[str, int] = dict(loaded.labels)
        self.escalations = loaded.counters.get("escalations", 0)
        self.no_think = loaded.counters.get("told_not_to_think", 0)

    @classmethod
    def from_config(cls, config: GatewayConfig, *, writer: WriterThread | None = None) -> Router:
        """A router persisting beside the ledger (`router.db` in its directory), through
        `writer` when given (the thread the ledger's writes share)."""
        return cls(config, store_path=store_path_for(config), writer=writer)

    # --- features -----------------------------------------------------------------------------

    def ask_vector(self, body: Mapping[str, Any]) -> Features:
        """The features of the request's ask (shared with every request with that ask: read
        them, never change them)."""
        return self.asks.of(self.ask_text(body)).features

    @staticmethod
    def ask_text(body: Mapping[str, Any]) -> str:
        messages = body.get("messages")
        return current_ask(messages if isinstance(messages, list) else [])

    def draft_vector(
        self,
        ask: Features,
        text: str,
        tokens: int,
        *,
        complete: bool,
        logprobs: Sequence[float] = (),
        ask_text: str = "",
    ) -> Features:
        drafted = draft_features(
            text,
            tokens,
            complete=complete,
            logprobs=logprobs,
            low_quantile=self.low_quantile,
            ask=ask_text,
        )
        return combine(ask, drafted)

    # --- decisions ----------------------------------------------------------------------------

    def threshold(self, model: str = "ask") -> float:
        """Scores at or above it go to Cerebras: the target's quantile, else the model's own."""
        return self.calibrators[model].threshold()

    def route(self, request_id: str, body: Mapping[str, Any]) -> Decision:
        """Local or Cerebras for one ask (`routing.router` decides how).

        A configured keyword forces Cerebras under every kind; with `target_cloud_share` set,
        such an ask enters the calibration window as the highest score, so the share sent to
        Cerebras, forced asks included, stays near the target (while keywords are rarer)."""
        # Read out of the history once per decision, and analysed once per distinct ask.
        ask = self.asks.of(self.ask_text(body))
        forced = ask.keyword
        if self.kind == "heuristic":
            decision = self._heuristic(ask, forced)
            self._remember(request_id, "ask", ask.features, ask.packed, ask.encoded)
        else:
            decision = self._decide(
                "ask", request_id, ask.features, forced=forced is not None, ask=ask
            )
            if forced is not None:
                decision = Decision(
                    True, f"learned: keyword '{forced}' forces cerebras", decision.score
                )
        self.routed.append(decision.cloud)
        self.store.put_score("routed", decision.score or 0.0, decision.cloud)
        return decision

    def _heuristic(self, ask: AskAnalysis, forced: str | None) -> Decision:
        """The classifier's verdict; with a target share, its continuous score against the
        running quantile (the verdict itself until the window holds enough scores)."""
        verdict = ask.verdict
        if self.ask_target is None:
            return Decision(verdict.complex, verdict.reason)
        calibrator = self.calibrators[HEURISTIC]
        calibrated = calibrator.calibrated
        threshold = calibrator.threshold()  # before this score joins the window
        score = self.asks.score(ask)
        observed = FORCED if forced is not None else score
        calibrator.observe(observed)
        by_verdict = forced is not None or not calibrated
        cloud = verdict.complex if by_verdict else score >= threshold
        calibrator.decided(cloud)
        self.store.put_score(HEURISTIC, observed, cloud)
        if by_verdict:
            return Decision(cloud, verdict.reason, score)
        relation = ">=" if cloud else "<"
        reason = (
            f"heuristic: score {score:.2f} {relation} threshold {threshold:.2f} "
            f"(target share {calibrator.target:g}; {verdict.reason})"
        )
        return Decision(cloud, reason, score)

    def judge_draft(
        self,
        request_id: str,
        body: Mapping[str, Any],
        text: str,
        tokens: int,
        *,
        complete: bool,
        logprobs: Sequence[float] = (),
    ) -> Decision:
        """Accept a local draft (cloud=False) or escalate it to Cerebras (cloud=True)."""
        ask = self.asks.of(self.ask_text(body))
        vector = self.draft_vector(
            ask.features,
            text,
            tokens,
            complete=complete,
            logprobs=logprobs,
            ask_text=ask.text,
        )
        return self._decide("draft", request_id, vector)

    def _decide(
        self,
        model: str,
        request_id: str,
        vector: Features,
        *,
        forced: bool = False,
        ask: AskAnalysis | None = None,
    ) -> Decision:
        """Score `vector` with `model` against its threshold; `ask`: the analysis `vector` is
        the features of, when it is an ask's (its packed and stored forms are made already)."""
        calibrator = self.calibrators[model]
        self.since_rescore[model] += 1
        if model in self.stale and self.since_rescore[model] >= RESCORE_EVERY:
            self._rescore(model)
        threshold = calibrator.threshold()  # before this score joins the window
        p = self.models[model].score(vector)
        observed = FORCED if forced else p
        cloud = forced or p >= threshold
        calibrator.observe(observed)
        calibrator.decided(cloud)
        packed = ask.packed if ask is not None else pack(vector)
        self.window_vectors[model].append(None if forced else packed)
        self.store.put_score(model, observed, cloud)
        self._remember(request_id, model, vector, packed, ask.encoded if ask else None)
        target = f" (target share {calibrator.target:g})" if calibrator.calibrated else ""
        relation = ">=" if p >= threshold else "<"
        reason = f"learned: p(local fails)={p:.2f} {relation} threshold {threshold:.2f}{target}"
        return Decision(cloud, reason, p)

    def _rescore(self, model: str) -> None:
        """Re-score `model`'s calibration window with the current weights (it learned since):
        old scores from the weights before would hold the threshold where the model no longer
        scores, and the share would drift off the target."""
        self.stale.discard(model)
        self.since_rescore[model] = 0
        calibrator = self.calibrators[model]
        scored = self.models[model].score
        old = calibrator.scores()
        # The window and its vectors have the same length unless a store held more scores.
        vectors: list[Packed | None] = [None] * (len(old) - len(self.window_vectors[model]))
        vectors += self.window_vectors[model]
        calibrator.reset(
            score if vector is None else scored(unpack(vector))
            for score, vector in zip(old, vectors, strict=True)
        )

    # --- learning -----------------------------------------------------------------------------

    def _remember(
        self,
        request_id: str,
        model: str,
        vector: Features,
        packed: Packed | None = None,
        encoded: str | None = None,
        *,
        persist: bool = True,
    ) -> None:
        """Keep `vector` for a later label of `request_id`, and persist it; `packed` and
        `encoded`: its packed and stored forms, when made already (a kept ask's, shared)."""
        entry = self.remembered.pop(request_id) or {}
        entry[model] = pack(vector) if packed is None else packed
        size = remembered_bytes(request_id, entry)
        if self.remembered.fits(size):
            self.remembered.put(request_id, entry, size)
        if persist:
            self.store.put_features(request_id, model, vector, encoded)

    def learn(self, request_id: str, bad: bool, source: str, weight: float = 1.0) -> bool:
        """One SGD step per model that scored `request_id`; False if the id is unknown."""
        entry = self.remembered.get(request_id)
        if entry is None:
            return False
        changed = {
            model: self.models[model].sgd_step(unpack(packed), bad, rate=LEARN_RATE,
                                               weight=weight)
            for model, packed in entry.items()
        }  # fmt: skip
        if self.target is not None:
            self.stale.update(model for model, c in changed.items() if c)
        self.online_updates += sum(len(c) for c in changed.values())
        self.labels[source] = self.labels.get(source, 0) + 1
        self.store.put_counter(LABELS + source, self.labels[source])
        self.store.put_label(request_id, source, bad, weight, changed)
        log.info(
            "router learned req=%s bad=%s source=%s weight=%g", request_id, bad, source, weight
        )
        return True

    def score(self, request_id: str, model: str = "ask") -> float | None:
        """The current model's score for a remembered request (None if unknown)."""
        packed = (self.remembered.peek(request_id) or {}).get(model)
        return None if packed is None else self.models[model].score(unpack(packed))

    # --- counters and statistics --------------------------------------------------------------

    def count_escalation(self) -> None:
        """One conversation turn escalated to Cerebras (called by the escalation rules)."""
        self.escalations += 1
        self.store.put_counter("escalations", self.escalations)

    def count_no_think(self) -> None:
        """One request told not to think (called by the thinking control)."""
        self.no_think += 1
        self.store.put_counter("told_not_to_think", self.no_think)

    def cloud_share(self) -> float | None:
        return sum(self.routed) / len(self.routed) if self.routed else None

    def snapshot(self) -> dict[str, Any]:
        """The `/stats` router block."""
        share = self.cloud_share()
        return {
            "kind": self.kind,
            "threshold": self._route_threshold(),
            "draft_threshold": round(self.threshold("draft"), 4),
            "target_cloud_share": self.target,
            "cloud_share": None if share is None else round(share, 4),
            "routed_in_window": len(self.routed),
            "threshold_share": self._route_share(),
            "labels": dict(sorted(self.labels.items())),
            "labels_total": sum(self.labels.values()),
            "online_weight_updates": self.online_updates,
            "remembered_requests": len(self.remembered),
            "escalations": self.escalations,
            "told_not_to_think": self.no_think,
            "asks": self.asks.counts(),
        }

    def _route_threshold(self) -> float | None:
        """The routing threshold in force: the learned model's, or the calibrated heuristic's
        (None while the heuristic's plain verdict decides)."""
        if self.kind == "learned":
            return round(self.threshold("ask"), 4)
        calibrator = self.calibrators[HEURISTIC]
        return round(calibrator.threshold(), 4) if calibrator.calibrated else None

    def _route_share(self) -> float | None:
        """The share of the routing window's scores at or above `threshold`: the target
        corrected by the realised share's feedback (None without a target for the asks)."""
        calibrator = self.calibrators["ask" if self.kind == "learned" else HEURISTIC]
        share = calibrator.share()
        return None if share is None else round(share, 4)

    def usage(self) -> dict[str, dict[str, Any]]:
        """Sizes and bounds of what the router keeps (`/stats` memory block)."""
        return {
            "router_asks": self.asks.kept.usage(),
            "router_remembered": self.remembered.usage(),
            "router_routed_window": {"size": len(self.routed), "bound": self.routed.maxlen},
            "router_score_windows": self._windows_usage(),
            **self.store.usage(),
        }

    def _windows_usage(self) -> dict[str, Any]:
        """The calibration windows' vectors: entries, and their estimated bytes (a vector
        shared by several entries counts for each)."""
        vectors = [v for window in self.window_vectors.values() for v in window if v is not None]
        return {
            "size": len(vectors),
            "bound": WINDOW * len(self.window_vectors),
            "bytes": sum(packed_bytes(v) for v in vectors),
        }

    def flush(self) -> None:
        """Block until everything is persisted (tests)."""
        self.store.flush()

    def close(self) -> None:
        self.store.close()
