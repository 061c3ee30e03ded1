"""Helpers for the Anthropic door's tests: the recorded transcripts and an SSE event parser that
checks the Messages stream grammar byte by byte."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
from paths import FIXTURES

TRANSCRIPTS: dict[str, Any] = json.loads((FIXTURES / "anthropic_door.json").read_text())
# Real Claude Code 2.1.332 requests, recorded on 127.0.0.1 (scripts/record_agent_fixtures.py).
CLAUDE_CODE: dict[str, Any] = json.loads((FIXTURES / "claude_code_2.1.332.json").read_text())
CLAUDE_CODE_REQUESTS: list[tuple[str, dict[str, Any]]] = [
    (f"{name}[{i}]", exchange["request"])
    for name, scenario in CLAUDE_CODE["scenarios"].items()
    for i, exchange in enumerate(scenario["exchanges"])
]


def transcript(name: str) -> Any:
    return copy.deepcopy(TRANSCRIPTS[name])


def parse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of every event; asserts each is `event: X\\ndata: {...}\\n\\n` with the
    data's `type` equal to the event name (pings included)."""
    assert raw.endswith(b"\n\n"), "every event ends with a blank line"
    events = []
    for block in raw[:-2].split(b"\n\n"):
        lines = block.split(b"\n")
        assert len(lines) == 2, f"malformed event {block!r}"
        assert lines[0].startswith(b"event: ") and lines[1].startswith(b"data: "), block
        name = lines[0][len(b"event: ") :].decode()
        data = orjson.loads(lines[1][len(b"data: ") :])
        assert data["type"] == name, block
        events.append((name, data))
    return events


def check_grammar(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Assert the Messages stream order and return the content blocks as the SDK would
    accumulate them (text, thinking, tool_use with its joined partial JSON)."""
    names = [name for name, _ in events if name != "ping"]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    blocks: list[dict[str, Any]] = []
    open_index: int | None = None
    for name, data in events[1:]:
        if name == "ping":
            continue
        if name == "content_block_start":
            assert open_index is None, "a block opened before the previous one closed"
            assert data["index"] == len(blocks), "indices count up from 0 without gaps"
            block = dict(data["content_block"])
            if block["type"] == "tool_use":
                assert block["input"] == {}
                block["partial_json"] = ""
            blocks.append(block)
            open_index = data["index"]
        elif name == "content_block_delta":
            assert data["index"] == open_index, "a delta outside its open block"
            block, delta = blocks[data["index"]], data["delta"]
            kind = {
                "text_delta": "text",
                "thinking_delta": "thinking",
                "signature_delta": "thinking",
                "input_json_delta": "tool_use",
            }[delta["type"]]
            assert block["type"] == kind, f"{delta['type']} inside a {block['type']} block"
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] += delta["signature"]
            else:
                block["partial_json"] += delta["partial_json"]
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
        elif name == "message_delta":
            assert open_index is None, "message_delta with a block still open"
        elif name == "message_stop":
            pass
        else:
            raise AssertionError(f"unexpected event {name}")
    for block in blocks:
        if block["type"] == "tool_use":
            block["input"] = json.loads(block.pop("partial_json") or "{}")
        if block["type"] == "thinking":
            assert block["signature"], "a thinking block closes with its signature"
    return blocks
