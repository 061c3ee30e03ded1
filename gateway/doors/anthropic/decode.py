"""An Anthropic Messages request decoded into the internal chat request (an OpenAI chat body).

What is mapped, and how (wire-contract, "Anthropic Messages: the cases a translator gets
wrong"):
- `system`: a string or a list of text blocks (joined by a blank line) -> the first `system`
  message. Claude Code's first block is a billing line whose suffix changes with every prompt
  (`x-anthropic-billing-header: cc_version=...;`); with `strip_billing_header` it is removed so
  the upstreams' prefix caches can reuse the system prompt. A `role: "system"` message inside
  `messages` becomes a user turn's text at its place (chat templates refuse a second system
  message), merged with the user turn it borders.
- user content: text -> text parts; image (base64 or url) -> `image_url` parts; a text
  document -> text; `tool_result` blocks -> `role: "tool"` messages placed first, right after
  the assistant's tool calls, in their order, the rest of that turn as a user message after
  them. A failed result (`is_error`) keeps its text with an "Error: " prefix (chat has no such
  flag); a result's images go to the user message after the tool messages.
- assistant content: text -> content; `tool_use` -> `tool_calls` (arguments = JSON of `input`,
  ids and names byte-exact); `thinking` -> `reasoning_content` (each upstream module maps it to
  its own field); `redacted_thinking` is dropped.
- `tools`: custom tools -> function tools; a server tool (any `type` but `custom`:
  `web_search_*`, `bash_*`, `text_editor_*`, `code_execution_*` ...) is refused with 400 naming
  its type, as no upstream here can run it. `tool_choice`: auto -> auto, any -> required,
  tool -> that function, none -> none; `disable_parallel_tool_use` -> `parallel_tool_calls`.
- `thinking`: `enabled`/`adaptive` leave thinking to the gateway's routing control; `disabled`
  asks every upstream not to think (`Decoded.thinking = "off"`).
- `stop_sequences` are matched by the door itself (so that `stop_reason: stop_sequence` can
  name the sequence); they are not sent upstream.
- `max_tokens` -> `max_tokens`; `temperature`, `top_p` pass; `top_k` is dropped (Cerebras has
  no such parameter); `metadata.user_id` and `X-Claude-Code-Session-Id` give the conversation id.
- `cache_control` and fields that steer Anthropic's own service (`context_management`,
  `service_tier`, `container`, `mcp_servers` ...) are dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.config import ThinkingMode
from gateway.errors import BadRequest
from gateway.wire.validation import validate_chat_request

log = logging.getLogger("gateway.doors.anthropic")

SESSION_HEADER = "x-claude-code-session-id"
CONVERSATION_HEADER = "x-conversation-id"  # gateway.router.conversation.HEADER
BILLING_PREFIX = "x-anthropic-billing-header:"
# `key=value;` pairs after the billing prefix (`cc_version=2.1.332.573; cc_entrypoint=cli;`).
_BILLING_LINE = re.compile(r"x-anthropic-billing-header:(?:\s*[A-Za-z0-9_.-]+=[^;\n]*;)*[ \t]*\n?")
# The legacy `metadata.user_id` form: `user_<hash>_account_<uuid>_session_<uuid>`.
_LEGACY_SESSION = re.compile(r"_session_([0-9A-Za-z-]{8,128})$")
_ID = re.compile(r"[\x21-\x7e]{1,200}")
THINKING_TYPES = ("enabled", "adaptive", "disabled")
TOOL_CHOICES = ("auto", "any", "tool", "none")
CUSTOM_TOOL_TYPES = (None, "custom")
_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def _bad(message: str) -> BadRequest:
    return BadRequest(message, code="invalid_request_error")


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    max_messages: int = 10_000
    strip_billing_header: bool = True


@dataclass(slots=True)
class MessagesContext:
    """What the encoder needs: the asked model name, the stop sequences to match, whether the
    client shows thinking (`omitted`: blocks without their text), and whether thinking is off."""

    model: str
    stop_sequences: tuple[str, ...] = ()
    thinking_shown: bool = True
    thinking_off: bool = False
    stripped_billing: bool = False
    dropped: list[str] = field(default_factory=list)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively (a CIMultiDict or a plain dict)."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def conversation_id(body: Mapping[str, Any], headers: Mapping[str, str]) -> str | None:
    """Claude Code's session: `X-Claude-Code-Session-Id`, else `metadata.user_id`'s
    `session_id` (a JSON string, or the legacy `..._session_<uuid>` form). None when the client
    names its conversation with `x-conversation-id` (learning reads that itself) or not at all."""
    if header(headers, CONVERSATION_HEADER):
        return None
    given = (header(headers, SESSION_HEADER) or "").strip()
    if given and _ID.fullmatch(given):
        return "claude-code:" + given
    metadata = body.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str) or not user_id:
        return None
    session: Any = None
    if user_id.lstrip().startswith("{"):
        try:
            parsed = orjson.loads(user_id)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            session = parsed.get("session_id")
    else:
        found = _LEGACY_SESSION.search(user_id)
        session = found.group(1) if found else None
    if isinstance(session, str) and _ID.fullmatch(session):
        return "claude-code:" + session
    return None


def strip_billing(text: str) -> str:
    """`text` without Claude Code's billing line at its start (unchanged otherwise)."""
    if not text.startswith(BILLING_PREFIX):
        return text
    found = _BILLING_LINE.match(text)
    return text[found.end() :] if found else text


