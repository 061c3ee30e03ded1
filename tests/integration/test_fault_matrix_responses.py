"""The fault matrix through the Responses door: every strategy x every upstream fault the
simulator can inject, on either upstream (the faults and bounds of
tests/integration/test_fault_matrix.py).

Whatever breaks, a Codex client gets a complete event stream ending in `response.completed`, or
exactly one `response.failed` that ends the stream, or a clean OpenAI-shaped HTTP error before
the first byte; within the configured timeouts plus one second; and the ledger records the
request exactly once, through the `responses` door, with the outcome the client saw. A Cerebras
failure after content is continued on local inside the same message item.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson
from responses_transcripts import parse_events

from integration.test_fault_matrix import (
    BOUND_S,
    CEREBRAS_FIRST,
    FAULTS,
    broken_gateway,
    every_fault,
    every_mid_stream_fault,
    fault_gateway,
    only_row,
    refused,
)

__all__ = ["broken_gateway", "refused"]  # the fixtures, shared with test_fault_matrix

QUESTION = "Explain step by step why this code deadlocks: ```lock(a); lock(b)```"


def responses_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "glm-token-saver",
        "input": [{"type": "message", "role": "user", "content": QUESTION}],
        "stream": True,
        "store": False,
        "reasoning": {"summary": "auto"},
        "include": ["reasoning.encrypted_content"],
    }
    body.update(extra)
    return body


async def post(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[int, bytes, str]:
    async with session.post(url + "/responses", json=body) as resp:
        return resp.status, await resp.read(), resp.content_type


def check_stream(raw: bytes) -> tuple[str, dict[str, Any]]:
    """The final event and its response; every frame well formed, numbered in order, and
    nothing after the final event."""
    events = parse_events(raw)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert [name for name, _ in events[:2]] == ["response.created", "response.in_progress"]
    finals = [
        name
        for name, _ in events
        if name in ("response.completed", "response.incomplete", "response.failed")
    ]
    assert len(finals) == 1 and events[-1][0] == finals[0], "one final event, last"
    name, data = events[-1]
    response: dict[str, Any] = data["response"]
    return name, response


def answer_text(response: dict[str, Any]) -> str:
    return "".join(
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
    )


async def _app(aiohttp_server, tmp_path, local_url, cerebras_url, **config):
    app, server = await fault_gateway(aiohttp_server, tmp_path, local_url, cerebras_url, **config)
    return app, str(server.make_url("/v1"))


@every_fault
async def test_fault(client, broken_gateway, strategy, fault, where) -> None:
    app, server = broken_gateway
    url = str(server.make_url("/v1"))
    started = time.monotonic()
    status, raw, content_type = await post(client, url, responses_body())
    elapsed = time.monotonic() - started
    assert elapsed < BOUND_S, f"took {elapsed:.2f}s"

    if status == 200:
        assert content_type == "text/event-stream"
        name, response = check_stream(raw)
        if name == "response.failed":
            assert response["status"] == "failed"
            error = response["error"]
            assert isinstance(error["code"], str) and error["message"]
            expected_outcome = "error"
        else:
            assert name == "response.completed"
            assert answer_text(response) or any(
                item["type"] == "function_call" for item in response["output"]
            )
            assert response["usage"]["total_tokens"] > 0
            expected_outcome = "ok"
    else:
        assert 400 <= status < 600
        error = orjson.loads(raw)["error"]
        assert set(error) >= {"message", "type", "param", "code"}
        expected_outcome = "error"

    row = await only_row(app)
    assert (row.outcome, row.door) == (expected_outcome, "responses")


@every_mid_stream_fault
async def test_mid_stream_fault_is_continued(
    aiohttp_server, client, tmp_path, local_sim, cerebras_sim, strategy, fault, where
) -> None:
    """Cerebras failing after content: local finishes the same message from the partial answer.
    Local failing after content: Cerebras cannot continue a prefill, so one response.failed."""
    sims = {"local": local_sim, "cerebras": cerebras_sim}
    sims[where].inject(fault, **FAULTS[fault])
    app, url = await _app(
        aiohttp_server, tmp_path, local_sim.url, cerebras_sim.url, routing={"strategy": strategy}
    )
    status, raw, _ = await post(client, url, responses_body())
    assert status == 200
    name, response = check_stream(raw)
    row = await only_row(app)
    if name == "response.completed" and "continued" in response:
        assert where == "cerebras"
        continued = response["continued"]
        assert (continued["from"], continued["to"], response["model_used"]) == (
            "cerebras",
            "local",
            "local",
        )
        (cont,) = [r for r in local_sim.requests if r.prefill]
        assert answer_text(response) == cont.prefill + cont.planned_content
        messages = [item for item in response["output"] if item["type"] == "message"]
        assert len(messages) == 1, "the continuation stays in the same message item"
        assert row.outcome == "ok" and row.model_used == "local"
        return
    if name == "response.completed":
        assert not (where == "cerebras" and strategy in CEREBRAS_FIRST)
        assert not (where == "local" and strategy == "always_local")
        assert row.outcome == "ok"
        return
    assert where == "local", "a Cerebras failure after content is always continued"
    assert name == "response.failed"
    assert row.outcome == "error"
