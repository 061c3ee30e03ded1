"""Each upstream's characters per prompt token, learned from the usage it reports.

A call that completed with reported usage pairs the characters of the prompt the gateway sent
(gateway.accounting.tokens.prompt_size) with the prompt tokens the upstream billed. The ratio is
a decayed running ratio of the two sums (`DECAY` per observation, so recent calls and long
prompts weigh most), kept within `FLOOR`..`CEILING`. Until an upstream has reported usage its
prompts are estimated by the rule of thumb. The estimate of a cancelled call's prompt, and the
admission gate's reservation, then use the learned ratio.

The completion side is learned the same way, from the characters a completed call streamed
(answer, reasoning and tool-call text) and the completion tokens it reported: a cancelled
call's completion is then estimated at the upstream's own characters per completion token, not
at the rule of thumb (four characters a token over-counts an upstream whose tokens are longer,
and under-counts one whose tokens are shorter). Never fewer than one token per streamed event.

Measuring a prompt serialises its tool schemas, so a call whose prompt was not measured anyway
is observed only while the ratio is young (`WARMUP` observations), then one call in
`SAMPLE_EVERY`.

Persistence: `RatioStore` writes every upstream's sums to a small JSON file beside the ledger,
atomically (temp file, then rename), at most once per `SAVE_EVERY_S` while they change and at
shutdown; a restart resumes from it. A file that cannot be read is logged and ignored.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.accounting.tokens import (
    PromptEstimate,
    PromptMemo,
    PromptSize,
    estimate_completion_tokens,
)

log = logging.getLogger(__name__)

FLOOR = 1.0
CEILING = 12.0
DECAY = 0.98
MIN_TOKENS = 16  # shorter prompts are mostly chat-template overhead: not a ratio of text
WARMUP = 32
SAMPLE_EVERY = 16
SAVE_EVERY_S = 60.0
FILE_NAME = "token_ratios.json"
FORMAT = "glm-token-saver-token-ratios"
VERSION = 1
COMPLETION_KEYS = ("completion_chars", "completion_tokens")


class CharsPerToken:
    """One upstream's learned characters per prompt token (None until it reported usage)."""

    __slots__ = ("_calls", "chars", "observations", "out_chars", "out_tokens", "tokens")

    def __init__(
        self,
        chars: float = 0.0,
        tokens: float = 0.0,
        observations: int = 0,
        out_chars: float = 0.0,
        out_tokens: float = 0.0,
    ) -> None:
        self.chars = chars
        self.tokens = tokens
        self.observations = observations
        # The completion side: streamed characters and reported completion tokens (decayed).
        self.out_chars = out_chars
        self.out_tokens = out_tokens
        self._calls = 0

    @property
    def ratio(self) -> float | None:
        if self.tokens <= 0:
            return None
        return min(CEILING, max(FLOOR, self.chars / self.tokens))

    @property
    def completion_ratio(self) -> float | None:
        """Characters per completion token (None until a completed call taught it)."""
        if self.out_tokens <= 0:
            return None
        return min(CEILING, max(FLOOR, self.out_chars / self.out_tokens))

    def completion_tokens(self, chars: int, events: int) -> int:
        """Estimated completion tokens of `chars` characters streamed in `events` events: at
        the learned ratio, else the rule of thumb; at least one per event."""
        ratio = self.completion_ratio
        if ratio is None:
            return estimate_completion_tokens(chars, events)
        return max(events, math.ceil(chars / ratio))

    def learn_completion(self, chars: int, reported_tokens: int) -> None:
        """Learn from a completed call that streamed `chars` characters and reported
        `reported_tokens` completion tokens (short answers teach nothing)."""
        if reported_tokens < MIN_TOKENS or chars <= 0:
            return
        self.out_chars = self.out_chars * DECAY + chars
        self.out_tokens = self.out_tokens * DECAY + reported_tokens

    def prompt_tokens(self, size: PromptSize) -> int:
        """Estimated prompt tokens of a prompt of this size sent to this upstream."""
        return size.tokens(self.ratio)

    def estimate(self, memo: PromptMemo) -> PromptEstimate:
        """The memo's prompt estimate for this upstream, measured only when asked."""
        return lambda: self.prompt_tokens(memo.size())

    def learn(self, memo: PromptMemo, reported_tokens: int) -> None:
        """Learn from a completed call that reported `reported_tokens` prompt tokens."""
        self._calls += 1
        sample = self.observations < WARMUP or self._calls % SAMPLE_EVERY == 0
        if reported_tokens < MIN_TOKENS or not (memo.measured or sample):
            return
        chars = memo.size().chars
        if chars <= 0:
            return
        self.chars = self.chars * DECAY + chars
        self.tokens = self.tokens * DECAY + reported_tokens
        self.observations += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "chars": self.chars,
            "tokens": self.tokens,
            "observations": self.observations,
            "completion_chars": self.out_chars,
            "completion_tokens": self.out_tokens,
        }

    @classmethod
    def from_json(cls, data: Any) -> CharsPerToken:
        """Raise ValueError when `data` is not what `to_json` writes."""
        if not isinstance(data, dict):
            raise ValueError("expected an object")
        observations = _amount(data, "observations")
        # The completion side came later: a file without it starts it from zero.
        out = {k: _amount(data, k) if k in data else 0.0 for k in COMPLETION_KEYS}
        return cls(
            _amount(data, "chars"),
            _amount(data, "tokens"),
            int(observations),
            out["completion_chars"],
            out["completion_tokens"],
        )


