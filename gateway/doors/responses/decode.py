"""A Responses API request (`POST /v1/responses`, as Codex CLI sends it) as the internal chat
request.

What maps where (modelled on llama.cpp's own `/v1/responses`, server-chat.cpp; this door also
merges system and user turns, drops reasoning items and skips hosted tools, which llama.cpp does
not):
- `instructions` and leading `developer`/`system` messages become one leading system message;
  later ones stay `system` messages in place. Consecutive `user` messages are merged (Codex sends
  its environment context and the prompt as two), since strict chat templates insist on
  alternating roles.
- Content parts: `input_text`/`output_text` -> text, `input_image` -> `image_url`.
- `function_call` -> an assistant `tool_calls` entry (merged into the assistant turn before it);
  `function_call_output` -> a `tool` message (text; images it carries follow as a user message).
- `reasoning` items are dropped: past reasoning is not sent back upstream (GLM 4.7 and most chat
  templates strip it from history anyway, and Cerebras documents no reasoning field on input
  messages), so a prompt does not change with what the last answer thought.
- Function tools are flattened into chat tools. Tool types Codex sends by default and the
  upstreams cannot run (`web_search`, `namespace`, ...) are dropped with a log line (INFO the
  first time a set of types is seen, DEBUG after: Codex sends them on every turn); any other
  non-function tool type is refused with a 400 naming it.
- `previous_response_id`, `conversation` and `background: true` are refused: nothing is stored,
  the client sends the whole conversation (Codex does, with `store: false`).
- `reasoning.effort` is the client's thinking wish (`Decoded.thinking`, which the gateway's
  thinking control obeys before the route's mode, each upstream with its own switch):
  `none`/`minimal` -> `off`; any other effort -> `default` (think as the model does unasked);
  absent -> None (the strategy's route decides). No reasoning field enters the internal body.
- `max_output_tokens` -> `max_tokens`; `text.format` json_schema/json_object -> `response_format`.
- The conversation id is the `session-id` header, else `prompt_cache_key`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.config import ServerConfig, ThinkingMode
from gateway.doors.base import Decoded
from gateway.errors import BadRequest
from gateway.wire.validation import validate_chat_request

log = logging.getLogger("gateway.doors.responses")

MAX_MESSAGES = ServerConfig().max_messages  # for a door built without the config (unit use)
# Tool types Codex 0.171.0 sends on every turn that no upstream here can run: dropped, logged.
DROPPED_TOOL_TYPES = frozenset({"web_search", "web_search_preview", "namespace"})
_SYSTEM_ROLES = frozenset({"system", "developer"})
_ROLES = frozenset({"system", "developer", "user", "assistant"})
_NO_THINKING_EFFORTS = frozenset({"none", "minimal"})
_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})
# Sampling fields with the same name and meaning in both APIs.
# (`top_logprobs` is not: the events carry no logprobs.)
_PASSED = ("temperature", "top_p", "parallel_tool_calls", "user", "seed")
SESSION_HEADERS = ("session-id", "session_id")


@dataclass(slots=True)
class ResponsesContext:
    """What the Responses encoder needs: the request's own fields it echoes back."""

    model: str
    thinking: ThinkingMode | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    reasoning: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    store: bool = False
    prompt_cache_key: str | None = None
    dropped_tools: list[str] = field(default_factory=list)


def _bad(message: str, param: str | None = None, code: str = "invalid_value") -> BadRequest:
    return BadRequest(message, param=param, code=code)


def _short(value: Any) -> str:
    return repr(value)[:60]


