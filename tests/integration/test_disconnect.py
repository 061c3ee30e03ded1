"""A client that goes away at any moment leaves nothing behind: every upstream stream closed, no
task alive, and one ledger row with the tokens billed up to that moment.

The upstreams' answers are far longer than the waits below, so a stream that ends while the test
waits was closed by the gateway; how soon it closes is a benchmark's figure, not a test's.
"""

from __future__ import annotations

import asyncio

import pytest
from support import ALL_STRATEGIES, chat, eventually, read_then_leave

from gateway.accounting.records import UPSTREAM_NAMES
from gateway.dev.sim import SimRequestLog

STRATEGIES = ALL_STRATEGIES


# Events received before leaving: 1 = only the role chunk (speculative: before the verdict),
# 4 = inside the buffered window replay, 30 = well into the live stream.
MOMENTS = {"before_verdict": 1, "buffered_replay": 4, "mid_stream": 30}


# 20 s of answer at 100 tokens/s: no full answer ends by itself within `eventually`'s 10 s.
ANSWER_TOKENS = 2000


def describe(streams: list[tuple[str, SimRequestLog]]) -> list[str]:
    return [
        f"{profile}: {log.completion_tokens_sent} tokens sent, "
        + ("finished" if log.finished else "disconnected" if log.disconnected_at else "open")
        for profile, log in streams
    ]


@pytest.mark.parametrize("moment", list(MOMENTS))
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_disconnect_leaves_nothing(
    make_gateway, client, local_sim, cerebras_sim, strategy, moment
) -> None:
    for sim in (local_sim, cerebras_sim):
        sim.options.tps = 100.0
        sim.options.answer_tokens = ANSWER_TOKENS
    gw = await make_gateway(
        strategy,
        speculative_decoding={"max_draft_tokens": 10, "min_confidence": 0.0},
    )
    before = set(asyncio.all_tasks())
    body = chat("Explain step by step why the build fails: ```make all```", stream=True)
    await read_then_leave(client, gw.url, body, MOMENTS[moment])

    def streams() -> list[tuple[str, SimRequestLog]]:
        sims = (local_sim, cerebras_sim)
        return [(sim.options.profile, log) for sim in sims for log in sim.requests]

    def leftover() -> set[asyncio.Task[object]]:
        return {t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()}

    assert streams(), "the request reached an upstream"
    await eventually(
        lambda: all(log.ended_at is not None for _, log in streams()),
        lambda: f"every upstream stream ends after the client left: {describe(streams())}",
    )
    # the simulators' handlers are tasks too: none left means no stream opened later either
    await eventually(lambda: not leftover(), lambda: f"tasks left: {leftover()}")
    for profile, log in streams():
        # complete: only a short call (a draft within its max_tokens), never a whole answer
        assert log.finished or log.disconnected_at is not None, (profile, log)
        assert not (log.finished and log.completion_tokens_sent >= ANSWER_TOKENS), (profile, log)

    ledger = gw.services.ledger
    await ledger.flush()
    rows = ledger.rows()
    assert len(rows) == 1
    row = rows[0]
    if row.outcome == "client_disconnected":
        billed = sum(
            getattr(row, f"{name}_prompt_tokens") + getattr(row, f"{name}_completion_tokens")
            for name in UPSTREAM_NAMES
        )
        assert billed > 0, "partial tokens are billed"
    else:
        assert row.outcome == "ok", "only an answer that had already completed may be ok"
