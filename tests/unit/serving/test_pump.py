"""The one loop of an upstream call (gateway.serving.pump) against in-process fake upstreams."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from gateway.accounting.records import UpstreamCall
from gateway.errors import UpstreamError, UpstreamProtocolError
from gateway.serving.pump import pump_call
from gateway.upstreams import Stream
from gateway.upstreams.fake import FakeUpstream, Reply, delta, finish, http_error
from gateway.wire.chunk import Chunk

BODY = {"model": "m", "messages": [{"role": "user", "content": "Say hello."}]}
HEADERS = {"x-ratelimit-remaining-tokens-minute": "99"}


class Ticket:
    """Notes each release: the headers it was given (None: the call's end)."""

    def __init__(self) -> None:
        self.releases: list[Mapping[str, str] | None] = []

    def release(self, headers: Mapping[str, str] | None = None) -> None:
        self.releases.append(headers)


class Gate:
    """Notes the failures it is told of."""

    def __init__(self) -> None:
        self.failures: list[tuple[str, UpstreamError]] = []

    async def admit(self, *args: object) -> object:
        raise AssertionError("the pump admits nothing: its caller did")

    def observe_failure(self, upstream: str, error: UpstreamError) -> None:
        self.failures.append((upstream, error))


async def test_each_batch_is_fed_in_order_and_the_ticket_released_on_the_headers() -> None:
    upstream = FakeUpstream(
        "local",
        Reply(batches=[[delta("Hel"), delta("lo")], [finish()]], headers=HEADERS),
    )
    ticket, gate, calls = Ticket(), Gate(), []
    seen: list[list[str]] = []
    events: list[str] = []

    async def opened(stream: Stream) -> None:
        events.append(f"opened, ticket released {ticket.releases}")

    async def feed(batch: list[Chunk]) -> None:
        seen.append([chunk.text for chunk in batch])

    stream = await pump_call(
        upstream, BODY, calls=calls, ticket=ticket, gate=gate, feed=feed, opened=opened
    )
    assert seen == [["Hel", "lo"], [""]]
    assert events == [f"opened, ticket released {[HEADERS]}"]
    assert ticket.releases == [HEADERS, None], "on the headers, then (a no-op) at the end"
    assert calls == [stream.call] and stream.call.status == "ok"
    assert gate.failures == []


async def test_until_stops_reading_and_the_call_is_cancelled() -> None:
    upstream = FakeUpstream("local", Reply(batches=[[delta("a")], [delta("b")], [finish()]]))
    seen: list[str] = []

    async def feed(batch: list[Chunk]) -> None:
        seen.extend(chunk.text for chunk in batch)

    calls: list[UpstreamCall] = []
    stream = await pump_call(
        upstream,
        BODY,
        calls=calls,
        ticket=Ticket(),
        gate=Gate(),
        feed=feed,
        until=lambda: len(seen) == 1,
    )
    assert seen == ["a"]
    assert stream.call.status == "cancelled"


async def test_a_refused_call_is_recorded_observed_once_and_its_ticket_released() -> None:
    refusal = http_error("cerebras", 429, "slow down")
    upstream = FakeUpstream("cerebras", Reply(refuse=refusal))
    ticket, gate, calls = Ticket(), Gate(), []

    async def feed(batch: list[Chunk]) -> None:
        raise AssertionError("no stream, no batch")

    with pytest.raises(UpstreamError) as caught:
        await pump_call(upstream, BODY, calls=calls, ticket=ticket, gate=gate, feed=feed)
    assert caught.value is refusal
    assert gate.failures == [("cerebras", refusal)]
    assert ticket.releases == [None]
    [call] = calls
    assert (call.status, call.http_status) == ("error", 429)
    assert caught.value.call is call


async def test_a_failure_mid_stream_is_observed_after_the_batches_before_it() -> None:
    broken = UpstreamProtocolError("local", "local: connection lost mid-stream")
    upstream = FakeUpstream("local", Reply(batches=[[delta("Hel")]], error=broken))
    ticket, gate = Ticket(), Gate()
    seen: list[str] = []

    async def feed(batch: list[Chunk]) -> None:
        seen.extend(chunk.text for chunk in batch)

    with pytest.raises(UpstreamProtocolError):
        await pump_call(upstream, BODY, calls=[], ticket=ticket, gate=gate, feed=feed)
    assert seen == ["Hel"]
    assert gate.failures == [("local", broken)]
    assert ticket.releases == [{}, None]


async def test_a_call_cancelled_before_its_headers_is_in_the_record_and_released() -> None:
    upstream = FakeUpstream("cerebras", Reply(batches=[[delta("never")]]))
    ticket, calls = Ticket(), []

    async def feed(batch: list[Chunk]) -> None:
        raise AssertionError("cancelled before the headers")

    task = asyncio.create_task(
        pump_call(upstream, BODY, calls=calls, ticket=ticket, gate=Gate(), feed=feed)
    )
    await asyncio.sleep(0)  # the fake yields once before its headers: cancel it there
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [call] = calls
    assert call.status == "cancelled" and call.estimated and call.prompt_tokens > 0
    assert ticket.releases == [None]
