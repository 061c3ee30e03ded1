"""A client that goes away at any moment leaves nothing behind: no upstream connection after
200 ms, no task alive, and one ledger row with the tokens billed up to that moment."""

from __future__ import annotations

import asyncio

import pytest
from support import ALL_STRATEGIES, chat, read_then_leave

from gateway.accounting.records import UPSTREAM_NAMES

STRATEGIES = ALL_STRATEGIES
# Events received before leaving: 1 = only the role chunk (speculative: before the verdict),
# 4 = inside the buffered window replay, 30 = well into the live stream.
MOMENTS = {"before_verdict": 1, "buffered_replay": 4, "mid_stream": 30}


@pytest.mark.parametrize("moment", list(MOMENTS))
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_disconnect_leaves_nothing(
    make_gateway, client, local_sim, cerebras_sim, strategy, moment
) -> None:
    local_sim.options.tps = 100.0
    local_sim.options.answer_tokens = 200
    cerebras_sim.options.tps = 100.0
    cerebras_sim.options.answer_tokens = 200
    gw = await make_gateway(
        strategy,
        speculative_decoding={"max_draft_tokens": 10, "min_confidence": 0.0},
    )
    await asyncio.sleep(0.05)
    before = set(asyncio.all_tasks())
    body = chat("Explain step by step why the build fails: ```make all```", stream=True)
    left_at = await read_then_leave(client, gw.url, body, MOMENTS[moment])

    await asyncio.sleep(0.2)
    for sim in (local_sim, cerebras_sim):
        for log in sim.requests:
            assert log.finished or log.disconnected_at is not None, (
                f"{sim.options.profile} still streaming 200 ms after the client left"
            )
            if log.disconnected_at is not None and not log.finished:
                assert log.disconnected_at - left_at < 0.2

    for _ in range(50):
        leftover = {t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()}
        if not leftover:
            break
        await asyncio.sleep(0.01)
    assert not leftover, leftover

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
