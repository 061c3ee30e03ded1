"""Assemble streamed chunk deltas into whole messages (non-stream answers, verdict windows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ToolCallParts:
    id: str | None = None
    type: str = "function"
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "function": {"name": self.name, "arguments": "".join(self.arguments)},
        }


@dataclass(slots=True)
class ChoiceParts:
    """One choice's content, reasoning, tool calls and logprobs, as streamed so far."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: dict[int, ToolCallParts] = field(default_factory=dict)
    logprobs: list[Any] = field(default_factory=list)
    finish_reason: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.content)

    def add_delta(self, delta: dict[str, Any]) -> None:
        text = delta.get("content")
        if isinstance(text, str) and text:
            self.content.append(text)
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            self.reasoning.append(reasoning)
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for position, fragment in enumerate(calls):
                if isinstance(fragment, dict):
                    self._add_tool_fragment(position, fragment)

    def _add_tool_fragment(self, position: int, fragment: dict[str, Any]) -> None:
        index = fragment.get("index", position)
        parts = self.tool_calls.setdefault(
            index if isinstance(index, int) else position, ToolCallParts()
        )
        if isinstance(fragment.get("id"), str):
            parts.id = fragment["id"]
        if isinstance(fragment.get("type"), str):
            parts.type = fragment["type"]
        fn = fragment.get("function")
        if isinstance(fn, dict):
            if isinstance(fn.get("name"), str):
                parts.name += fn["name"]
            if isinstance(fn.get("arguments"), str):
                parts.arguments.append(fn["arguments"])

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self.text if self.content or not self.tool_calls else None,
        }
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i].as_dict() for i in sorted(self.tool_calls)]
        return message


class Assembly:
    """All choices of one streamed answer."""

    __slots__ = ("choices",)

    def __init__(self) -> None:
        self.choices: dict[int, ChoiceParts] = {}

    def add_chunk(self, chunk: dict[str, Any]) -> None:
        for position, choice in enumerate(chunk.get("choices") or ()):
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", position)
            parts = self.choices.setdefault(
                index if isinstance(index, int) else position, ChoiceParts()
            )
            delta = choice.get("delta")
            if isinstance(delta, dict):
                parts.add_delta(delta)
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
                parts.logprobs.extend(logprobs["content"])
            if choice.get("finish_reason"):
                parts.finish_reason = str(choice["finish_reason"])

    def first(self) -> ChoiceParts:
        return self.choices.get(0) or next(iter(self.choices.values()), ChoiceParts())

    def has_answer(self) -> bool:
        return any(c.content or c.tool_calls for c in self.choices.values())
