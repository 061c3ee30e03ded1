"""Fault matrix: every strategy x every upstream fault the simulator can inject, on either upstream.

Whatever breaks, the client gets a complete stream ending in [DONE], or exactly one error event
after content (no [DONE]), or a clean OpenAI-shaped HTTP error before the first byte; within the
configured timeouts plus one second; and the ledger records the request exactly once with the
outcome the client saw. Through the Anthropic Messages door the same holds in its own shape: a
stream ending in message_stop, or one `event: error` after message_start, or an
Anthropic-shaped HTTP error.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
import pytest
from anthropic_support import check_grammar, parse_events
from support import ALL_STRATEGIES, chat, gateway_config, post_stream, refused_url

from gateway.dev.sim import SimServer
from gateway.http.app import create_app
from gateway.http.services import SERVICES_KEY
from gateway.strategies import strategy_names

TIMEOUT = 0.5


DRAFT_TIMEOUT = 0.5


# The longest path waits out one first-token timeout, one idle gap and one draft deadline.
BOUND_S = TIMEOUT * 2 + DRAFT_TIMEOUT + 1.0


FAULTS: dict[str, dict[str, object]] = {
    "refused": {},
    "http_500": {},
    "http_429": {"reset_seconds": 30},
    "http_429_bare": {},
    "http_503_loading": {},
    "slow_first_token": {"delay": 30.0},
    "stall": {"after_chunks": 4, "seconds": 30.0},
    "cut": {"after_chunks": 4},
    "malformed_event": {"after_chunks": 3},
    "garbage": {"after_chunks": 3},
    "huge_event": {"size": 1_200_000},
    "error_event": {"after_chunks": 3},
    "drop": {},
}


STRATEGIES = ALL_STRATEGIES


def broken_upstream_urls(
    local_sim: SimServer, cerebras_sim: SimServer, fault: str, where: str, refused: str
) -> dict[str, str]:
    """Both upstreams' URLs with `fault` injected into `where` (`refused`: the URL `refused`)."""
    sims = {"local": local_sim, "cerebras": cerebras_sim}
    urls = {name: sim.url for name, sim in sims.items()}
    if fault == "refused":
        urls[where] = refused
    else:
        sims[where].inject(fault, **FAULTS[fault])
    return urls


async def fault_gateway(aiohttp_server, tmp_path, local_url: str, cerebras_url: str, **config):
    """(app, server) of a gateway on these upstreams with the matrix's short timeouts."""
    app = create_app(
        gateway_config(
            tmp_path,
            local_url,
            cerebras_url,
            timeouts={"connect": TIMEOUT, "first_token": TIMEOUT, "idle": TIMEOUT},
            speculative_decoding={"draft_timeout": DRAFT_TIMEOUT},
            **config,
        )
    )
    return app, await aiohttp_server(app)


def every_fault(test: Any, faults: Iterable[str] = FAULTS) -> Any:
    """Run `test` for every strategy, fault (of `faults`) and broken upstream (`where`)."""
    test = pytest.mark.parametrize("strategy", STRATEGIES)(test)
    test = pytest.mark.parametrize("fault", list(faults))(test)
    return pytest.mark.parametrize("where", ["local", "cerebras"])(test)


@pytest.fixture
def refused() -> Iterator[str]:
    with refused_url() as url:
        yield url


@pytest.fixture
async def broken_gateway(
    aiohttp_server, tmp_path, local_sim, cerebras_sim, strategy, fault, where, refused
):
    """(app, server) of an `every_fault` test: `fault_gateway` under `strategy` with `fault`
    injected into `where`."""
    urls = broken_upstream_urls(local_sim, cerebras_sim, fault, where, refused)
    return await fault_gateway(
        aiohttp_server, tmp_path, urls["local"], urls["cerebras"], strategy=strategy
    )


async def only_row(app):
    """The one ledger row the request left (after the writes are flushed)."""
    ledger = app[SERVICES_KEY].ledger
    await ledger.flush()
    rows = ledger.rows()
    assert len(rows) == 1, rows
    return rows[0]


