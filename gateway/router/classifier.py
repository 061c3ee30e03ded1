"""Task-complexity classifier for smart routing: is what the user asks now simple or complex?

It reads the ask, not the request: a coding assistant resends a ~20 KB system prompt, a tool list
and the whole history on every turn, so the size of the request says nothing about the task. The
ask is the latest text a person wrote: the last user message, with Cline's machine-written parts
removed (`<environment_details>` blocks, tool results); when the last turn is a tool result, the
ask is the task that started the loop (Cline's `<task>` block or the last human-written message).

A task is complex when the ask
- names a configured complexity keyword (whole words: "code" matches "code", not "decode"),
- is longer than `simple_task_threshold` estimated tokens,
- carries code or an error trace (a fenced block, a traceback, a compiler error), or
- shows signs of multi-step reasoning (step by step, prove, compare, trade-offs, derive, several
  questions, a list of several requirements).
Everything else is simple.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.accounting.tokens import estimate_text_tokens
from gateway.router.ascii_fold import LEADING_RUN, FoldedPattern, FoldedText, folded

_ENV_DETAILS = re.compile(r"<environment_details>.*?(?:</environment_details>|$)", re.S)
_TAGGED_ASK = re.compile(r"<(task|feedback|answer|user_message)>(.*?)</\1>", re.S)
_TOOL_RESULT = re.compile(r"^\s*\[[^\n]{1,300}?\] Result:", re.M)
_CODE = re.compile(
    r"```|^Traceback \(most recent call last\)|^\s+at [\w.$<>]+\(|\b\w+(?:Error|Exception):|"
    r"^\s*(?:def|class|function|import|#include|fn|func)\s",
    re.M,
)
_REASONING = FoldedPattern(
    r"\bstep[- ]by[- ]step\b|\bprove\b|\bproof\b|\bderive\b|\bcompare\b|\btrade-?offs?\b|"
    r"\bpros and cons\b|\bwhy (?:does|do|is|are|did|would)\b|\bexplain (?:how|why)\b|"
    r"\bfirst\b.{1,80}\bthen\b|\bcalculate\b|\bsolve\b|\bestimate\b",
    re.S,
    starts="spdctwef",
    words=(
        *("step-by", "step by", "prove", "proof", "derive", "compare", "pros and cons"),
        *("trade-off", "tradeoff", "tradeoffs", "first", "calculate", "solve", "estimate"),
        *("why do", "why is", "why are", "why did", "why would", "explain how", "explain why"),
    ),
)
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+\S", re.M)
_MIN_LIST_ITEMS = 3
_MIN_QUESTIONS = 3


@dataclass(frozen=True, slots=True)
class Classification:
    complex: bool
    reason: str
    ask_tokens: int


def message_text(content: Any) -> str:
    """The text of a message's `content`: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, Mapping)]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def _human_text(text: str) -> str:
    """The part of a user message a person wrote (Cline wraps it; tool results are not)."""
    text = _ENV_DETAILS.sub("", text)
    tagged = [m.group(2) for m in _TAGGED_ASK.finditer(text)]
    if tagged:
        return "\n".join(tagged).strip()
    # The literal part first: the pattern's search over a pasted file costs a hundred times more.
    if "] Result:" in text and _TOOL_RESULT.search(text):
        return ""
    return text.strip()


def current_ask(messages: Iterable[Any]) -> str:
    """The latest human-written ask in a chat history ('' when there is none)."""
    history = [m for m in messages if isinstance(m, Mapping)]
    for message in reversed(history):
        if message.get("role") != "user":
            continue
        ask = _human_text(message_text(message.get("content")))
        if ask:
            return ask
    return ""


class TaskClassifier:
    def __init__(self, keywords: Iterable[str], simple_task_threshold: int) -> None:
        words = sorted({k.strip().lower() for k in keywords if k.strip()}, key=len, reverse=True)
        self.keywords = (
            FoldedPattern(
                r"(?<!\w)(" + "|".join(re.escape(w) for w in words) + r")(?!\w)",
                starts="".join(sorted({re.escape(w[0]) for w in words})),
                # Not after a \w, a keyword's leading run is ended by another character of it
                # or by (?!\w): a whole run. One that begins with a sign is needed as it is.
                words=[w for w in words if LEADING_RUN.match(w)],
                marks=[w for w in words if not LEADING_RUN.match(w)],
            )
            if words
            else None
        )
        self.threshold = simple_task_threshold

    def keyword(self, ask: str | FoldedText) -> str | None:
        """The first configured complexity keyword in `ask` (lower-cased), or None."""
        match = self.keywords.search(folded(ask)) if self.keywords is not None else None
        return match.group(1).lower() if match else None

    def keyword_count(self, ask: str | FoldedText) -> int:
        """How many configured complexity keywords `ask` names (each occurrence counts)."""
        return self.keywords.count(folded(ask)) if self.keywords is not None else 0

    def classify(self, body: Mapping[str, Any]) -> Classification:
        messages = body.get("messages")
        return self.classify_ask(current_ask(messages if isinstance(messages, list) else []))

    def classify_ask(self, ask: str | FoldedText) -> Classification:
        """`classify` for an ask already taken out of the request (`current_ask`)."""
        text = folded(ask)
        ask = text.text
        tokens = estimate_text_tokens(len(ask))
        if not ask:
            return Classification(False, "simple: no human-written ask in the request", 0)
        keyword = self.keyword(text)
        if keyword is not None:
            return Classification(True, f"complex: keyword '{keyword}'", tokens)
        if tokens > self.threshold:
            return Classification(
                True, f"complex: ask of ~{tokens} tokens > {self.threshold}", tokens
            )
        reason = content_signal(text)
        if reason is not None:
            return Classification(True, reason, tokens)
        return Classification(False, f"simple: ~{tokens}-token ask, no complexity signal", tokens)


def content_signal(ask: str | FoldedText) -> str | None:
    """The classifier's reason to call `ask` complex from its content alone (neither keyword nor
    length): code or an error trace, multi-step reasoning, a list of several requirements,
    several questions. None when no such signal is present."""
    text = folded(ask)
    ask = text.text
    if _CODE.search(ask):
        return "complex: code or error trace in the ask"
    match = _REASONING.search(text)
    if match:
        # The phrase from the ask as given: a match in the lower-cased form has the same span,
        # but its text may differ at the cut (a capital sigma lower-cases to a final sigma
        # only when no letter follows it, and the 40th character may be one).
        phrase = " ".join(ask[match.start() : match.end()].split())[:40].lower()
        return f"complex: multi-step reasoning ('{phrase}')"
    if len(_LIST_ITEM.findall(ask)) >= _MIN_LIST_ITEMS:
        return "complex: a list of several requirements"
    if ask.count("?") >= _MIN_QUESTIONS:
        return "complex: several questions at once"
    return None


def complex_content(*, code: bool, reasoning: bool, list_items: int, questions: int) -> bool:
    """Whether `content_signal` names a reason, from the facts it reads (for a caller that has
    them already): code, a reasoning phrase, how many list items and question marks."""
    return code or reasoning or list_items >= _MIN_LIST_ITEMS or questions >= _MIN_QUESTIONS
