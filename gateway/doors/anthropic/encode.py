"""The internal chunk stream encoded as Anthropic Messages events, and the whole-body message.

Stream order (what the Anthropic SDK and Claude Code expect):

    message_start
    (content_block_start, content_block_delta*, content_block_stop)*
    message_delta   (stop_reason, stop_sequence, usage)
    message_stop

Blocks: each closes before the next opens, indices count up from 0. Reasoning goes into a
`thinking` block (closed with a `signature_delta`), text into a `text` block, each tool call
into its own `tool_use` block (`input: {}` first, then `input_json_delta` fragments); a change
of kind opens a new block, so text after a tool call gets a new text block and a thinking delta
never lands in a text block. Every event ends with a blank line.

Stop reasons: a matched stop sequence -> `stop_sequence` (with the sequence); `length` ->
`max_tokens`; a tool call -> `tool_use` (a later `stop` never overwrites it); content filter ->
`refusal`; otherwise `end_turn`.

Usage: `message_start` carries the prompt estimate as `input_tokens` (never 0: Claude Code's
context display reads it); `message_delta` carries what the upstream reported: `input_tokens`
(the prompt less its cached part, as Anthropic counts), `output_tokens`,
`cache_read_input_tokens` from the upstream's cached tokens (llama.cpp `cache_n`, Cerebras
`prompt_tokens_details.cached_tokens`); the two sum to the upstream's prompt tokens.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson

from gateway.doors.anthropic.decode import MessagesContext
from gateway.doors.anthropic.stop import StopMatcher

log = logging.getLogger("gateway.doors.anthropic")

# An opaque signature for thinking blocks (Claude Code sends them back; nothing checks them).
SIGNATURE = "glm-token-saver"
PING_EVENT = b'event: ping\ndata: {"type": "ping"}\n\n'
MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def tool_id() -> str:
    return "toolu_" + uuid.uuid4().hex[:24]


def stop_reason(finish: str | None, tool_used: bool, matched: str | None) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) of an answer."""
    if matched is not None:
        return "stop_sequence", matched
    if finish == "length":
        return "max_tokens", None
    if tool_used or finish == "tool_calls":
        return "tool_use", None
    if finish == "content_filter":
        return "refusal", None
    return "end_turn", None


def usage_of(usage: dict[str, Any] | None, estimate: int) -> dict[str, Any]:
    """The Anthropic usage object of an internal usage (prompt/completion/cached tokens).

    Anthropic's `input_tokens` excludes cache reads (the context is `input_tokens +
    cache_read_input_tokens + cache_creation_input_tokens`; Claude Code sums them), so the
    cached part of the prompt moves from one to the other. Without an upstream prompt count
    the estimate stands for the uncached prompt."""
    usage = usage or {}
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    cached = cached if isinstance(cached, int) and cached > 0 else 0
    if isinstance(prompt, int) and prompt > 0:
        cached = min(cached, prompt)
        uncached = prompt - cached
    else:
        uncached = max(estimate - cached, 1)
    return {
        "input_tokens": uncached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": completion if isinstance(completion, int) else 0,
    }


def message_start(message_id: str, model: str, input_tokens: int) -> bytes:
    return event(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": max(input_tokens, 1),
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 1,
                },
            },
        },
    )


class _PendingTool:
    """A tool call not yet sent: its name has not arrived, or another call's block is open."""

    __slots__ = ("id", "name", "arguments")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name = ""
        self.arguments: list[str] = []


