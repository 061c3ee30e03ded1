"""Agent-loop signals: did the previous assistant turn fail, judging by the request that follows?

An agent answers a tool call with its result in the next request, so a bad turn shows there:

- `unknown_tool`: the result says the tool does not exist;
- `invalid_arguments`: the arguments did not fit the tool (missing, wrong type, schema);
- `unparsable_arguments`: the arguments were not valid JSON;
- `rejected_call`: the client refused the call before running it for another stated reason;
- `repeated_call`: the turn repeated the previous turn's tool calls with the same arguments;
- `client_retry`: the client's own mistake/retry message ("You did not use a tool ...").

Only errors the answer caused count. A command that ran and failed, or a file that does not
exist, is the world's answer to a valid call, not a bad turn.

Formats. The Cline CLI 3.0.65 (recorded in tests/fixtures/cline_3.0.65.json) answers with
OpenAI `role: tool` messages; an error it raised before running the tool is a JSON object with a
top-level `error`, e.g. `{"error":"Tool call say_hello was rejected before execution:
AI_NoSuchToolError: Model tried to call unavailable tool 'say_hello'. ..."}`,
`{"error":"✖ Invalid input"}`, `{"error":"Tool call run_commands emitted invalid JSON arguments:
..."}`, while results and run-time failures are a list of `{query, result, success}`. Older Cline
releases (the VS Code extension's format) put results in user messages as `[tool] Result:` blocks
and report mistakes as `[ERROR] You did not use a tool in your previous response!` or `Missing
value for required parameter '...'`. Other OpenAI-style agents send `role: tool` messages with
error text; the wording rules below are shared by all of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.router.classifier import _TOOL_RESULT, message_text

_UNKNOWN_TOOL = re.compile(
    r"NoSuchTool|unavailable tool|unknown (?:tool|function)|no such (?:tool|function)|"
    r"(?:tool|function) (?:named )?['\"`]?[\w.-]{1,80}['\"`]? (?:does not|doesn't) exist|"
    r"(?:tool|function) (?:was )?not found|not a valid tool|invalid tool name|"
    r"tool_use_error.{0,40}unknown",
    re.I,
)
_UNPARSABLE = re.compile(
    r"invalid JSON|(?:failed|unable|could not|cannot) (?:to )?parse|JSONDecodeError|"
    r"malformed (?:JSON|arguments|tool call)|not valid JSON|Unexpected token|"
    r"Unterminated string|Expecting (?:value|property name)",
    re.I,
)
_INVALID_ARGS = re.compile(
    r"invalid (?:input|arguments?|parameters?|params)|"
    r"missing (?:value for )?(?:required )?(?:parameter|argument|field|property|key)|"
    r"required (?:parameter|argument|property|field)s? .{0,60}missing|"
    r"InvalidToolArguments|validation (?:error|failed)|does not match (?:the )?schema|"
    r"unexpected (?:keyword )?argument|is a required property|Field required",
    re.I,
)
_REJECTED = re.compile(r"rejected before execution|refused to run the tool call", re.I)
CLIENT_RETRY_PHRASES = (
    r"\[ERROR\] You did not use a tool|Please retry with a tool use|"
    r"You seem to be having trouble proceeding|consecutive mistakes|"
    r"your previous response (?:was|did) not|Invalid response format|"
    r"tool call (?:was )?(?:malformed|invalid)"
)
# Searched in every user message after the last answer, which in an agent loop holds the tool
# results (whole files): the lookahead of the phrases' first letters lets the search skip every
# other position at once, about three times faster than trying each phrase there.
_CLIENT_RETRY = re.compile(r"(?=[\[pycit])(?:" + CLIENT_RETRY_PHRASES + ")", re.I)
# Plain-text results are judged only when they open as an error: a file's content that merely
# mentions "invalid input" must not count.
_ERROR_OPENING = re.compile(
    r"^\W{0,3}(?:error|exception|failed|failure|invalid|unknown|no such|could not|cannot|"
    r"unable|missing value|the tool execution failed|tool (?:call|error))",
    re.I,
)

KINDS: dict[str, str] = {
    "unknown_tool": "called an unknown tool",
    "invalid_arguments": "called a tool with invalid arguments",
    "unparsable_arguments": "sent tool-call arguments that are not valid JSON",
    "rejected_call": "made a tool call the client rejected",
    "repeated_call": "repeated its previous tool call with the same arguments",
    "client_retry": "was answered with the client's mistake/retry message",
}


@dataclass(frozen=True, slots=True)
class Signal:
    """A failure of the previous assistant turn. `kind` is a key of KINDS; `evidence` quotes
    (shortened) the text that shows it."""

    kind: str
    evidence: str

    @property
    def description(self) -> str:
        return KINDS[self.kind]


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_text(content: str) -> str | None:
    """The text of an error a tool message reports as a whole (JSON `{"error": ...}`, or a
    plain string saying Error), else None (a result, or a per-item run-time failure)."""
    stripped = content.strip()
    if stripped.startswith("{"):
        try:
            data = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            return stripped if _ERROR_OPENING.match(stripped) else None
        if isinstance(data, Mapping):
            error = data.get("error")
            if isinstance(error, str):
                return error
            if isinstance(error, Mapping):
                return str(error.get("message") or error)
            if data.get("is_error") is True or data.get("success") is False:
                return stripped
        return None
    if stripped.startswith("["):
        return None  # Cline's per-item results; an item's failure ran and is not the call's
    return stripped if _ERROR_OPENING.match(stripped) else None


def classify_error(text: str) -> str | None:
    """The signal kind an error text shows, or None when it is not the call's own fault."""
    for kind, pattern in (
        ("unknown_tool", _UNKNOWN_TOOL),
        ("unparsable_arguments", _UNPARSABLE),
        ("invalid_arguments", _INVALID_ARGS),
        ("rejected_call", _REJECTED),
    ):
        if pattern.search(text):
            return kind
    return None