def decode(
    body: dict[str, Any], headers: Mapping[str, str], *, max_messages: int = MAX_MESSAGES
) -> Decoded:
    """The internal chat request for a Responses body; BadRequest naming the offending field.

    `max_messages`: the most `input` items (`server.max_messages`); the chat request it becomes
    passes validate_chat_request."""
    if body.get("previous_response_id") is not None:
        raise _bad(
            "'previous_response_id' is not supported: this gateway stores no responses. Send the "
            "whole conversation in 'input' (Codex does so with store=false).",
            "previous_response_id",
            "unsupported_parameter",
        )
    if body.get("conversation") is not None:
        raise _bad(
            "'conversation' is not supported: this gateway stores no conversations; send the "
            "whole conversation in 'input'.",
            "conversation",
            "unsupported_parameter",
        )
    if body.get("background") is True:
        raise _bad(
            "'background' mode is not supported: it needs stored responses to poll, and this "
            "gateway stores none; stream the response instead",
            "background",
            "unsupported_parameter",
        )
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("'model' must be a string", "model", "invalid_type")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean", "stream", "invalid_type")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _bad("'instructions' must be a string", "instructions", "invalid_type")

    messages = _messages(body.get("input"), instructions, max_messages)
    chat: dict[str, Any] = {"messages": messages}
    if model:
        chat["model"] = model
    context = ResponsesContext(model=model or "", instructions=instructions)

    tools, dropped = _tools(body.get("tools"))
    context.dropped_tools = dropped
    context.tools = [t for t in _list(body.get("tools")) if t.get("type") == "function"]
    if dropped:
        _log_dropped(dropped)
    if tools:
        chat["tools"] = tools
        choice = body.get("tool_choice")
        if choice is not None:
            chat["tool_choice"] = _tool_choice(choice)
            context.tool_choice = choice
    for key in _PASSED:
        value = body.get(key)
        if value is not None:
            _check(key, value)
            chat[key] = value
    if "parallel_tool_calls" in chat:
        context.parallel_tool_calls = chat["parallel_tool_calls"]
        if not tools:
            del chat["parallel_tool_calls"]  # meaningless without tools; some upstreams refuse
    limit = body.get("max_output_tokens")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise _bad("'max_output_tokens' must be an integer of at least 1", "max_output_tokens")
        chat["max_tokens"] = limit
        context.max_output_tokens = limit
    context.thinking, context.reasoning = _reasoning(body.get("reasoning"))
    text = body.get("text")
    if text is not None:
        if not isinstance(text, dict):
            raise _bad("'text' must be an object", "text", "invalid_type")
        context.text = text
        response_format = _response_format(text.get("format"))
        if response_format is not None:
            chat["response_format"] = response_format
    _tolerated(body, context)
    context.temperature = chat.get("temperature")
    context.top_p = chat.get("top_p")
    # The seam's contract; the client's own list was held to max_messages above.
    validate_chat_request(chat, max_messages=None)
    return Decoded(
        body=chat,
        stream=bool(stream),
        include_usage=True,
        conversation_id=_conversation_id(body, headers),
        model=model or "",
        context=context,
        thinking=context.thinking,
    )


_KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    "temperature": ((int, float), "a number"),
    "top_p": ((int, float), "a number"),
    "parallel_tool_calls": ((bool,), "a boolean"),
    "user": ((str,), "a string"),
    "seed": ((int,), "an integer"),
}


def _check(key: str, value: Any) -> None:
    kinds, what = _KINDS[key]
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise _bad(f"'{key}' must be {what}", key, "invalid_type")


_LOGGED: set[frozenset[str]] = set()


def _log_dropped(dropped: list[str]) -> None:
    kinds = frozenset(dropped)
    level = logging.DEBUG if kinds in _LOGGED else logging.INFO
    if len(_LOGGED) < 64:  # a bound: tool types come from clients
        _LOGGED.add(kinds)
    log.log(level, "responses door: dropped tool types no upstream can run: %s", sorted(kinds))


def _tolerated(body: dict[str, Any], context: ResponsesContext) -> None:
    """Fields accepted without effect on the answer: `store` (nothing is stored either way),
    `include` (e.g. reasoning.encrypted_content: none is produced), `metadata`,
    `prompt_cache_key` (the conversation id), `service_tier`, `truncation`."""
    store = body.get("store")
    if store is not None and not isinstance(store, bool):
        raise _bad("'store' must be a boolean", "store", "invalid_type")
    context.store = bool(store)
    include = body.get("include")
    if include is not None and not isinstance(include, list):
        raise _bad("'include' must be an array", "include", "invalid_type")
    metadata = body.get("metadata")
    if isinstance(metadata, dict):  # echoed back: string pairs only, as the API defines it
        context.metadata = {
            k: v for k, v in metadata.items() if isinstance(k, str) and isinstance(v, str)
        }
    key = body.get("prompt_cache_key")
    if isinstance(key, str):
        context.prompt_cache_key = key


def _conversation_id(body: dict[str, Any], headers: Mapping[str, str]) -> str | None:
    for name in SESSION_HEADERS:
        value = headers.get(name)
        if value:
            return value[:200]
    key = body.get("prompt_cache_key")
    return key[:200] if isinstance(key, str) and key else None


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _reasoning(value: Any) -> tuple[ThinkingMode | None, dict[str, Any] | None]:
    """The thinking wish `reasoning.effort` states: `off` for none/minimal, `default` (the
    model thinks as it does unasked, overriding a route's `off`) for any other effort, None when
    no effort was given (the gateway's routing decides)."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise _bad("'reasoning' must be an object", "reasoning", "invalid_type")
    effort = value.get("effort")
    if effort is None:
        return None, value
    if not isinstance(effort, str) or effort not in _EFFORTS:
        raise _bad(
            f"'reasoning.effort' must be one of {', '.join(sorted(_EFFORTS))}, got "
            f"{_short(effort)}",
            "reasoning.effort",
        )
    return ("off" if effort in _NO_THINKING_EFFORTS else "default"), value


def _response_format(fmt: Any) -> dict[str, Any] | None:
    """`text.format` as chat's `response_format`; plain text needs none."""
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise _bad("'text.format' must be an object", "text.format", "invalid_type")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise _bad(
        f"'text.format.type' must be text, json_object or json_schema, got {_short(kind)}",
        "text.format.type",
    )