def test_matrix_covers_every_registered_strategy() -> None:
    assert sorted(STRATEGIES) == strategy_names()


@every_fault
async def test_fault(client, broken_gateway, strategy, fault, where) -> None:
    app, server = broken_gateway
    # A question that every classifier counts as complex, so each strategy calls Cerebras.
    body = chat("Explain step by step why this code deadlocks: ```lock(a); lock(b)```", stream=True)
    started = time.monotonic()
    reply = await post_stream(client, str(server.make_url("/v1")), body)
    elapsed = time.monotonic() - started
    assert elapsed < BOUND_S, f"took {elapsed:.2f}s"

    if reply.status == 200:
        data = reply.data
        errors = [d for d in data if isinstance(d, dict) and "error" in d]
        if data[-1] == "[DONE]":
            assert not errors
            assert data.count("[DONE]") == 1
            assert reply.text or any(
                c["choices"][0]["delta"].get("tool_calls") for c in reply.chunks if c["choices"]
            )
            expected_outcome = "ok"
        else:
            assert errors == [data[-1]], "exactly one error event, and it ends the stream"
            assert set(data[-1]["error"]) >= {"message", "type", "param", "code"}
            assert "[DONE]" not in data
            expected_outcome = "error"
    else:
        assert 400 <= reply.status < 600
        error = orjson.loads(reply.raw)["error"]
        assert set(error) >= {"message", "type", "param", "code"}
        expected_outcome = "error"

    assert (await only_row(app)).outcome == expected_outcome


# Faults that break a stream after content may have reached the client.
MID_STREAM = ["stall", "cut", "malformed_event", "garbage", "error_event"]


def every_mid_stream_fault(test: Any) -> Any:
    """`every_fault` for the MID_STREAM faults only."""
    return every_fault(test, MID_STREAM)


# Strategies whose committed upstream for the complex question is Cerebras, so a Cerebras fault
# always lands after content was sent.
CEREBRAS_FIRST = ("always_cerebras", "smart_routing", "adaptive_cerebras")


async def _mid_stream_reply(aiohttp_server, client, tmp_path, local_sim, cerebras_sim, **config):
    app, server = await fault_gateway(
        aiohttp_server, tmp_path, local_sim.url, cerebras_sim.url, **config
    )
    body = chat(
        "Explain step by step why this code deadlocks: ```lock(a); lock(b)```",
        stream=True,
        stream_options={"include_usage": True},
    )
    reply = await post_stream(client, str(server.make_url("/v1")), body)
    ledger = app[SERVICES_KEY].ledger
    await ledger.flush()
    return reply, ledger.rows()


def assert_continued(reply, local_sim, cerebras_sim, rows) -> dict:
    """One complete stream: Cerebras' part, then local's continuation, seamless; usage summed."""
    data = reply.data
    assert data[-1] == "[DONE]" and data.count("[DONE]") == 1
    chunks = reply.chunks
    assert not [c for c in chunks if "error" in c]
    assert len({c["id"] for c in chunks}) == 1
    final = chunks[-1]
    continued = final["continued"]
    assert (continued["from"], continued["to"], final["model_used"]) == (
        "cerebras",
        "local",
        "local",
    )
    assert continued["at_tokens"] > 0 and continued["reason"]
    reasons = [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]]
    assert reasons == ["stop"]
    (cont,) = [r for r in local_sim.requests if r.prefill]
    first = [r for r in cerebras_sim.requests if r.fault][0]
    assert cont.prefill and first.planned_content.startswith(cont.prefill)
    assert reply.text == cont.prefill + cont.planned_content, "no repeated or missing text"
    assert cont.planned_content and not cont.planned_content.startswith(cont.prefill)
    usages = [c["usage"] for c in chunks if c.get("usage")]
    assert len(usages) == 1
    usage = usages[0]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] == continued["at_tokens"] + cont.completion_tokens_sent
    (row,) = rows
    assert row.outcome == "ok" and row.model_used == "local"
    calls = row.upstream_calls()
    broken = [c for c in calls if c.upstream == "cerebras" and c.status == "error"]
    answers = [c for c in calls if c.upstream == "local" and c.role == "answer"]
    assert [c.completion_tokens for c in broken] == [continued["at_tokens"]]
    assert [(c.status, c.completion_tokens) for c in answers] == [
        ("ok", cont.completion_tokens_sent)
    ], "the ledger keeps both calls"
    return continued


