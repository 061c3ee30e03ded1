"""Fault matrix: every strategy x every upstream fault the simulator can inject, on either upstream.

Whatever breaks, the client gets a complete stream ending in [DONE], or exactly one error event
after content (no [DONE]), or a clean OpenAI-shaped HTTP error before the first byte; within the
configured timeouts plus one second; and the ledger records the request exactly once with the
outcome the client saw.
"""

from __future__ import annotations

import socket
import time

import orjson
import pytest
from support import ALL_STRATEGIES, chat, gateway_config, post_stream

from gateway.app import SERVICES_KEY, create_app
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


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_matrix_covers_every_registered_strategy() -> None:
    assert sorted(STRATEGIES) == strategy_names()


@pytest.mark.parametrize("where", ["local", "cerebras"])
@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_fault(
    aiohttp_server, client, tmp_path, local_sim, cerebras_sim, strategy, fault, where
) -> None:
    sims = {"local": local_sim, "cerebras": cerebras_sim}
    urls = {name: sim.url for name, sim in sims.items()}
    if fault == "refused":
        urls[where] = closed_port_url()
    else:
        sims[where].inject(fault, **FAULTS[fault])
    config = gateway_config(
        tmp_path,
        urls["local"],
        urls["cerebras"],
        strategy=strategy,
        timeouts={"connect": TIMEOUT, "first_token": TIMEOUT, "idle": TIMEOUT},
        speculative_decoding={"draft_timeout": DRAFT_TIMEOUT},
    )
    app = create_app(config)
    server = await aiohttp_server(app)
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

    ledger = app[SERVICES_KEY].ledger
    await ledger.flush()
    rows = ledger.rows()
    assert len(rows) == 1, rows
    assert rows[0].outcome == expected_outcome