def _tools(value: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Chat tools for the function tools; the dropped types; BadRequest for refused types."""
    if value is None:
        return [], []
    if not isinstance(value, list):
        raise _bad("'tools' must be an array", "tools", "invalid_type")
    tools: list[dict[str, Any]] = []
    dropped: list[str] = []
    for i, tool in enumerate(value):
        param = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _bad(f"{param} must be an object", param, "invalid_type")
        kind = tool.get("type")
        if kind == "function":
            tools.append(_function_tool(tool, param))
        elif isinstance(kind, str) and kind in DROPPED_TOOL_TYPES:
            dropped.append(kind)
        else:
            raise _bad(
                f"{param}.type {_short(kind)} is not supported: only function tools reach the "
                f"upstreams (llama.cpp and Cerebras run no hosted tools); "
                f"{', '.join(sorted(DROPPED_TOOL_TYPES))} are skipped",
                f"{param}.type",
                "unsupported_tool_type",
            )
    return tools, dropped


def _function_tool(tool: dict[str, Any], param: str) -> dict[str, Any]:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"{param}.name is required", f"{param}.name", "missing_required_parameter")
    function: dict[str, Any] = {"name": name}
    description = tool.get("description")
    if isinstance(description, str):
        function["description"] = description
    parameters = tool.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, dict):
            raise _bad(f"{param}.parameters must be an object", f"{param}.parameters")
        function["parameters"] = parameters
    strict = tool.get("strict")
    if isinstance(strict, bool):
        function["strict"] = strict
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise _bad("'tool_choice.name' is required", "tool_choice.name")
        return {"type": "function", "function": {"name": name}}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        mode = choice.get("mode")
        return mode if mode in ("auto", "required") else "auto"
    raise _bad(
        f"'tool_choice' {_short(choice)} is not supported: use auto, none, required or a "
        "function tool",
        "tool_choice",
    )


class _Builder:
    """Chat messages built item by item."""

    def __init__(self, instructions: str | None) -> None:
        self.messages: list[dict[str, Any]] = []
        # The leading system text: instructions plus the developer/system messages before any
        # other turn (one system message; templates want it first and once).
        self.system: list[str] = [instructions] if instructions else []
        self.images: list[dict[str, Any]] = []  # from tool outputs, sent after the tool turn

    def add(self, index: int, item: dict[str, Any]) -> None:
        kind = item.get("type")
        if kind != "function_call_output":
            self._flush_images()
        if kind == "message" or (kind is None and "role" in item):
            self._message(index, item)
        elif kind == "function_call":
            self._call(index, item)
        elif kind == "function_call_output":
            self._output(index, item)
        elif kind == "reasoning":
            return  # dropped (module docstring)
        else:
            raise _bad(
                f"input[{index}].type {_short(kind)} is not supported: this gateway takes "
                "message, function_call, function_call_output and reasoning items",
                f"input[{index}].type",
                "unsupported_item_type",
            )

    def finish(self) -> list[dict[str, Any]]:
        self._flush_images()
        self._flush_system()
        if not self.messages:
            raise _bad("'input' has no message", "input", "empty_array")
        return self.messages

    def _flush_system(self) -> None:
        if self.system:
            text = "\n\n".join(self.system)
            self.system = []
            self.messages.insert(0, {"role": "system", "content": text})

    def _flush_images(self) -> None:
        if self.images:
            self._append({"role": "user", "content": self.images})
            self.images = []

    def _append(self, message: dict[str, Any]) -> None:
        last = self.messages[-1] if self.messages else None
        if last is not None and last["role"] == "user" == message["role"]:
            last["content"] = _join(last["content"], message["content"])
            return
        self.messages.append(message)

    def _message(self, index: int, item: dict[str, Any]) -> None:
        param = f"input[{index}]"
        role = item.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise _bad(
                f"{param}.role must be one of {', '.join(sorted(_ROLES))}, got {_short(role)}",
                f"{param}.role",
            )
        content = _content(item.get("content"), param, assistant=role == "assistant")
        if role in _SYSTEM_ROLES:
            text = content if isinstance(content, str) else _text_only(content, param)
            if not self.messages:
                self.system.append(text)
            else:
                self._append({"role": "system", "content": text})
            return
        if role == "assistant":
            last = self.messages[-1] if self.messages else None
            if last is not None and last["role"] == "assistant" and not last.get("tool_calls"):
                last["content"] = _join(last.get("content") or "", content)
                return
        self._append({"role": role, "content": content})

    def _call(self, index: int, item: dict[str, Any]) -> None:
        param = f"input[{index}]"
        call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
        for key, value in (("call_id", call_id), ("name", name), ("arguments", arguments)):
            if not isinstance(value, str):
                raise _bad(
                    f"{param}.{key} must be a string",
                    f"{param}.{key}",
                    "missing_required_parameter",
                )
        call = {
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        last = self.messages[-1] if self.messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
            if last.get("content") == "":
                last["content"] = None
            return
        self.messages.append({"role": "assistant", "content": None, "tool_calls": [call]})

    def _output(self, index: int, item: dict[str, Any]) -> None:
        param = f"input[{index}]"
        call_id = item.get("call_id")
        if not isinstance(call_id, str):
            raise _bad(
                f"{param}.call_id must be a string",
                f"{param}.call_id",
                "missing_required_parameter",
            )
        output = item.get("output")
        if isinstance(output, str):
            text = output
        elif isinstance(output, list):
            texts: list[str] = []
            for j, part in enumerate(output):
                converted = _part(part, f"{param}.output[{j}]", assistant=False)
                if converted["type"] == "text":
                    texts.append(converted["text"])
                else:
                    self.images.append(converted)
            text = "\n".join(texts)
        else:
            raise _bad(
                f"{param}.output must be a string or an array of parts",
                f"{param}.output",
                "invalid_type",
            )
        self.messages.append({"role": "tool", "tool_call_id": call_id, "content": text})


def _messages(value: Any, instructions: str | None, max_messages: int) -> list[dict[str, Any]]:
    if value is None:
        raise _bad("'input' is required", "input", "missing_required_parameter")
    builder = _Builder(instructions)
    if isinstance(value, str):
        builder.add(0, {"type": "message", "role": "user", "content": value})
        return builder.finish()
    if not isinstance(value, list):
        raise _bad("'input' must be a string or an array of items", "input", "invalid_type")
    if len(value) > max_messages:
        raise _bad(
            f"'input' has {len(value)} items; the limit is {max_messages}",
            "input",
            "too_many_messages",
        )
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise _bad(f"input[{index}] must be an object", f"input[{index}]", "invalid_type")
        builder.add(index, item)
    return builder.finish()


def _content(value: Any, param: str, *, assistant: bool) -> str | list[dict[str, Any]]:
    """A message's content: a string when it is all text, else chat content parts."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise _bad(
            f"{param}.content must be a string or an array of parts",
            f"{param}.content",
            "invalid_type",
        )
    parts = [_part(p, f"{param}.content[{j}]", assistant=assistant) for j, p in enumerate(value)]
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _part(part: Any, param: str, *, assistant: bool) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise _bad(f"{param} must be an object", param, "invalid_type")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text") or (assistant and kind == "refusal"):
        text = part.get("text") if kind != "refusal" else part.get("refusal")
        if not isinstance(text, str):
            raise _bad(f"{param}.text must be a string", f"{param}.text", "invalid_type")
        return {"type": "text", "text": text}
    if kind == "input_image" and not assistant:
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise _bad(
                f"{param}.image_url is required (file_id images need stored files, which this "
                "gateway has none of)",
                f"{param}.image_url",
                "missing_required_parameter",
            )
        image: dict[str, Any] = {"url": url}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    raise _bad(
        f"{param}.type {_short(kind)} is not supported here: use input_text, output_text or "
        "input_image",
        f"{param}.type",
        "unsupported_content_type",
    )


def _text_only(parts: list[dict[str, Any]], param: str) -> str:
    texts = [p["text"] for p in parts if p["type"] == "text"]
    if len(texts) != len(parts):
        raise _bad(f"{param}: a system or developer message takes text only", f"{param}.content")
    return "\n".join(texts)


def _join(
    first: str | list[dict[str, Any]], second: str | list[dict[str, Any]]
) -> str | list[dict[str, Any]]:
    if isinstance(first, str) and isinstance(second, str):
        return f"{first}\n\n{second}" if first and second else first or second
    return _as_parts(first) + _as_parts(second)


def _as_parts(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content