def _amount(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value) and value >= 0:
            return float(value)
    raise ValueError(f"{key}: expected a non-negative number, got {value!r}")


def store_path_for(ledger_path: str) -> Path | None:
    """`token_ratios.json` in the ledger's directory; None (not kept) when the ledger is in
    memory."""
    if ledger_path == ":memory:":
        return None
    return Path(ledger_path).parent / FILE_NAME


class RatioStore:
    """Persists the learners of several upstreams (see the module docstring)."""

    def __init__(
        self,
        path: Path | None,
        learners: Mapping[str, CharsPerToken],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.learners = dict(learners)
        self.clock = clock
        self._saved_at = clock()
        self._saved: dict[str, Any] = {}

    def load(self) -> None:
        """Resume every learner from the file (a missing or bad file changes nothing)."""
        if self.path is None or not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} file")
            if data.get("version") != VERSION:
                raise ValueError(f"unsupported version {data.get('version')!r}")
            upstreams = data.get("upstreams")
            if not isinstance(upstreams, dict):
                raise ValueError("upstreams: expected an object")
            loaded = {
                name: CharsPerToken.from_json(upstreams[name])
                for name in self.learners
                if name in upstreams
            }
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            log.warning("%s: learned token ratios not loaded, learning anew: %s", self.path, exc)
            return
        for name, learned in loaded.items():
            learner = self.learners[name]
            learner.chars, learner.tokens = learned.chars, learned.tokens
            learner.observations = learned.observations
            learner.out_chars, learner.out_tokens = learned.out_chars, learned.out_tokens
        self._saved = self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        return {name: learner.to_json() for name, learner in self.learners.items()}

    def save_if_due(self) -> None:
        """Save when `SAVE_EVERY_S` passed since the last save and a ratio changed."""
        if self.clock() - self._saved_at >= SAVE_EVERY_S:
            self.save()

    def save(self) -> None:
        """Write the file now if anything changed since it was last written or read."""
        self._saved_at = self.clock()
        snapshot = self._snapshot()
        if self.path is None or snapshot == self._saved:
            return
        data = {"format": FORMAT, "version": VERSION, "upstreams": snapshot}
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp.write_text(json.dumps(data, indent=2), encoding="utf-8")
            os.replace(temp, self.path)
        except OSError as exc:
            log.warning("%s: cannot save learned token ratios: %s", self.path, exc)
            return
        self._saved = snapshot

    def snapshot(self) -> dict[str, Any]:
        """The `/stats` block: learned characters per token and observations per upstream."""
        return {
            name: {
                "chars_per_token": None if learner.ratio is None else round(learner.ratio, 3),
                "observations": learner.observations,
            }
            for name, learner in self.learners.items()
        }