class StreamEncoder:
    """Turns the deltas of choice 0 into Anthropic events, block by block."""

    def __init__(self, ctx: MessagesContext) -> None:
        self.ctx = ctx
        self.index = -1
        self.open: str | None = None  # "thinking", "text", "tool"
        self.tool_key: int | None = None
        self.tools_seen: set[int] = set()
        self.pending: dict[int, _PendingTool] = {}
        self.tool_used = False
        self.stop = StopMatcher(ctx.stop_sequences) if ctx.stop_sequences else None
        self._text_prefix = b""
        self._thinking_prefix = b""
        self._json_prefix = b""

    @property
    def ended(self) -> bool:
        """A stop sequence matched: the answer is complete, later content is not sent."""
        return self.stop is not None and self.stop.matched is not None

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        out = b""
        if self.open == "thinking":
            out = event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": self.index,
                    "delta": {"type": "signature_delta", "signature": SIGNATURE},
                },
            )
        self.open = None
        self.tool_key = None
        stop = {"type": "content_block_stop", "index": self.index}
        return out + event("content_block_stop", stop)

    def _start(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self.index += 1
        self.open = kind
        head = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
        head += str(self.index).encode()
        if kind == "text":
            self._text_prefix = head + b',"delta":{"type":"text_delta","text":'
        elif kind == "thinking":
            self._thinking_prefix = head + b',"delta":{"type":"thinking_delta","thinking":'
        else:
            self._json_prefix = head + b',"delta":{"type":"input_json_delta","partial_json":'
        start = {"type": "content_block_start", "index": self.index, "content_block": block}
        return out + event("content_block_start", start)

    def text(self, text: str) -> bytes:
        if self.stop is not None:
            text = self.stop.feed(text)
        if not text:
            return b""
        out = b""
        if self.open != "text":
            out = self._flush_tools() + self._start("text", {"type": "text", "text": ""})
        return out + self._text_prefix + orjson.dumps(text) + b"}}\n\n"

    def thinking(self, text: str) -> bytes:
        out = b""
        if self.open != "thinking":
            out = (
                self._flush_text()
                + self._flush_tools()
                + self._start("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            )
        if not self.ctx.thinking_shown:
            return out
        return out + self._thinking_prefix + orjson.dumps(text) + b"}}\n\n"

    def _flush_text(self) -> bytes:
        """Text held back by the stop matcher goes out before another kind of block."""
        if self.stop is None or not self.stop.holding:
            return b""
        held = self.stop.flush()
        out = b"" if self.open == "text" else self._start("text", {"type": "text", "text": ""})
        return out + self._text_prefix + orjson.dumps(held) + b"}}\n\n"

    def tool_fragment(self, position: int, fragment: Any) -> bytes:
        if not isinstance(fragment, dict):
            return b""
        key = fragment.get("index", position)
        key = key if type(key) is int else position
        fn = fragment.get("function")
        fn = fn if isinstance(fn, dict) else {}
        name = fn.get("name")
        arguments = fn.get("arguments")
        arguments = arguments if isinstance(arguments, str) else ""
        if self.open == "tool" and self.tool_key == key:
            return self._arguments(arguments)
        if key in self.tools_seen:
            log.warning("anthropic door: fragment of tool call %d after its block closed", key)
            return b""
        pending = self.pending.get(key)
        if pending is None:
            pending = self.pending[key] = _PendingTool()
        if isinstance(fragment.get("id"), str) and fragment["id"]:
            pending.id = fragment["id"]
        if arguments:
            pending.arguments.append(arguments)
        if isinstance(name, str) and name:
            pending.name = name
        if not pending.name:
            return b""  # held until the name arrives (or the answer ends)
        if self.open == "tool":
            # Another call's block is open and its fragments may still come (some servers
            # interleave calls): this one is held whole until the next block or the end.
            return b""
        return self._open_tool(key)

    def _flush_tools(self) -> bytes:
        """The held calls that have a name, in index order, before another kind of block."""
        out = b""
        for key in sorted(self.pending):
            if self.pending[key].name:
                out += self._open_tool(key)
        return out

    def _open_tool(self, key: int) -> bytes:
        pending = self.pending.pop(key)
        self.tools_seen.add(key)
        self.tool_used = True
        block = {
            "type": "tool_use",
            "id": pending.id or tool_id(),
            "name": pending.name,
            "input": {},
        }
        out = self._flush_text() + self._start("tool", block)
        self.tool_key = key
        return out + self._arguments("".join(pending.arguments))

    def _arguments(self, arguments: str) -> bytes:
        if not arguments:
            return b""
        return self._json_prefix + orjson.dumps(arguments) + b"}}\n\n"

    def delta(self, delta: dict[str, Any]) -> bytes:
        """The events of one delta of choice 0: reasoning, then text, then tool calls."""
        if self.ended:
            return b""
        out = b""
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning and not self.ctx.thinking_off:
            out += self.thinking(reasoning)
        text = delta.get("content")
        if isinstance(text, str) and text:
            out += self.text(text)
            if self.ended:
                return out
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for position, fragment in enumerate(calls):
                out += self.tool_fragment(position, fragment)
        return out

    def finish(self, finish: str | None, usage: dict[str, Any], estimate: int) -> bytes:
        """Close the last block and send message_delta (message_stop is the caller's)."""
        out = b""
        if self.stop is not None and not self.ended:
            out += self._flush_text()
        for key in sorted(self.pending):  # held calls, and those whose name never came
            out += self._open_tool(key)
        out += self._close()
        matched = self.stop.matched if self.stop is not None else None
        reason, sequence = stop_reason(finish, self.tool_used, matched)
        out += event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": sequence},
                "usage": usage_of(usage, estimate),
            },
        )
        return out


def parse_input(arguments: str, name: str) -> dict[str, Any]:
    """A tool call's arguments as the `input` object ({} when they are not a JSON object)."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        log.warning("anthropic door: tool call %r has arguments that are not JSON", name)
        return {}
    return value if isinstance(value, dict) else {}
