"""The internal chunk stream as Responses API events, and the `response` object.

One `ResponseEvents` per response numbers its events (`sequence_number` from 0) and keeps the
output items: a `reasoning` item (raw reasoning as `reasoning_text` content, no summary: the
upstreams produce no summaries), a `message` item with one `output_text` part, and one
`function_call` item per tool call. An item is opened with `response.output_item.added` when its
first delta arrives and closed with its `.done` events when another kind of item starts or the
answer ends; parallel tool calls stay open together. Each event is
`event: <type>\\ndata: {"type": <type>, ..., "sequence_number": n}\\n\\n` (what Codex CLI and the
OpenAI SDKs parse).

The answer's end: `response.completed`, or `response.incomplete` (`incomplete_details.reason`
`max_output_tokens` or `content_filter`) when the upstream stopped for length or a filter; a
failure after the stream started is `response.failed` with an `error` object whose `code` Codex
understands (gateway.doors.responses.errors).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from gateway.doors.responses.decode import ResponsesContext

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_id_for(internal_id: str) -> str:
    """A Responses id (`resp_...`) for the gateway's response id (`chatcmpl-<hex>`)."""
    tail = internal_id.rsplit("-", 1)[-1] if internal_id else ""
    return "resp_" + (tail or uuid.uuid4().hex)


def usage_of(usage: dict[str, Any]) -> dict[str, Any]:
    """Chat usage as Responses usage (input/output/total, cached and reasoning details)."""
    prompt = _int(usage.get("prompt_tokens"))
    completion = _int(usage.get("completion_tokens"))
    total = _int(usage.get("total_tokens")) or prompt + completion
    cached = _int(_get(usage.get("prompt_tokens_details"), "cached_tokens"))
    reasoning = _int(_get(usage.get("completion_tokens_details"), "reasoning_tokens"))
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": total,
    }


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def status_of(finish_reason: str | None) -> tuple[str, dict[str, str] | None]:
    """The response status and `incomplete_details` for the answer's finish reason."""
    reason = _INCOMPLETE.get(finish_reason or "")
    if reason is None:
        return "completed", None
    return "incomplete", {"reason": reason}


def response_object(
    response_id: str,
    created_at: int,
    context: ResponsesContext,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    incomplete: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The `response` object: the request's own settings echoed, as the OpenAI API does."""
    reasoning = context.reasoning or {}
    effort, summary = reasoning.get("effort"), reasoning.get("summary")
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": context.instructions,
        "max_output_tokens": context.max_output_tokens,
        "model": context.model,
        "output": output,
        "parallel_tool_calls": context.parallel_tool_calls,
        "previous_response_id": None,
        "reasoning": {
            "effort": effort if isinstance(effort, str) else None,
            "summary": summary if isinstance(summary, str) else None,
        },
        "store": False,  # nothing is ever stored, whatever was asked
        "temperature": context.temperature,
        "text": context.text or {"format": {"type": "text"}},
        "tool_choice": context.tool_choice,
        "tools": context.tools,
        "top_p": context.top_p,
        "truncation": "disabled",
        "usage": usage,
        "metadata": context.metadata,
    }


class _Call:
    __slots__ = ("arguments", "item", "output_index")

    def __init__(self, item: dict[str, Any], output_index: int) -> None:
        self.item = item
        self.output_index = output_index
        self.arguments: list[str] = []


