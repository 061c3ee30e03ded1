"""The loop of one upstream call, written once: open it, release its admission on the response
headers, feed its batches on, report a failure to the gate, release.

The relay, the continuation, the speculation race and the verification samples each call
`pump_call` with their own per-batch work (`feed`), when to stop reading early (`until`) and what
to do once the upstream accepted (`opened`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gateway.accounting.records import CallRole, UpstreamCall
from gateway.accounting.tokens import PromptMemo
from gateway.errors import UpstreamError
from gateway.quota.admission import Ticket, UpstreamGate
from gateway.upstreams import Stream, Upstream
from gateway.wire.chunk import Chunk

# Takes the chunks of one network read, in order.
Feed = Callable[[list[Chunk]], Awaitable[object]]
# Runs once the response headers arrived, before the first batch.
Opened = Callable[[Stream], Awaitable[object]]


async def pump_call(
    upstream: Upstream,
    body: Mapping[str, Any],
    *,
    calls: list[UpstreamCall],
    ticket: Ticket,
    gate: UpstreamGate,
    feed: Feed,
    until: Callable[[], bool] | None = None,
    opened: Opened | None = None,
    role: CallRole = "answer",
    request_id: str | None = None,
    body_overrides: Mapping[str, Any] | None = None,
    thinking: str | None = None,
    prompt_tokens: PromptMemo | None = None,
) -> Stream:
    """Send `body` to `upstream` and hand each batch to `feed` until the stream ends, or until
    `until()` holds after a batch (the connection then closes, so the upstream stops generating).
    Returns the stream; its call is settled by then.

    The call is added to `calls` (the caller's record) before it is sent. `ticket`, the call's
    admission, is released with the response headers, and in any case when the call ends. An
    UpstreamError is reported to `gate` (`observe_failure`) and re-raised. The remaining
    arguments are `Upstream.open_stream`'s.
    """
    try:
        opening = upstream.open_stream(
            body,
            role=role,
            request_id=request_id,
            body_overrides=body_overrides,
            thinking=thinking,
            prompt_tokens=prompt_tokens,
        )
        calls.append(opening.call)
        async with opening as stream:
            ticket.release(stream.headers)
            if opened is not None:
                await opened(stream)
            async for batch in stream.batches():
                await feed(batch)
                if until is not None and until():
                    break
    except UpstreamError as exc:
        gate.observe_failure(upstream.name, exc)
        raise
    finally:
        ticket.release()
    return stream
