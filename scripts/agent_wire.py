"""Hand-written upstream answers in the Anthropic Messages and Responses wire formats.

Used by scripts/record_agent_fixtures.py to play the API a real Claude Code or Codex CLI talks
to, so that what the CLI sends (including the request after a tool result) can be recorded.
Minimal but complete: every event Claude Code and Codex read, in order, blank-line terminated.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


# --- Anthropic Messages ----------------------------------------------------------------------
def anthropic_message(
    model: str, blocks: list[dict[str, Any]], input_tokens: int, output_tokens: int
) -> dict[str, Any]:
    """A whole (non-streamed) Messages reply whose content is `blocks`."""
    tool = any(b["type"] == "tool_use" for b in blocks)
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": "tool_use" if tool else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
        },
    }


def anthropic_stream(
    model: str, blocks: list[dict[str, Any]], input_tokens: int, output_tokens: int
) -> list[bytes]:
    """The SSE events of a streamed Messages reply: message_start, ping, one start/delta/stop
    triple per block (text deltas, or input_json_delta for tool_use), message_delta with the
    stop reason and usage, message_stop."""
    whole = anthropic_message(model, blocks, input_tokens, output_tokens)
    start = {**whole, "content": [], "stop_reason": None}
    start["usage"] = {**whole["usage"], "output_tokens": 1}
    out = [sse("message_start", {"type": "message_start", "message": start})]
    out.append(sse("ping", {"type": "ping"}))
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            head: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in _halves(block["text"])]
        else:
            head = {**block, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": p} for p in json_pieces(block["input"])
            ]
        out.append(
            sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": head},
            )
        )
        for delta in deltas:
            out.append(
                sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        out.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    out.append(
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": whole["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        )
    )
    out.append(sse("message_stop", {"type": "message_stop"}))
    return out


def json_pieces(value: dict[str, Any]) -> list[str]:
    """The JSON text of `value` cut after each member (string values stay whole, so a path
    in them can still be found and replaced in the recorded events); joined, it is
    json.dumps(value)."""
    if not value:
        return ["{}"]
    members = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in value.items()]
    pieces = ["{" + members[0]] + [", " + m for m in members[1:]]
    pieces[-1] += "}"
    return pieces


def _halves(text: str) -> list[str]:
    cut = len(text) // 2
    return [p for p in (text[:cut], text[cut:]) if p]


def anthropic_models(names: list[str]) -> dict[str, Any]:
    return {
        "data": [
            {
                "type": "model",
                "id": name,
                "display_name": name,
                "created_at": "2025-01-01T00:00:00Z",
            }
            for name in names
        ],
        "has_more": False,
        "first_id": names[0] if names else None,
        "last_id": names[-1] if names else None,
    }


# --- Responses -------------------------------------------------------------------------------
def responses_stream(
    model: str, items: list[dict[str, Any]], input_tokens: int, output_tokens: int
) -> list[bytes]:
    """The SSE events of a streamed Responses reply. `items` are output items in their final
    form: {"type": "message", "text": ...} or {"type": "function_call", "name", "arguments"}."""
    response_id = f"resp_{uuid.uuid4().hex}"
    created = int(time.time())
    seq = 0

    def event(kind: str, **fields: Any) -> bytes:
        nonlocal seq
        seq += 1
        return sse(kind, {"type": kind, "sequence_number": seq - 1, **fields})

    def response(status: str, output: list[dict[str, Any]], usage: Any) -> dict[str, Any]:
        return {
            "id": response_id,
            "object": "response",
            "created_at": created,
            "status": status,
            "model": model,
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "store": False,
            "error": None,
            "incomplete_details": None,
            "usage": usage,
        }

    out = [event("response.created", response=response("in_progress", [], None))]
    out.append(event("response.in_progress", response=response("in_progress", [], None)))
    done_items: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if item["type"] == "message":
            item_id = f"msg_{uuid.uuid4().hex}"
            text = item["text"]
            final: dict[str, Any] = {
                "id": item_id,
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
            added = {**final, "status": "in_progress", "content": []}
            out.append(event("response.output_item.added", output_index=index, item=added))
            part = {"type": "output_text", "text": "", "annotations": []}
            common = {"item_id": item_id, "output_index": index, "content_index": 0}
            out.append(event("response.content_part.added", **common, part=part))
            for piece in _halves(text):
                out.append(event("response.output_text.delta", **common, delta=piece))
            out.append(event("response.output_text.done", **common, text=text))
            out.append(event("response.content_part.done", **common, part={**part, "text": text}))
        else:
            item_id = f"fc_{uuid.uuid4().hex}"
            final = {
                "id": item_id,
                "type": "function_call",
                "status": "completed",
                "call_id": item.get("call_id") or f"call_{uuid.uuid4().hex[:24]}",
                "name": item["name"],
                "arguments": item["arguments"],
            }
            added = {**final, "status": "in_progress", "arguments": ""}
            out.append(event("response.output_item.added", output_index=index, item=added))
            common = {"item_id": item_id, "output_index": index}
            for piece in json_pieces(json.loads(item["arguments"])):
                out.append(event("response.function_call_arguments.delta", **common, delta=piece))
            out.append(
                event(
                    "response.function_call_arguments.done",
                    **common,
                    arguments=item["arguments"],
                )
            )
        out.append(event("response.output_item.done", output_index=index, item=final))
        done_items.append(final)
    usage = {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }
    out.append(event("response.completed", response=response("completed", done_items, usage)))
    return out
