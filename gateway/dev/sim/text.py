"""Answer text: tokenisation, prompt-size estimate, scripted lookup and generated words.

One token is one word with its leading whitespace (the first word of a text has none), so joining
a text's tokens gives the text back. A tool call costs one token for its head (the name) and one
per argument piece.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import orjson

from gateway.dev.sim.agents import agent_turn
from gateway.dev.sim.options import ScriptedAnswer, SimOptions
from gateway.dev.sim.thinking import thinks

PieceKind = Literal["reasoning", "content", "tool_head", "tool_args"]
FinishReason = Literal["stop", "length", "tool_calls"]

_TOKEN_RE = re.compile(r"\s*\S+")
_ARGUMENT_PIECES = 3
_WORDS = (
    "the quick model reads a prompt and writes an answer with care while tokens flow through "
    "gateway stream local cloud draft verify cache budget latency river stone garden window "
    "signal number function value result table rain light paper orange silver quiet bright "
    "simple small large early late north south coffee music letter bridge market forest code "
    "test review branch commit merge module python server client socket thread queue token"
).split()


class Piece(NamedTuple):
    """One streamed token. Tool pieces carry their call index; heads carry name and id."""

    kind: PieceKind
    text: str
    call_index: int = 0
    call_id: str = ""


@dataclass(slots=True)
class AnswerPlan:
    """What a request will receive: pieces already capped to the request's token limit."""

    pieces: list[Piece]
    finish_reason: FinishReason
    logprob: float
    prompt_tokens: int
    # The trailing assistant message this answer continues, and the content it adds (without
    # the echo of the prefill that the llamacpp profile sends first).
    prefill: str | None = None
    new_content: str = ""


def split_tokens(text: str) -> list[str]:
    """Split into word tokens; trailing whitespace sticks to the last token."""
    tokens = _TOKEN_RE.findall(text)
    rest = len(text) - sum(map(len, tokens))
    if rest:
        if tokens:
            tokens[-1] += text[-rest:]
        else:
            tokens.append(text)
    return tokens


def split_arguments(arguments: str, pieces: int = _ARGUMENT_PIECES) -> list[str]:
    """Cut a JSON argument string into at most `pieces` non-empty consecutive parts."""
    if not arguments:
        return []
    size = math.ceil(len(arguments) / pieces)
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


