"""A call left early is billed for what had already arrived, not only for what was read."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from support import CEREBRAS_KEY, chat, eventually, gateway_config

from gateway.accounting.records import UpstreamCall
from gateway.dev.sim import SimOptions, running_sim
from gateway.upstreams import build_upstream


async def leave_after_first_batch(tmp_path: Path) -> tuple[UpstreamCall, int]:
    """Read one batch of a 300-token answer, wait until the rest has arrived unread, leave; (the
    call, what the simulated Cerebras sent)."""
    options = SimOptions(profile="cerebras", answer_tokens=300, tps=4000, api_key=CEREBRAS_KEY)
    async with running_sim(options) as sim, aiohttp.ClientSession() as session:
        cfg = gateway_config(tmp_path, "http://127.0.0.1:9/v1", sim.url)
        upstream = build_upstream("cerebras", cfg.cerebras, session, max_event_bytes=1 << 20)
        calls: list[UpstreamCall] = []
        opening = upstream.open_stream(chat("count me"))
        calls.append(opening.call)
        async with opening as stream:
            async for _ in stream.batches():
                break
            content = stream.response.content
            await eventually(content.is_eof, "the whole answer arrives (unread)")
        (log,) = sim.requests
        await eventually(lambda: log.ended_at is not None, "the simulator ends the request")
        return calls[0], log.completion_tokens_sent


async def test_an_answer_that_arrived_unread_is_billed_as_reported(tmp_path: Path) -> None:
    call, sent = await leave_after_first_batch(tmp_path)
    assert call.status == "cancelled"
    assert sent == 300
    assert call.estimated is False, "its usage had arrived: the upstream's own count"
    assert call.completion_tokens == 300
