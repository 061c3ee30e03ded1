"""Token estimates for when an upstream reports no usage (cut streams, cancelled calls).

The rule of thumb is the one OpenAI documents, four characters of English text per token (plus a
few tokens per message); once an upstream has reported usage, its own learned characters per
token replace it for prompts (gateway.accounting.ratio). Streamed completions are counted as at
least one token per content-bearing event, since both llama.cpp and Cerebras stream about one
token per event. Estimated counts are always flagged.

`completion_limit` reads the answer-token limit a chat request states, for every module that
needs it (admission, the upstreams' bodies, continuations, verification samples).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

CHARS_PER_TOKEN = 4
_MESSAGE_OVERHEAD_TOKENS = 4
# The keys that limit an answer's tokens, the current one first (OpenAI deprecated `max_tokens`
# for `max_completion_tokens`; clients send either).
COMPLETION_LIMIT_KEYS = ("max_completion_tokens", "max_tokens")


def completion_limit(body: Mapping[str, Any]) -> int | None:
    """The answer-token limit `body` states: `max_completion_tokens`, else `max_tokens`; a
    value that is not a positive integer counts as not stated. None: no limit."""
    for key in COMPLETION_LIMIT_KEYS:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def estimate_text_tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def _content_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text")
                if isinstance(text, str):
                    total += len(text)
        return total
    return 0


@dataclass(frozen=True, slots=True)
class PromptSize:
    """What a chat request's prompt is made of: characters of message text, tool calls and tool
    schemas, and the number of messages."""

    chars: int
    messages: int

    def tokens(self, chars_per_token: float | None = None) -> int:
        """Estimated tokens: the rule of thumb, or `chars / chars_per_token` when learned (its
        per-message overhead is then part of the learned ratio)."""
        if chars_per_token is None:
            return max(
                1, estimate_text_tokens(self.chars) + self.messages * _MESSAGE_OVERHEAD_TOKENS
            )
        return max(1, math.ceil(self.chars / chars_per_token))


def prompt_size(body: Mapping[str, Any]) -> PromptSize:
    """Measure a chat request's prompt (the walk serialises every tool schema)."""
    chars = 0
    messages = body.get("messages")
    count = 0
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, Mapping):
                continue
            count += 1
            chars += _content_chars(message.get("content"))
            calls = message.get("tool_calls")
            if isinstance(calls, list):
                chars += _json_chars(calls)
    tools = body.get("tools")
    if isinstance(tools, list):
        chars += _json_chars(tools)
    return PromptSize(chars, count)


def estimate_prompt_tokens(body: Mapping[str, Any]) -> int:
    """Estimate the prompt tokens of a chat request by the rule of thumb."""
    return prompt_size(body).tokens()


PromptEstimate = Callable[[], int]


class PromptMemo:
    """A body's prompt size, measured on first use only; valid while the body's messages and
    tools are not changed. Calling it gives the rule-of-thumb estimate (a PromptEstimate)."""

    __slots__ = ("_body", "_size")

    def __init__(self, body: Mapping[str, Any]) -> None:
        self._body = body
        self._size: PromptSize | None = None

    @property
    def measured(self) -> bool:
        return self._size is not None

    def size(self) -> PromptSize:
        if self._size is None:
            self._size = prompt_size(self._body)
        return self._size

    def __call__(self) -> int:
        return self.size().tokens()


def once(body: Mapping[str, Any]) -> PromptMemo:
    """The memo of `body`'s prompt size (see PromptMemo)."""
    return PromptMemo(body)


def _json_chars(value: Any) -> int:
    """Length of the JSON text (orjson: ~10x faster than repr on a 25-tool Cline list)."""
    try:
        return len(orjson.dumps(value))
    except TypeError:
        return len(repr(value))


def estimate_completion_tokens(content_chars: int, content_events: int) -> int:
    return max(content_events, estimate_text_tokens(content_chars))