def content_text(content: Any) -> str:
    """Text of a message content: the string, or the concatenated text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type", "text") == "text"
        )
    return ""


def last_user_text(messages: list[Any]) -> str | None:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return None


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """ceil(characters / 4), at least 1, over message texts, their tool calls and the tool list."""
    chars = 0
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        chars += len(content_text(message.get("content")))
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                chars += len(str(function.get("name", ""))) + len(
                    str(function.get("arguments", ""))
                )
    tools = body.get("tools")
    if tools:
        chars += len(orjson.dumps(tools))
    return max(1, math.ceil(chars / 4))


def completion_limit(body: dict[str, Any]) -> int | None:
    """The request's max_completion_tokens, else max_tokens, else n_predict (llama.cpp)."""
    for key in ("max_completion_tokens", "max_tokens", "n_predict"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def find_script(options: SimOptions, messages: list[Any]) -> ScriptedAnswer | None:
    if not options.script:
        return None
    text = last_user_text(messages)
    if text is not None and text in options.script:
        return options.script[text]
    return options.script.get("*")


def generated_words(body: dict[str, Any], options: SimOptions, count: int) -> str:
    """Deterministic sentences from a hash of the messages, options.seed and the request seed."""
    digest = hashlib.blake2b(
        orjson.dumps(
            [body.get("messages"), options.seed, body.get("seed")],
            option=orjson.OPT_SORT_KEYS,
            default=str,
        ),
        digest_size=16,
    ).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    words: list[str] = []
    sentence_left = 0
    for _ in range(count):
        word = rng.choice(_WORDS)
        if sentence_left == 0:
            word = word.capitalize()
            sentence_left = rng.randint(5, 12)
        sentence_left -= 1
        if sentence_left == 0:
            word += "."
        words.append(word)
    return " ".join(words)


def forced_tool(body: dict[str, Any]) -> str | None:
    """The tool a request forces (`tool_choice` "required": the first tool; or a named
    function), else None ("auto", "none" or no tools: the sim answers text)."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        return name if isinstance(name, str) and name else None
    if choice != "required":
        return None
    first = tools[0].get("function") if isinstance(tools[0], dict) else None
    name = first.get("name") if isinstance(first, dict) else None
    return name if isinstance(name, str) and name else None


def trailing_prefill(messages: list[Any]) -> str | None:
    """The text of a last message with role assistant (an assistant prefill), else None."""
    last = messages[-1] if messages else None
    if isinstance(last, dict) and last.get("role") == "assistant":
        return content_text(last.get("content"))
    return None


def continue_prefill(
    pieces: list[Piece], prefill: str, body: dict[str, Any], options: SimOptions
) -> list[Piece]:
    """The pieces that continue `prefill`, as llama.cpp continues a trailing assistant message:
    the rest of the planned answer when the prefill is its start (token-aligned), else fresh
    words. No reasoning: a continuation answers on. The llamacpp profile repeats the prefill in
    its first content piece, as the real server does."""
    rest = [p for p in pieces if p.kind != "reasoning"]
    seen, cut = "", 0
    while seen != prefill and cut < len(rest) and rest[cut].kind == "content":
        if not prefill.startswith(seen + rest[cut].text):
            break
        seen += rest[cut].text
        cut += 1
    if seen == prefill:
        rest = rest[cut:]
    else:
        count = max(1, options.answer_tokens - len(split_tokens(prefill)))
        words = split_tokens(" " + generated_words(body, options, count))
        rest = [Piece("content", t) for t in words] + [p for p in rest if p.kind != "content"]
    if options.profile == "llamacpp" and rest and rest[0].kind == "content":
        rest[0] = Piece("content", prefill + rest[0].text)
    return rest


def plan_answer(body: dict[str, Any], options: SimOptions) -> AnswerPlan:
    """Pieces for this request: reasoning, then content, then tool calls, capped by its limit.

    A request ending with an assistant message gets that message continued (continue_prefill)."""
    messages = body.get("messages") or []
    prefill = trailing_prefill(messages)
    full_body = body
    if prefill:
        body = {**body, "messages": messages[:-1]}
        messages = messages[:-1]
    script = agent_turn(body, options.agent_loop) if options.agent_loop is not None else None
    if script is None:
        script = find_script(options, messages)
    pieces: list[Piece] = []
    logprob = options.logprob
    forced = forced_tool(body) if options.tool_calls_supported else None
    if script is None and forced is not None:
        pieces.append(Piece("tool_head", forced, 0, f"call_{random.getrandbits(96):024x}"))
        pieces.extend(Piece("tool_args", a, 0) for a in split_arguments("{}"))
    elif script is None:
        pieces.extend(
            Piece("content", t)
            for t in split_tokens(generated_words(body, options, options.answer_tokens))
        )
    else:
        if script.logprob is not None:
            logprob = script.logprob
        pieces.extend(Piece("reasoning", t) for t in split_tokens(script.reasoning))
        pieces.extend(Piece("content", t) for t in split_tokens(script.content))
        calls = script.tool_calls if options.tool_calls_supported else []
        for index, call in enumerate(calls):
            call_id = call.id or f"call_{random.getrandbits(96):024x}"
            pieces.append(Piece("tool_head", call.name, index, call_id))
            pieces.extend(Piece("tool_args", a, index) for a in split_arguments(call.arguments))
    if not thinks(body, options):
        pieces = [p for p in pieces if p.kind != "reasoning"]
    elif script is None and options.reasoning_tokens > 0:
        thought = generated_words(body, options, options.reasoning_tokens)
        pieces[:0] = [Piece("reasoning", t) for t in split_tokens(thought)]
    if prefill:
        pieces = continue_prefill(pieces, prefill, full_body, options)
    finish: FinishReason = "stop"
    limit = completion_limit(body)
    if limit is not None and len(pieces) > limit:
        del pieces[limit:]
        finish = "length"
    elif any(p.kind == "tool_head" for p in pieces):
        finish = "tool_calls"
    new_content = "".join(p.text for p in pieces if p.kind == "content")
    if prefill and options.profile == "llamacpp" and new_content.startswith(prefill):
        new_content = new_content[len(prefill) :]
    return AnswerPlan(
        pieces, finish, logprob, estimate_prompt_tokens(full_body), prefill or None, new_content
    )