def _system_text(system: Any, options: DecodeOptions, ctx: MessagesContext) -> str:
    if isinstance(system, str):
        texts = [system]
    elif isinstance(system, list):
        texts = []
        for i, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise _bad(f"system[{i}]: expected a text block")
            text = block.get("text")
            if not isinstance(text, str):
                raise _bad(f"system[{i}].text: expected a string")
            texts.append(text)
    else:
        raise _bad("system: expected a string or a list of text blocks")
    if options.strip_billing_header and texts and texts[0].startswith(BILLING_PREFIX):
        texts[0] = strip_billing(texts[0])
        ctx.stripped_billing = True
        if not texts[0].strip():
            texts.pop(0)
    return "\n\n".join(t for t in texts if t)


def _image_part(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _bad(f"{where}.source: expected an object")
    kind = source.get("type")
    if kind == "base64":
        media = source.get("media_type") or "image/png"
        data = source.get("data")
        if not isinstance(data, str) or not isinstance(media, str):
            raise _bad(f"{where}.source: base64 images need string media_type and data")
        url = f"data:{media};base64,{data}"
    elif kind == "url":
        given = source.get("url")
        if not isinstance(given, str) or not given:
            raise _bad(f"{where}.source.url: expected a string")
        url = given
    else:
        raise _bad(f"{where}.source.type: {kind!r} is not supported (base64 or url)")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_text(block: Mapping[str, Any], where: str) -> str:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "text":
        data = source.get("data")
        if isinstance(data, str):
            return data
    if isinstance(source, dict) and source.get("type") == "content":
        content = source.get("content")
        if isinstance(content, str):
            return content
    kind = source.get("type") if isinstance(source, dict) else None
    raise _bad(f"{where}: document source {kind!r} is not supported (text documents only)")


def _text_of(block: Mapping[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise _bad(f"{where}.text: expected a string")
    return text


def _blocks(content: list[Any], where: str) -> Iterator[tuple[str, Any, Any]]:
    """(where, type, block) of each block of a `content` list (type None: not an object)."""
    for j, block in enumerate(content):
        yield f"{where}.content[{j}]", block.get("type") if isinstance(block, dict) else None, block


def _tool_result(block: Mapping[str, Any], where: str) -> tuple[dict[str, Any], list[Any]]:
    """The `role: tool` message of a tool_result block, and the image parts it carried."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{where}.tool_use_id: expected a string")
    content = block.get("content")
    texts: list[str] = []
    images: list[Any] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for here, kind, part in _blocks(content, where):
            if kind == "text":
                texts.append(_text_of(part, here))
            elif kind == "image":
                images.append(_image_part(part, here))
            elif kind == "document":
                texts.append(_document_text(part, here))
            else:
                raise _bad(f"{here}: block type {kind!r} is not supported in a tool_result")
    elif content is not None:
        raise _bad(f"{where}.content: expected a string or a list of blocks")
    text = "\n".join(texts)
    if block.get("is_error") is True:
        text = "Error: " + text if text else "Error"
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


def _user_turn(content: Any, where: str) -> list[dict[str, Any]]:
    """The chat messages of one user turn: tool results first, then the rest as one message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise _bad(f"{where}.content: expected a string or a list of blocks")
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for here, kind, block in _blocks(content, where):
        if kind == "text":
            parts.append({"type": "text", "text": _text_of(block, here)})
        elif kind == "image":
            parts.append(_image_part(block, here))
        elif kind == "document":
            parts.append({"type": "text", "text": _document_text(block, here)})
        elif kind == "tool_result":
            message, images = _tool_result(block, here)
            tools.append(message)
            parts.extend(images)
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise _bad(f"{here}: block type {kind!r} is not supported in a user turn")
    messages = tools
    if parts:
        messages.append({"role": "user", "content": _parts_content(parts)})
    return messages


def _parts_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """One text part as a plain string (what every chat template takes); else the parts."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        text: str = parts[0]["text"]
        return text
    return parts


def _assistant_turn(content: Any, where: str, ctx: MessagesContext) -> dict[str, Any] | None:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise _bad(f"{where}.content: expected a string or a list of blocks")
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for here, kind, block in _blocks(content, where):
        if kind == "text":
            texts.append(_text_of(block, here))
        elif kind == "thinking":
            thought = block.get("thinking")
            if isinstance(thought, str) and thought:
                reasoning.append(thought)
        elif kind == "redacted_thinking":
            continue
        elif kind == "tool_use":
            calls.append(_tool_call(block, here))
        elif kind in ("server_tool_use", "web_search_tool_result"):
            ctx.dropped.append(f"{here} ({kind})")
        else:
            raise _bad(f"{here}: block type {kind!r} is not supported in an assistant turn")
    if not texts and not calls and not reasoning:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if not texts and not calls:
        message["content"] = ""
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_call(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    call_id = block.get("id")
    name = block.get("name")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{where}.id: expected a string")
    if not isinstance(name, str) or not name:
        raise _bad(f"{where}.name: expected a string")
    arguments = block.get("input", {})
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": orjson.dumps(arguments).decode()},
    }


def _merge_users(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adjacent user messages joined into one (templates want alternating turns)."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        last = merged[-1] if merged else None
        if last is not None and last["role"] == "user" and message["role"] == "user":
            merged[-1] = {"role": "user", "content": _join(last["content"], message["content"])}
        else:
            merged.append(message)
    return merged


def _as_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content)


def _join(first: Any, second: Any) -> str | list[dict[str, Any]]:
    if isinstance(first, str) and isinstance(second, str):
        return first + "\n\n" + second
    return _as_parts(first) + _as_parts(second)


def _messages(
    raw: Any, system: str, ctx: MessagesContext, max_messages: int
) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise _bad("messages: expected a list")
    if not raw:
        raise _bad("messages: at least one message is required")
    if len(raw) > max_messages:
        raise _bad(f"messages: {len(raw)} entries; the limit is {max_messages}")
    out: list[dict[str, Any]] = []
    leading_system = [system] if system else []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _bad(f"{where}: expected an object")
        role = message.get("role")
        content = message.get("content")
        if role == "user":
            out.extend(_user_turn(content, where))
        elif role == "assistant":
            turn = _assistant_turn(content, where, ctx)
            if turn is not None:
                out.append(turn)
        elif role == "system":
            text = _system_text(content, DecodeOptions(strip_billing_header=False), ctx)
            if not out:
                leading_system.append(text)
            elif text:
                out.append({"role": "user", "content": text})
        else:
            raise _bad(f"{where}.role: expected user or assistant, got {str(role)[:40]!r}")
    head = [{"role": "system", "content": "\n\n".join(leading_system)}] if leading_system else []
    return head + _merge_users(out)


def _tools(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise _bad("tools: expected a list")
    tools = []
    for i, tool in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _bad(f"{where}: expected an object")
        kind = tool.get("type")
        if kind not in CUSTOM_TOOL_TYPES:
            raise _bad(
                f"{where}: tool type {str(kind)[:60]!r} is a server tool, which this gateway "
                "cannot run (no upstream here executes it); send custom tools only "
                "(name, description, input_schema)"
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"{where}.name: expected a string")
        schema = tool.get("input_schema", _EMPTY_SCHEMA)
        if not isinstance(schema, dict):
            raise _bad(f"{where}.input_schema: expected an object")
        function: dict[str, Any] = {"name": name, "parameters": schema}
        description = tool.get("description")
        if isinstance(description, str):
            function["description"] = description
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(raw: Any, body: dict[str, Any]) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict) or raw.get("type") not in TOOL_CHOICES:
        raise _bad("tool_choice.type: expected one of " + ", ".join(TOOL_CHOICES))
    kind = raw["type"]
    if kind == "tool":
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise _bad("tool_choice.name: expected the name of a tool")
        body["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        body["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if raw.get("disable_parallel_tool_use") is True and kind != "none":
        body["parallel_tool_calls"] = False


def _thinking(raw: Any, ctx: MessagesContext) -> ThinkingMode | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("type") not in THINKING_TYPES:
        raise _bad("thinking.type: expected one of " + ", ".join(THINKING_TYPES))
    ctx.thinking_shown = raw.get("display") != "omitted"
    if raw["type"] == "disabled":
        ctx.thinking_off = True
        return "off"
    return None


def _stop_sequences(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        raise _bad("stop_sequences: expected a list of strings")
    return tuple(s for s in raw if s)


def _number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{key}: expected a number")
    return value


def decode_request(
    body: dict[str, Any], options: DecodeOptions, *, count_only: bool = False
) -> tuple[dict[str, Any], MessagesContext, ThinkingMode | None]:
    """(internal chat body, encoder context, thinking override) of a Messages request; raise
    BadRequest naming the field. `count_only`: a count_tokens body (no max_tokens, no stream)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model: a model name is required")
    ctx = MessagesContext(model=model)
    system_raw = body.get("system")
    system = "" if system_raw is None else _system_text(system_raw, options, ctx)
    chat: dict[str, Any] = {
        "model": model,
        "messages": _messages(body.get("messages"), system, ctx, options.max_messages),
    }
    if not count_only:
        limit = body.get("max_tokens")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise _bad("max_tokens: a positive integer is required")
        chat["max_tokens"] = limit
        stream = body.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise _bad("stream: expected a boolean")
        chat["stream"] = bool(stream)
    for key in ("temperature", "top_p"):
        value = _number(body, key)
        if value is not None:
            chat[key] = value
    if body.get("tools") is not None:
        tools = _tools(body["tools"])
        if tools:
            chat["tools"] = tools
    _tool_choice(body.get("tool_choice"), chat)
    if "tools" not in chat:
        if chat.get("tool_choice") not in (None, "none"):
            raise _bad("tool_choice: requires tools")
        chat.pop("tool_choice", None)
        chat.pop("parallel_tool_calls", None)
    thinking = _thinking(body.get("thinking"), ctx)
    ctx.stop_sequences = _stop_sequences(body.get("stop_sequences"))
    if ctx.dropped:
        log.info("anthropic door: dropped server-tool history blocks %s", ", ".join(ctx.dropped))
    # The client's own list was held to max_messages (_messages); tool results expand into
    # several chat messages, which are not counted again.
    validate_chat_request(chat, max_messages=None)
    return chat, ctx, thinking
