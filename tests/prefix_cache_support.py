"""Claude Code requests for the prefix-cache measurement, built from a recorded real request.

Two prompts of one Claude Code session differ in the billing line's `cc_version` suffix
(`cc_version=2.1.332.58d` in one, `.934` in the next); `session_requests` makes such a pair (or
more) from `tests/fixtures/claude_code_2.1.332.json`, identical in every other byte. The recorded
prompt is ~12 k tokens (7 KB system, 32 KB of tools, 10 KB of messages), more than the 270M test
model processes in reasonable time on a shared core, so `trimmed` keeps its shape (the billing
line first, then the SDK line, the main system text, tools, the user turn) cut to a size.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import orjson
from paths import FIXTURES

FIXTURE = FIXTURES / "claude_code_2.1.332.json"
# The suffixes two recorded prompts of the real CLI carry.
SUFFIXES = ("58d", "934", "573", "34c")
_VERSION = re.compile(r"cc_version=2\.1\.332\.[0-9a-z]+;")


def recorded_request() -> dict[str, Any]:
    """The first /v1/messages body of the recorded plain-text scenario."""
    data = orjson.loads(FIXTURE.read_bytes())
    body: dict[str, Any] = data["scenarios"]["text"]["exchanges"][0]["request"]["body"]
    return body


def trimmed(body: dict[str, Any], *, system_chars: int, tools: int, message_chars: int) -> dict:
    """`body` with the main system block cut to `system_chars`, the first `tools` tools, and each
    user text block cut to `message_chars`; the billing block and every other field unchanged."""
    out = copy.deepcopy(body)
    system = out["system"]
    system[-1]["text"] = system[-1]["text"][:system_chars]
    out["tools"] = out.get("tools", [])[:tools]
    for message in out["messages"]:
        content = message["content"]
        if isinstance(content, str):
            message["content"] = content[:message_chars]
            continue
        for block in content:
            if block.get("type") == "text":
                block["text"] = block["text"][:message_chars]
    return out


def with_suffix(body: dict[str, Any], suffix: str) -> dict[str, Any]:
    """`body` with its billing line's `cc_version` suffix set to `suffix`."""
    out = copy.deepcopy(body)
    first = out["system"][0]
    assert first["text"].startswith("x-anthropic-billing-header:"), first["text"][:60]
    first["text"] = _VERSION.sub(f"cc_version=2.1.332.{suffix};", first["text"], count=1)
    return out


def session_requests(
    count: int = 2,
    *,
    system_chars: int = 4000,
    tools: int = 2,
    message_chars: int = 1500,
    max_tokens: int = 4,
) -> list[dict[str, Any]]:
    """`count` streamed Claude Code requests that differ only in the billing suffix."""
    base = trimmed(
        recorded_request(), system_chars=system_chars, tools=tools, message_chars=message_chars
    )
    base["max_tokens"] = max_tokens
    base["stream"] = True
    return [with_suffix(base, SUFFIXES[i % len(SUFFIXES)]) for i in range(count)]
