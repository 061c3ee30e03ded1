"""Distinct agent conversations for the memory benchmarks (scripts/soak.py, scripts/mem_growth.py).

Each conversation plays an agent such as Cline in its own workspace: a new system prompt of about
`prompt_bytes` naming that workspace, a first task, then `turns - 1` follow-ups that resend the
whole history with the previous answer and a tool result, as an agent does.
"""

from __future__ import annotations

import random
from typing import Any

import aiohttp
import orjson

_RULES = (
    "You are a coding agent working in the user's workspace. Use the tools to read and edit "
    "files, run commands and search the code. Think about the task before acting. Only change "
    "what the task needs. Prefer small, reviewable edits. Explain what you changed when done. "
)
_TASKS = (
    "fix the failing test in tests/test_{n}.py",
    "add a --verbose flag to the command line of tool{n}",
    "explain what module{n}.py does",
    "rename helper_{n} to a clearer name everywhere",
)


def system_prompt(conversation: int, prompt_bytes: int) -> str:
    """A system prompt of about `prompt_bytes` naming the conversation's own workspace."""
    head = f"Workspace: /home/dev/projects/repo-{conversation:07d}\nCurrent time: {conversation}\n"
    body = _RULES * (max(0, prompt_bytes - len(head)) // len(_RULES) + 1)
    return head + body[: max(0, prompt_bytes - len(head))]


def first_messages(conversation: int, prompt_bytes: int) -> list[dict[str, Any]]:
    task = _TASKS[conversation % len(_TASKS)].format(n=conversation)
    return [
        {"role": "system", "content": system_prompt(conversation, prompt_bytes)},
        {"role": "user", "content": f"<task>{task}</task>"},
    ]


def follow_up(messages: list[dict[str, Any]], answer: str, turn: int) -> list[dict[str, Any]]:
    """The history an agent sends next: the answer it got and the result of its tool."""
    result = f"[read_file] Result: file {turn} read, {40 + turn} lines, nothing unexpected."
    return [
        *messages,
        {"role": "assistant", "content": answer or "ok"},
        {"role": "user", "content": result},
    ]


async def ask(
    session: aiohttp.ClientSession,
    url: str,
    messages: list[dict[str, Any]],
    *,
    model: str,
    stream: bool,
) -> tuple[str, str]:
    """Send one turn; (outcome, answer text). Outcomes as scripts/soak.py classifies them."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": stream,
        "max_tokens": 60,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    try:
        async with session.post(
            url + "/v1/chat/completions",
            data=orjson.dumps(body),
            headers={"Content-Type": "application/json"},
        ) as resp:
            raw = await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"unexpected: {type(exc).__name__}", ""
    try:
        if resp.status != 200:
            error = orjson.loads(raw).get("error", {})
            if {"message", "type", "param", "code"} <= set(error):
                return f"http_{resp.status}", ""
            return f"unexpected: HTTP {resp.status} without OpenAI error body", ""
        if not stream:
            data = orjson.loads(raw)
            if data.get("object") != "chat.completion":
                return "unexpected: non-stream body", ""
            return "ok", str(data["choices"][0]["message"].get("content") or "")
        events = [e for e in raw.split(b"\n\n") if e and not e.startswith(b":")]
        if not events:
            return "unexpected: empty stream", ""
        text = []
        for event in events[:-1]:
            if event.startswith(b"data: {"):
                for choice in orjson.loads(event[6:]).get("choices") or ():
                    text.append(str((choice.get("delta") or {}).get("content") or ""))
        last = events[-1]
        if last == b"data: [DONE]":
            return "ok", "".join(text)
        if last.startswith(b"data: {") and b'"error"' in last:
            return "error_event", ""
        return "unexpected: stream ended without [DONE] or error event", ""
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        return "unexpected: invalid JSON", ""


async def converse(
    session: aiohttp.ClientSession,
    url: str,
    conversation: int,
    *,
    turns: int,
    prompt_bytes: int,
    model: str,
    rng: random.Random,
    stream_share: float = 0.8,
) -> list[str]:
    """Play one conversation of up to `turns` requests; the outcome of each request sent.

    A turn that got no answer ends the conversation (as an agent would stop or start over)."""
    messages = first_messages(conversation, prompt_bytes)
    outcomes = []
    for turn in range(1, turns + 1):
        outcome, answer = await ask(
            session, url, messages, model=model, stream=rng.random() < stream_share
        )
        outcomes.append(outcome)
        if outcome != "ok":
            break
        messages = follow_up(messages, answer, turn)
    return outcomes
