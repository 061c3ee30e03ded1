"""Check a chat-completions request body before anything is sent upstream.

Only what the gateway itself relies on is checked; every other field passes through to the upstream
untouched (tools, tool_choice, response_format, stop, seed, top_p, logprobs ...).
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import BadRequest

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_JSON_TYPES = ("application/json", "text/json")
_LENIENT_TYPES = ("", "application/octet-stream", "application/x-www-form-urlencoded")
# orjson reads JSON 1024 levels deep but writes only 254. A door may put a value of the body a
# few levels deeper than the client did (an SSE event around an echoed response, a tool schema
# under `function`), so a body must serialise with this many levels to spare.
_NESTING_SPARE = 16
MAX_NESTING = 254 - _NESTING_SPARE


def _bad(message: str, param: str | None = None, code: str = "invalid_value") -> BadRequest:
    return BadRequest(message, param=param, code=code)


def check_content_type(content_type: str) -> None:
    """A JSON body is expected. A missing content type, and curl's default for `-d`
    (`application/x-www-form-urlencoded`), are tolerated: the body must still parse as JSON."""
    main = content_type.split(";", 1)[0].strip().lower()
    if main in _LENIENT_TYPES or main in _JSON_TYPES or main.endswith("+json"):
        return
    raise BadRequest(
        f"Content-Type must be application/json, got {main!r}",
        status=415,
        code="unsupported_media_type",
    )


def parse_body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise _bad("request body is empty; expected a JSON object", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object", code="invalid_json")
    check_forwardable(body)
    return body


def check_forwardable(body: dict[str, Any]) -> None:
    """Refuse a body nested too deeply to be sent on or echoed back, which would otherwise fail
    mid-request; every door's body passes here (parse_body), once."""
    wrapped: Any = body
    for _ in range(_NESTING_SPARE):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except TypeError:
        raise _bad(
            f"the request nests JSON too deeply to forward (more than {MAX_NESTING} levels)",
            code="invalid_json",
        ) from None


def _check_type(body: dict[str, Any], key: str, kinds: tuple[type, ...], what: str) -> None:
    value = body.get(key)
    if value is None:
        return
    if isinstance(value, bool) and bool not in kinds:
        raise _bad(f"'{key}' must be {what}", key, "invalid_type")
    if not isinstance(value, kinds):
        raise _bad(f"'{key}' must be {what}", key, "invalid_type")


def _check_message(index: int, message: Any) -> None:
    param = f"messages[{index}]"
    if not isinstance(message, dict):
        raise _bad(f"{param} must be an object", param, "invalid_type")
    role = message.get("role")
    if not isinstance(role, str):
        raise _bad(f"{param}.role is required", f"{param}.role", "missing_required_parameter")
    if role not in ROLES:
        raise _bad(
            f"{param}.role {role[:40]!r} is not one of {', '.join(sorted(ROLES))}",
            f"{param}.role",
        )
    content = message.get("content")
    if content is None:
        if role == "assistant":
            return  # an assistant turn may carry only tool calls
        raise _bad(f"{param}.content is required", f"{param}.content", "missing_required_parameter")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _bad(
            f"{param}.content must be a string or a list of parts",
            f"{param}.content",
            "invalid_type",
        )
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _bad(
                f"{param}.content[{j}] must be an object with a 'type'",
                f"{param}.content[{j}]",
                "invalid_type",
            )


def validate_chat_request(body: dict[str, Any], *, max_messages: int | None) -> None:
    """Raise BadRequest naming the offending parameter, or return when the body is usable.

    `max_messages`: the limit on `messages`; None when a door already held the client's own
    list to it (its translation may hold more or fewer chat messages)."""
    messages = body.get("messages")
    if messages is None:
        raise _bad("'messages' is required", "messages", "missing_required_parameter")
    if not isinstance(messages, list):
        raise _bad("'messages' must be an array", "messages", "invalid_type")
    if not messages:
        raise _bad("'messages' must contain at least one message", "messages", "empty_array")
    if max_messages is not None and len(messages) > max_messages:
        raise _bad(
            f"'messages' has {len(messages)} entries; the limit is {max_messages}",
            "messages",
            "too_many_messages",
        )
    for i, message in enumerate(messages):
        _check_message(i, message)
    _check_type(body, "model", (str,), "a string")
    _check_type(body, "stream", (bool,), "a boolean")
    _check_type(body, "stream_options", (dict,), "an object")
    _check_type(body, "tools", (list,), "an array")
    _check_type(body, "temperature", (int, float), "a number")
    _check_type(body, "top_p", (int, float), "a number")
    _check_type(body, "n", (int,), "an integer")
    _check_type(body, "seed", (int,), "an integer")
    _check_type(body, "logprobs", (bool,), "a boolean")
    _check_type(body, "top_logprobs", (int,), "an integer")
    _check_type(body, "parallel_tool_calls", (bool,), "a boolean")
    _check_type(body, "presence_penalty", (int, float), "a number")
    _check_type(body, "frequency_penalty", (int, float), "a number")
    _check_type(body, "stop", (str, list), "a string or an array of strings")
    _check_type(body, "tool_choice", (str, dict), "a string or an object")
    _check_type(body, "response_format", (dict,), "an object")
    _check_type(body, "user", (str,), "a string")
    tools = body.get("tools")
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise _bad(f"tools[{i}] must be an object", f"tools[{i}]", "invalid_type")
    n = body.get("n")
    if n is not None and not 1 <= n <= 16:
        raise _bad("'n' must be between 1 and 16", "n")
    for key in ("max_tokens", "max_completion_tokens"):
        _check_type(body, key, (int,), "an integer")
        value = body.get(key)
        if value is not None and value < 1:
            raise _bad(f"'{key}' must be at least 1", key)
    options = body.get("stream_options")
    if isinstance(options, dict):
        _check_type(options, "include_usage", (bool,), "a boolean")
