"""What the router reads from one ask, worked out once per distinct ask text.

An agent sends the same ask on every turn of its loop: Cline's `<task>`, or the prompt Claude
Code and Codex answer with tool calls, stays the latest human-written text while tool results
follow it. The ask's features, its configured keyword, the classifier's verdict, its heuristic
score and the form `router.db` stores its features in depend only on the text and on the
router's settings, and over a pasted file they take milliseconds. `AskAnalyses` keeps the last
`MAX_ASKS` of them, within `MAX_BYTES` estimated bytes, so a repeated ask costs one look-up.

The objects an analysis holds are shared by every request with that ask: callers read them and
never change them (`gateway.router.features.combine` and `unpack` build new vectors).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from gateway.bounded import BoundedLRU
from gateway.router.ascii_fold import FoldedText
from gateway.router.classifier import Classification, TaskClassifier
from gateway.router.features import Features, ask_features
from gateway.router.heuristic import HeuristicScore
from gateway.router.packed import Packed, pack, packed_bytes
from gateway.router.store import encode_features

MAX_ASKS = 256
MAX_BYTES = 8 * 1024 * 1024
# A dict entry's share of its table, with its int key and float value objects.
_FEATURE_BYTES = 28 + 24 + 24


@dataclass(slots=True)
class AskAnalysis:
    """One ask as the router reads it. `score` is the heuristic's continuous score, worked out
    on first use (only a share target needs it)."""

    text: str
    features: Features
    packed: Packed
    encoded: str
    keyword: str | None
    verdict: Classification
    score: float | None = field(default=None)


def analysis_bytes(text: str, analysis: AskAnalysis) -> int:
    """Estimated bytes of one kept analysis: the ask's text, its vector in three forms."""
    return (
        sys.getsizeof(text)
        + sys.getsizeof(analysis.features)
        + len(analysis.features) * _FEATURE_BYTES
        + packed_bytes(analysis.packed)
        + sys.getsizeof(analysis.encoded)
    )


class AskAnalyses:
    """The analyses of the asks seen last, by text (module docstring)."""

    def __init__(
        self,
        classifier: TaskClassifier,
        heuristic: HeuristicScore,
        *,
        max_asks: int = MAX_ASKS,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self.classifier = classifier
        self.heuristic = heuristic
        self.kept: BoundedLRU[str, AskAnalysis] = BoundedLRU(
            max_asks, max_bytes=max_bytes, sizeof=analysis_bytes
        )
        self.hits = 0
        self.misses = 0

    def of(self, ask: str) -> AskAnalysis:
        """The analysis of `ask`: a kept one, or a new one (kept when it fits the bounds)."""
        kept = self.kept.get(ask)
        if kept is not None:
            self.hits += 1
            return kept
        self.misses += 1
        analysis = self.analyse(ask)
        size = analysis_bytes(ask, analysis)
        if self.kept.fits(size):
            self.kept.put(ask, analysis, size)
        return analysis

    def analyse(self, ask: str) -> AskAnalysis:
        """A new analysis of `ask`, kept nowhere. The ask is folded once for all its patterns,
        with its runs, so that over a long ask a pattern that cannot match is not scanned."""
        return analysis_of(self.classifier, ask, FoldedText.of(ask, runs=True))

    def score(self, analysis: AskAnalysis) -> float:
        """The heuristic's continuous score of the analysed ask (gateway.router.heuristic)."""
        if analysis.score is None:
            analysis.score = self.heuristic.score(analysis.text)
        return analysis.score

    def counts(self) -> dict[str, int]:
        """How many asks were analysed, and how many reused a kept analysis (`/stats`)."""
        return {"analysed": self.misses, "reused": self.hits}


def analysis_of(classifier: TaskClassifier, ask: str, text: str | FoldedText) -> AskAnalysis:
    """Every part of the analysis of `ask`, each reading `text`: `ask` itself, or a form of it
    already folded (`FoldedText`; the same results, sooner)."""
    features = ask_features(text, classifier.keyword_count(text))
    return AskAnalysis(
        text=ask,
        features=features,
        packed=pack(features),
        encoded=encode_features(features),
        keyword=classifier.keyword(text),
        verdict=classifier.classify_ask(text),
    )