def _canonical_calls(message: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    calls = []
    for call in _tool_calls(message):
        fn = call.get("function")
        if not isinstance(fn, Mapping):
            continue
        arguments = fn.get("arguments")
        try:
            parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
            canonical = orjson.dumps(parsed, option=orjson.OPT_SORT_KEYS).decode()
        except (orjson.JSONDecodeError, TypeError):
            canonical = str(arguments)
        calls.append((str(fn.get("name")), canonical))
    return tuple(calls)


def _tool_calls(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The message's tool calls that are objects; none when `tool_calls` is not a list (a
    client's history is not validated this deep, and a bad one must not fail the request)."""
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        return []
    return [call for call in calls if isinstance(call, Mapping)]


def detect(messages: Sequence[Any]) -> Signal | None:
    """The failure signal of the last assistant turn in `messages`, or None.

    Reads the tool results and user messages after the last assistant message (what answers
    it), then compares its tool calls with the assistant turn before it."""
    history = [m for m in messages if isinstance(m, Mapping)]
    last = next(
        (i for i in range(len(history) - 1, -1, -1) if history[i].get("role") == "assistant"),
        None,
    )
    if last is None:
        return None
    answer = history[last]
    call_ids = {c["id"] for c in _tool_calls(answer) if isinstance(c.get("id"), str)}
    for message in history[last + 1 :]:
        role = message.get("role")
        text = message_text(message.get("content"))
        if role in ("tool", "function"):
            answered = message.get("tool_call_id")
            if call_ids and (not isinstance(answered, str) or answered not in call_ids):
                continue  # (an id that is not a string, e.g. a list, answers no call)
            error = _error_text(text)
            kind = classify_error(error) if error else None
            if kind is not None and error is not None:
                return Signal(kind, _short(error))
        elif role == "user":
            retry = _CLIENT_RETRY.search(text)
            if retry:
                return Signal("client_retry", _short(text[retry.start() :]))
            for block in _TOOL_RESULT.split(text)[1:]:
                kind = classify_error(block) if _ERROR_OPENING.match(block.strip()) else None
                if kind is not None:
                    return Signal(kind, _short(block))
    calls = _canonical_calls(answer)
    if calls:
        before = next((h for h in reversed(history[:last]) if h.get("role") == "assistant"), None)
        if before is not None and _canonical_calls(before) == calls:
            name = ", ".join(name for name, _ in calls)
            return Signal("repeated_call", f"{name} with the same arguments as the turn before")
    return None
