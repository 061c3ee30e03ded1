"""A normalised streamed chunk and what one walk over its choices found in it.

An upstream reads each chunk once (`read_chunk`); billing, the sinks and the relay use the facts
instead of walking the choices again. `data` is the parsed event in the client dialect (usage
removed, `delta.role` dropped, every choice indexed). Whoever changes `data` afterwards (the
continuation's echo strip) reads it again.
"""

from __future__ import annotations

from typing import Any

_NONE: tuple[int, ...] = ()
_FIRST: tuple[int, ...] = (0,)


class MalformedChunk(ValueError):
    """A choice that is not a JSON object."""


class Chunk:
    """`answer`, `tools`, `shown`: indexes of the choices with text or a tool call, with a tool
    call, with anything a client is shown (reasoning included). `finish`: (index, reason) pairs.
    `in_reasoning`: the last shown choice carried reasoning only. `rebuild`: the positions of the
    shown choices when the choices a client gets differ from `data["choices"]` (some carry
    nothing, or a finish_reason, which the sinks hold back for the final chunk); None: send
    them as they are (`sent_choices`).
    `chars`/`char_events` and `reasoning_chars`/`reasoning_events` feed billing estimates;
    `answer_chars` counts answer text and tool-call fragments (at least 1 each), never reasoning.
    `plain_text`: one choice, index 0, with answer text only, sent as it is (a `TextChunk`).

    The facts default to "nothing" at class level: a chunk stores only what it has (one is
    made per streamed event, so its construction is on the per-chunk path)."""

    text: str = ""
    answer: tuple[int, ...] = _NONE
    tools: tuple[int, ...] = _NONE
    shown: tuple[int, ...] = _NONE
    finish: tuple[tuple[int, str], ...] = ()
    in_reasoning: bool = False
    rebuild: tuple[int, ...] | None = None
    chars: int = 0
    char_events: int = 0
    reasoning_chars: int = 0
    reasoning_events: int = 0
    answer_chars: int = 0
    plain_text: bool = False

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__!r})"


class TextChunk(Chunk):
    """Nearly every chunk of an answer: choice 0 with a piece of answer text and nothing else;
    the other facts follow from that."""

    answer = shown = _FIRST
    char_events = 1
    plain_text = True

    def __init__(self, data: dict[str, Any], text: str) -> None:
        self.data = data
        self.text = text
        self.chars = self.answer_chars = len(text)


def read_chunk(data: dict[str, Any]) -> Chunk:
    """Walk `data`'s choices once, normalising them in place, and return the chunk with its
    facts. A missing or non-list `choices` counts as none; raise MalformedChunk for a choice
    that is not an object."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        return Chunk(data)
    if len(choices) != 1:
        chunk = Chunk(data)
        _read_many(chunk, choices)
        return chunk
    choice = choices[0]
    # Inline, as it runs for nearly every chunk: choice 0 with a piece of answer text only.
    if isinstance(choice, dict) and choice.get("index") == 0 and "finish_reason" in choice:
        delta = choice.get("delta")
        if (
            choice["finish_reason"] is None
            and isinstance(delta, dict)
            and "reasoning_content" not in delta
            and "tool_calls" not in delta
        ):
            text = delta.get("content")
            if isinstance(text, str) and text:
                delta.pop("role", None)
                return TextChunk(data, text)
    return _read_single(data, choice)


def _read_single(data: dict[str, Any], choice: Any) -> Chunk:
    """One choice, without building index lists."""
    if not isinstance(choice, dict):
        raise MalformedChunk("malformed choice in stream")
    delta = choice.get("delta")
    index = _index(choice, 0)
    chunk = Chunk(data)
    reason = choice.get("finish_reason")
    if reason:
        chunk.finish = ((index, str(reason)),)
    kind = _read_delta(chunk, delta)
    if kind is None:
        return chunk
    one = _FIRST if index == 0 else (index,)
    chunk.shown = one
    if kind != "reasoning":
        chunk.answer = one
    if kind == "tools":
        chunk.tools = one
    chunk.in_reasoning = kind == "reasoning"
    if not _finish_held(choice):
        chunk.rebuild = _FIRST
    return chunk


def _read_many(chunk: Chunk, choices: list[Any]) -> None:
    answer: list[int] = []
    tools: list[int] = []
    shown: list[int] = []
    finish: list[tuple[int, str]] = []
    positions: list[int] = []
    plain = True
    for position, choice in enumerate(choices):
        if not isinstance(choice, dict):
            raise MalformedChunk("malformed choice in stream")
        index = _index(choice, position)
        reason = choice.get("finish_reason")
        if reason:
            finish.append((index, str(reason)))
        kind = _read_delta(chunk, choice.get("delta"))
        if kind is None:
            plain = False
            continue
        shown.append(index)
        if kind != "reasoning":
            answer.append(index)
        if kind == "tools":
            tools.append(index)
        chunk.in_reasoning = kind == "reasoning"
        plain = plain and _finish_held(choice)
        positions.append(position)
    chunk.answer, chunk.tools, chunk.shown = tuple(answer), tuple(tools), tuple(shown)
    chunk.finish = tuple(finish)
    if not plain:
        chunk.rebuild = tuple(positions)


def sent_choices(chunk: Chunk) -> list[dict[str, Any]]:
    """The choices a client is sent: the shown ones, each with `finish_reason: null`."""
    choices: list[dict[str, Any]] = chunk.data["choices"]
    if chunk.rebuild is None:
        return choices
    return [{**choices[position], "finish_reason": None} for position in chunk.rebuild]


def _index(choice: dict[str, Any], position: int) -> int:
    """The choice's index (set to its position when missing); its position when not an int."""
    index = choice.setdefault("index", position)
    return index if type(index) is int else position


def _finish_held(choice: dict[str, Any]) -> bool:
    """Whether the choice already says `finish_reason: null`, as every sent choice must."""
    return "finish_reason" in choice and choice["finish_reason"] is None


def _read_delta(chunk: Chunk, delta: Any) -> str | None:
    """Count one delta's content into `chunk`; its kind: "text", "tools" (a tool call, with or
    without text), "reasoning" (reasoning only), or None (nothing a client is shown)."""
    if not isinstance(delta, dict):
        return None
    delta.pop("role", None)
    text = delta.get("content")
    reasoning = delta.get("reasoning_content")
    calls = delta.get("tool_calls")
    size = 0
    if isinstance(text, str) and text:
        size = len(text)
        chunk.text += text
        chunk.answer_chars += size
    if isinstance(reasoning, str) and reasoning:
        size += len(reasoning)
        chunk.reasoning_chars += len(reasoning)
        chunk.reasoning_events += 1
    if calls:
        size += _tool_call_chars(chunk, calls)
    if size:
        chunk.chars += size
        chunk.char_events += 1
    if calls:
        if isinstance(calls, list):
            for call in calls:
                if isinstance(call, dict) and not isinstance(call.get("function"), dict):
                    call["function"] = {}
        return "tools"
    if text:
        return "text"
    return "reasoning" if reasoning else None


def _tool_call_chars(chunk: Chunk, calls: Any) -> int:
    """Characters of the tool-call fragments' names and arguments; each fragment counts at
    least 1 towards `chunk.answer_chars`."""
    total = 0
    if isinstance(calls, list):
        for call in calls:
            if isinstance(call, dict):
                fn = call.get("function")
                if isinstance(fn, dict):
                    size = len(str(fn.get("name") or "")) + len(str(fn.get("arguments") or ""))
                    total += size
                    chunk.answer_chars += size or 1
    return total
