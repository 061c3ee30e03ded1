"""Scorers for the speculative verdict: how much does one answer agree with another?

Every scorer maps two answers to a similarity in 0..1. Text scorers:

- `levenshtein` (the original project's similarity): python-Levenshtein's normalized indel
  ratio of the two texts.
- `token_set`: Jaccard overlap of the sets of lower-cased words; blind to order and repetition.
- `final_answer`: agreement of the last number in each text (1.0 or 0.0). It only applies when
  both texts contain a number; otherwise `levenshtein` decides. It needs whole answers.

When either answer holds tool calls, `tool_calls` decides instead: same tool names in the same
order, arguments compared parsed (each argument's similarity, the least one counts), so a
different file path is a different call even when the rest of the arguments match.

The readings of a single answer they use (its final number; the confidence of its tokens) are in
gateway.router.answer, shared with the router's features.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import Levenshtein
import orjson

from gateway.router.answer import final_number

_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Answer:
    """What a window holds for the verdict: answer text and tool calls (reasoning excluded).

    `complete` is False for a window cut before the end of the answer (more may follow)."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = field(default_factory=tuple)
    complete: bool = True


@dataclass(frozen=True, slots=True)
class Score:
    """A similarity and the scorer that produced it (`levenshtein`, `tool_calls` ...)."""

    value: float
    method: str


def levenshtein(a: str, b: str) -> float:
    return float(Levenshtein.ratio(a, b))


def token_set(a: str, b: str) -> float:
    words_a, words_b = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    union = words_a | words_b
    return len(words_a & words_b) / len(union) if union else 1.0


def final_answer(a: str, b: str) -> float | None:
    """1.0 when both texts end on the same number, 0.0 when not, None when one has none."""
    number_a, number_b = final_number(a), final_number(b)
    if number_a is None or number_b is None:
        return None
    return 1.0 if number_a == number_b else 0.0


@dataclass(frozen=True, slots=True)
class Scorer:
    """A text scorer; None from `score` means it does not apply and `levenshtein` decides."""

    name: str
    score: Callable[[str, str], float | None]
    needs_full_answer: bool = False


SCORERS: dict[str, Scorer] = {
    "levenshtein": Scorer("levenshtein", levenshtein),
    "token_set": Scorer("token_set", token_set),
    "final_answer": Scorer("final_answer", final_answer, needs_full_answer=True),
}
SCORER_NAMES: tuple[str, ...] = tuple(SCORERS)


def agreement(a: Answer, b: Answer, scorer: Scorer) -> Score:
    """How much `a` agrees with `b`: by tool calls when either has one, else by `scorer`."""
    if a.tool_calls or b.tool_calls:
        return Score(tool_calls_similarity(a, b), "tool_calls")
    value = scorer.score(a.text, b.text)
    if value is None:
        return Score(levenshtein(a.text, b.text), "levenshtein")
    return Score(value, scorer.name)


def tool_calls_similarity(a: Answer, b: Answer) -> float:
    """The least similarity of calls paired by position; 0.0 for a different name or count.

    When the answer with fewer calls is cut short, only the calls both hold are compared."""
    calls_a, calls_b = a.tool_calls, b.tool_calls
    if len(calls_a) != len(calls_b):
        shorter = a if len(calls_a) < len(calls_b) else b
        if shorter.complete:
            return 0.0
        common = len(shorter.tool_calls)
        calls_a, calls_b = calls_a[:common], calls_b[:common]
    if not calls_a:
        return 0.0
    worst = 1.0
    for call_a, call_b in zip(calls_a, calls_b, strict=True):
        if call_a.name != call_b.name:
            return 0.0
        worst = min(worst, arguments_similarity(call_a.arguments, call_b.arguments))
    return worst


_UNPARSED = object()


def _parse(arguments: str) -> Any:
    try:
        return orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return _UNPARSED


def arguments_similarity(a: str, b: str) -> float:
    """Parsed JSON arguments compared value by value; unparsable (cut) ones by common prefix."""
    parsed_a, parsed_b = _parse(a), _parse(b)
    if parsed_a is not _UNPARSED and parsed_b is not _UNPARSED:
        return value_similarity(parsed_a, parsed_b)
    common = min(len(a), len(b))
    if not common:
        return 1.0 if a == b else 0.0
    return levenshtein(a[:common], b[:common])


def value_similarity(a: Any, b: Any) -> float:
    if a == b and type(a) is type(b):
        return 1.0
    if isinstance(a, dict) and isinstance(b, dict):
        keys = a.keys() | b.keys()
        return min(
            (value_similarity(a[k], b[k]) if k in a and k in b else 0.0 for k in keys),
            default=1.0,
        )
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return 0.0
        return min((value_similarity(x, y) for x, y in zip(a, b, strict=True)), default=1.0)
    if isinstance(a, str) and isinstance(b, str):
        return levenshtein(a, b)
    return 0.0