class ResponseEvents:
    """The events of one streamed response (see the module docstring)."""

    def __init__(self, response_id: str, context: ResponsesContext) -> None:
        self.response_id = response_id
        self.context = context
        self.created_at = int(time.time())
        # 0 and 1 are `response.created` and `response.in_progress`, which go out with the
        # headers, possibly after the first content event was built.
        self.seq = 2
        self.items: list[dict[str, Any]] = []  # every item opened, by output_index
        self._tag = response_id.removeprefix("resp_")[:24]
        self._reasoning: list[str] | None = None  # the open reasoning item's text
        self._text: list[str] | None = None  # the open message item's text
        self._text_prefix = b""
        self._calls: dict[int, _Call] = {}  # the open function calls, by chat tool-call index
        # Text and reasoning that came while calls were open: a call's fragments may resume
        # after them, so they wait until the calls close at the end.
        self._held: list[tuple[str, str]] = []

    # -- events ------------------------------------------------------------------------------
    def event(self, kind: str, payload: dict[str, Any]) -> bytes:
        payload["sequence_number"] = self.seq
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def _typed(self, kind: str, **fields: Any) -> bytes:
        return self.event(kind, {"type": kind, **fields})

    def start(self) -> bytes:
        """`response.created` and `response.in_progress`."""
        out = b""
        for seq, kind in enumerate(("response.created", "response.in_progress")):
            body = response_object(
                self.response_id, self.created_at, self.context, status="in_progress", output=[]
            )
            payload = {"type": kind, "response": body, "sequence_number": seq}
            out += b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
        return out

    def text(self, delta: str) -> bytes:
        """An `output_text.delta` (opening the message item first when needed)."""
        if self._calls:
            self._held.append(("text", delta))
            return b""
        out = b""
        if self._text is None:
            out = self._open_message()
        assert self._text is not None
        self._text.append(delta)
        seq = self.seq
        self.seq += 1
        return (
            out
            + self._text_prefix
            + orjson.dumps(delta)
            + b',"logprobs":[],"sequence_number":'
            + str(seq).encode()
            + b"}\n\n"
        )

    def reasoning(self, delta: str) -> bytes:
        if self._calls:
            self._held.append(("reasoning", delta))
            return b""
        out = b""
        if self._reasoning is None:
            out = self._close_all() + self._open_reasoning()
        assert self._reasoning is not None
        self._reasoning.append(delta)
        index = len(self.items) - 1
        return out + self._typed(
            "response.reasoning_text.delta",
            item_id=self.items[index]["id"],
            output_index=index,
            content_index=0,
            delta=delta,
        )

    def delta(self, delta: dict[str, Any]) -> bytes:
        """The events for one chat delta (reasoning, text, tool-call fragments, in that order)."""
        out = b""
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            out += self.reasoning(reasoning)
        text = delta.get("content")
        if isinstance(text, str) and text:
            out += self.text(text)
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for position, fragment in enumerate(calls):
                if isinstance(fragment, dict):
                    out += self._call(position, fragment)
        return out

    def finish(self) -> bytes:
        """Close every open item (before the final event), then send what was held."""
        out = self._close_all()
        held, self._held = self._held, []
        for kind, delta in held:
            out += self.text(delta) if kind == "text" else self.reasoning(delta)
        return out + self._close_all()

    def completed(
        self, usage: dict[str, Any], finish_reason: str | None, extra: dict[str, Any]
    ) -> bytes:
        """`response.completed` (or `response.incomplete`) with the usage; `extra` (the
        gateway's metadata) is added to the response object without replacing its fields."""
        status, incomplete = status_of(finish_reason)
        body = response_object(
            self.response_id,
            self.created_at,
            self.context,
            status=status,
            output=self.items,
            usage=usage_of(usage),
            incomplete=incomplete,
        )
        for key, value in extra.items():
            body.setdefault(key, value)
        return self._typed(f"response.{status}", response=body)

    def failed(self, error: dict[str, Any]) -> bytes:
        """`response.failed` with `error` ({"code", "message"})."""
        body = response_object(
            self.response_id,
            self.created_at,
            self.context,
            status="failed",
            output=self.items,
            error=error,
        )
        return self._typed("response.failed", response=body)

    # -- items -------------------------------------------------------------------------------
    def _item_id(self, prefix: str) -> str:
        return f"{prefix}_{self._tag}{len(self.items)}"

    def _add(self, item: dict[str, Any]) -> bytes:
        self.items.append(item)
        return self._typed(
            "response.output_item.added", output_index=len(self.items) - 1, item=dict(item)
        )

    def _open_message(self) -> bytes:
        out = self._close_all()
        item = {
            "id": self._item_id("msg"),
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        out += self._add(item)
        index = len(self.items) - 1
        out += self._typed(
            "response.content_part.added",
            item_id=item["id"],
            output_index=index,
            content_index=0,
            part={"type": "output_text", "text": "", "annotations": []},
        )
        self._text = []
        head = orjson.dumps(
            {
                "type": "response.output_text.delta",
                "item_id": item["id"],
                "output_index": index,
                "content_index": 0,
            }
        )
        self._text_prefix = b"event: response.output_text.delta\ndata: " + head[:-1] + b',"delta":'
        return out

    def _open_reasoning(self) -> bytes:
        item = {"id": self._item_id("rs"), "type": "reasoning", "summary": [], "content": []}
        out = self._add(item)
        index = len(self.items) - 1
        self._reasoning = []
        return out + self._typed(
            "response.content_part.added",
            item_id=item["id"],
            output_index=index,
            content_index=0,
            part={"type": "reasoning_text", "text": ""},
        )

    def _call(self, position: int, fragment: dict[str, Any]) -> bytes:
        index = fragment.get("index", position)
        if not isinstance(index, int):
            index = position
        fn = fragment.get("function")
        fn = fn if isinstance(fn, dict) else {}
        name = fn.get("name") if isinstance(fn.get("name"), str) else ""
        arguments = fn.get("arguments") if isinstance(fn.get("arguments"), str) else ""
        out = b""
        call = self._calls.get(index)
        if call is None:
            if self._text is not None or self._reasoning is not None:
                out += self._close_all()
            call_id = fragment.get("id")
            item = {
                "id": self._item_id("fc"),
                "type": "function_call",
                "status": "in_progress",
                "call_id": call_id if isinstance(call_id, str) and call_id else self._call_id(),
                "name": name,
                "arguments": "",
            }
            out += self._add(item)
            call = self._calls[index] = _Call(item, len(self.items) - 1)
        elif name:
            call.item["name"] += name
        if arguments:
            call.arguments.append(arguments)
            out += self._typed(
                "response.function_call_arguments.delta",
                item_id=call.item["id"],
                output_index=call.output_index,
                delta=arguments,
            )
        return out

    def _call_id(self) -> str:
        return "call_" + uuid.uuid4().hex[:24]

    def _close_all(self) -> bytes:
        out = b""
        if self._reasoning is not None:
            out += self._close_reasoning()
        if self._text is not None:
            out += self._close_message()
        if self._calls:
            for call in self._calls.values():
                out += self._close_call(call)
            self._calls = {}
        return out

    def _close_reasoning(self) -> bytes:
        assert self._reasoning is not None
        text = "".join(self._reasoning)
        self._reasoning = None
        index = self._last_of("reasoning")
        item = self.items[index]
        part = {"type": "reasoning_text", "text": text}
        item["content"] = [part]
        item.pop("status", None)
        ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
        return (
            self._typed("response.reasoning_text.done", **ids, text=text)
            + self._typed("response.content_part.done", **ids, part=part)
            + self._typed("response.output_item.done", output_index=index, item=item)
        )

    def _close_message(self) -> bytes:
        assert self._text is not None
        text = "".join(self._text)
        self._text = None
        index = self._last_of("message")
        item = self.items[index]
        part = {"type": "output_text", "text": text, "annotations": []}
        item["content"] = [part]
        item["status"] = "completed"
        ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
        return (
            self._typed("response.output_text.done", **ids, text=text, logprobs=[])
            + self._typed("response.content_part.done", **ids, part=part)
            + self._typed("response.output_item.done", output_index=index, item=item)
        )

    def _close_call(self, call: _Call) -> bytes:
        item = call.item
        item["arguments"] = "".join(call.arguments)
        item["status"] = "completed"
        return self._typed(
            "response.function_call_arguments.done",
            item_id=item["id"],
            output_index=call.output_index,
            name=item["name"],
            arguments=item["arguments"],
        ) + self._typed("response.output_item.done", output_index=call.output_index, item=item)

    def _last_of(self, kind: str) -> int:
        for index in range(len(self.items) - 1, -1, -1):
            if self.items[index]["type"] == kind:
                return index
        raise AssertionError(f"no open {kind} item")


def output_of(
    reasoning: str, text: str, calls: list[dict[str, Any]], tag: str
) -> list[dict[str, Any]]:
    """The output items of a whole (non-streamed) answer, in the streamed order."""
    items: list[dict[str, Any]] = []
    if reasoning:
        items.append(
            {
                "id": f"rs_{tag}{len(items)}",
                "type": "reasoning",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": reasoning}],
            }
        )
    if text or not calls:
        items.append(
            {
                "id": f"msg_{tag}{len(items)}",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        )
    for call in calls:
        fn = call.get("function") or {}
        call_id = call.get("id")
        items.append(
            {
                "id": f"fc_{tag}{len(items)}",
                "type": "function_call",
                "status": "completed",
                "call_id": call_id
                if isinstance(call_id, str) and call_id
                else f"call_{tag}{len(items)}",
                "name": fn.get("name") or "",
                "arguments": fn.get("arguments") or "",
            }
        )
    return items
