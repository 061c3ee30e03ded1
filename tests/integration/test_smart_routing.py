"""smart_routing through the gateway: a table of asks with the route each must take, the decision
in the response metadata and the log, and the admission gate obeyed for complex asks."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from support import chat, eventually, post_stream
from unit.router.test_classifier import cline_request, cline_task, read_file_turns

from gateway.dev.sim import SimServer


def user(text: str) -> dict[str, Any]:
    return {"model": "glm-token-saver", "messages": [{"role": "user", "content": text}]}


TABLE: list[tuple[str, dict[str, Any], str, str]] = [
    ("trivial question", user("What is 2+2?"), "local", "no complexity signal"),
    ("greeting", user("hi"), "local", "no complexity signal"),
    (
        "cline simple turn",
        cline_request(cline_task("What time zone is UTC+2?")),
        "local",
        "no complexity signal",
    ),
    (
        "cline tool loop of a simple task",
        cline_request(
            cline_task("Rename the variable foo to bar"),
            *read_file_turns("src/app.py", "def f():\n    raise ValueError('x')\n"),
        ),
        "local",
        "no complexity signal",
    ),
    (
        "cline refactor task",
        cline_request(cline_task("Refactor the parser in src/parser.py")),
        "cerebras",
        "keyword 'refactor'",
    ),
    (
        "cline tool loop of a complex task",
        cline_request(
            cline_task("Implement pagination for the users endpoint"),
            *read_file_turns("src/app.py", "hello"),
        ),
        "cerebras",
        "keyword 'implement'",
    ),
    (
        "debugging ask",
        user("It fails with\nTraceback (most recent call last):\n  File 'a.py'\nKeyError: 'x'"),
        "cerebras",
        "code or error trace",
    ),
    ("code ask", user("What does this print?\n```python\nprint(1)\n```"), "cerebras", "code"),
    (
        "multi-step reasoning",
        user("Explain step by step why the sky is blue"),
        "cerebras",
        "multi-step reasoning",
    ),
    (
        "several requirements",
        user("Build a page with:\n- a form\n- a table\n- a chart"),
        "cerebras",
        "several requirements",
    ),
    ("long ask", user("lorem ipsum dolor sit amet " * 200), "cerebras", "> 1000"),
]


@pytest.mark.parametrize(
    ("body", "expected", "signal"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE]
)
async def test_route_table(
    make_gateway, client, local_sim, cerebras_sim, body, expected, signal, caplog
) -> None:
    gw = await make_gateway("smart_routing")
    with caplog.at_level(logging.INFO, logger="gateway"):
        reply = await post_stream(client, gw.url, {**body, "stream": True})
        request_id = reply.headers["x-request-id"]
        # The request's line names the reason; it is written after the stream ended.
        await eventually(
            lambda: any(
                f"req={request_id} " in r.getMessage()
                and f"reason={reply.chunks[-1]['routing_reason']} " in r.getMessage()
                for r in caplog.records
            ),
            "the request's log line names its routing reason",
        )
    assert reply.status == 200
    final = reply.chunks[-1]
    assert final["model_used"] == expected
    reason = final["routing_reason"]
    assert reason.startswith(
        "smart_routing: " + ("complex" if expected == "cerebras" else "simple")
    )
    assert signal in reason
    assert reason.endswith(f"-> {expected}")
    served = cerebras_sim if expected == "cerebras" else local_sim
    assert len(served.requests) == 1


async def test_reason_in_non_stream_metadata(make_gateway, client, local_sim, cerebras_sim) -> None:
    gw = await make_gateway("smart_routing")
    async with client.post(gw.url + "/chat/completions", json=chat("Debug the login flow")) as resp:
        body = await resp.json()
    assert body["model_used"] == "cerebras"
    assert body["routing_reason"] == "smart_routing: complex: keyword 'debug' -> cerebras"


def cooling(sim: SimServer) -> None:
    sim.inject("http_429", reset_seconds=600)


async def test_complex_ask_obeys_the_gate(make_gateway, client, local_sim, cerebras_sim) -> None:
    gw = await make_gateway("smart_routing")
    cooling(cerebras_sim)
    first = await post_stream(client, gw.url, chat("Refactor the parser", stream=True))
    assert first.chunks[-1]["model_used"] == "local"
    assert "fallback to local" in first.chunks[-1]["routing_reason"]
    second = await post_stream(client, gw.url, chat("Refactor the lexer", stream=True))
    reason = second.chunks[-1]["routing_reason"]
    assert second.chunks[-1]["model_used"] == "local"
    assert "cooling down after a 429" in reason
    assert len(cerebras_sim.requests) == 1, "the cool-down kept the second ask off Cerebras"


async def test_complex_ask_respects_predicted_headroom(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    gw = await make_gateway("smart_routing", rate_limits={"cerebras": {"tokens_per_minute": 9000}})
    reply = await post_stream(client, gw.url, chat("Refactor the parser", stream=True))
    assert reply.chunks[-1]["model_used"] == "local"
    assert "tokens-minute (plan) would drop" in reply.chunks[-1]["routing_reason"]
    assert cerebras_sim.requests == []


async def test_simple_ask_falls_back_to_cerebras_when_local_fails(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    gw = await make_gateway("smart_routing")
    local_sim.inject("http_500")
    reply = await post_stream(client, gw.url, chat("hi", stream=True))
    assert reply.chunks[-1]["model_used"] == "cerebras"
    assert reply.chunks[-1]["routing_reason"].startswith("smart_routing: simple")