@every_mid_stream_fault
async def test_mid_stream_fault_is_continued(
    aiohttp_server, client, tmp_path, local_sim, cerebras_sim, strategy, fault, where
) -> None:
    """Cerebras failing after content: local finishes the same stream from the partial answer.
    Local failing after content: Cerebras cannot continue a prefill, so one error event."""
    sims = {"local": local_sim, "cerebras": cerebras_sim}
    sims[where].inject(fault, **FAULTS[fault])
    reply, rows = await _mid_stream_reply(
        aiohttp_server, client, tmp_path, local_sim, cerebras_sim, routing={"strategy": strategy}
    )
    assert reply.status == 200
    data = reply.data
    final = reply.chunks[-1]
    if data[-1] == "[DONE]" and "continued" in final:
        assert where == "cerebras"
        assert_continued(reply, local_sim, cerebras_sim, rows)
        return
    if data[-1] == "[DONE]":
        # The fault never reached the client (an uncommitted draft or verify call).
        assert not [c for c in reply.chunks if "error" in c]
        assert not (where == "cerebras" and strategy in CEREBRAS_FIRST)
        assert not (where == "local" and strategy == "always_local")
        assert rows[0].outcome == "ok"
        return
    assert where == "local", "a Cerebras failure after content is always continued"
    errors = [d for d in data if isinstance(d, dict) and "error" in d]
    assert errors == [data[-1]] and "[DONE]" not in data
    assert rows[0].outcome == "error"


@pytest.mark.parametrize("fault", MID_STREAM)
async def test_mid_stream_error_mode_keeps_the_error_event(
    aiohttp_server, client, tmp_path, local_sim, cerebras_sim, fault
) -> None:
    cerebras_sim.inject(fault, **FAULTS[fault])
    reply, rows = await _mid_stream_reply(
        aiohttp_server,
        client,
        tmp_path,
        local_sim,
        cerebras_sim,
        routing={"strategy": "always_cerebras", "fallback": {"mid_stream": "error"}},
    )
    data = reply.data
    errors = [d for d in data if isinstance(d, dict) and "error" in d]
    assert errors == [data[-1]] and "[DONE]" not in data
    assert not [r for r in local_sim.requests]
    assert rows[0].outcome == "error"


@every_fault
async def test_fault_through_the_messages_door(
    client, broken_gateway, strategy, fault, where
) -> None:
    app, server = broken_gateway
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 200,
        "stream": True,
        "messages": [
            {
                "role": "user",
                "content": "Explain step by step why this code deadlocks: ```lock(a); lock(b)```",
            }
        ],
    }
    started = time.monotonic()
    async with client.post(str(server.make_url("/v1/messages?beta=true")), json=body) as resp:
        status, raw = resp.status, await resp.read()
    elapsed = time.monotonic() - started
    assert elapsed < BOUND_S, f"took {elapsed:.2f}s"

    if status == 200:
        events = parse_events(raw)
        names = [name for name, _ in events]
        assert names[0] == "message_start"
        if names[-1] == "message_stop":
            assert "error" not in names
            blocks = check_grammar(events)
            assert any(b["type"] in ("text", "tool_use") for b in blocks)
            expected_outcome = "ok"
        else:
            assert names.count("error") == 1 and names[-1] == "error"
            error = events[-1][1]
            assert set(error) == {"type", "error"} and set(error["error"]) == {"type", "message"}
            expected_outcome = "error"
    else:
        assert 400 <= status < 600
        error = orjson.loads(raw)
        assert error["type"] == "error" and set(error["error"]) == {"type", "message"}
        expected_outcome = "error"

    row = await only_row(app)
    assert (row.outcome, row.door) == (expected_outcome, "messages")
