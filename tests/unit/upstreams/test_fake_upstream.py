"""Relay, continuation and race decisions against in-process fake upstreams: no socket.

The network itself (timeouts, cut connections, keep-alive) is tested against the simulators;
these tests pin the decisions made on top of the `Upstream` protocol.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from gateway.accounting.records import RequestRecord, UpstreamName
from gateway.config import ThinkingMode, parse_config
from gateway.errors import UpstreamHTTPError, UpstreamProtocolError
from gateway.quota.admission import NO_TICKET
from gateway.serving.exchange import Exchange
from gateway.serving.relay import serve
from gateway.speculation.race import Lane, Race
from gateway.speculation.window import Window
from gateway.upstreams import Upstream
from gateway.upstreams.fake import FakeUpstream, Reply, delta, finish, http_error
from gateway.wire.chunk import Chunk
from gateway.wire.sinks import CollectSink

BODY = {"model": "m", "messages": [{"role": "user", "content": "Say hello."}]}


USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}


class ListSink:
    """A stream sink that keeps what it is handed: committed on the first answer content."""

    response = None
    satisfied = False

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.committed = False
        self.model_used: str | None = None
        self.first_content_at: float | None = None
        self.finished: tuple[dict[str, Any], dict[str, Any]] | None = None

    @property
    def text(self) -> str:
        return "".join(chunk.text for chunk in self.chunks)

    async def begin(self) -> None:
        return None

    async def emit(self, chunk: Chunk) -> None:
        await self.emit_many([chunk])

    async def emit_many(self, chunks: list[Chunk]) -> None:
        self.chunks += chunks
        self.committed = self.committed or any(chunk.answer for chunk in chunks)

    def has_answer(self) -> bool:
        return any(chunk.answer for chunk in self.chunks)

    def partial_answer(self) -> tuple[str, str | None]:
        return self.text, None

    def reset(self) -> None:
        self.chunks.clear()

    async def finish(self, usage: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.finished = (usage, dict(metadata))

    async def close(self) -> None:
        assert self.finished is not None

    async def fail(self, error: Any) -> None:
        raise error

    async def quiesce(self) -> None:
        return None

    def release(self) -> None:
        return None


def exchange(sink: Any, **upstreams: Upstream) -> Exchange:
    recorded: list[RequestRecord] = []

    async def recorder(record: RequestRecord) -> None:
        recorded.append(record)

    named: dict[UpstreamName, Upstream] = {}
    for name, upstream in upstreams.items():
        assert name in ("local", "cerebras")
        named[name] = upstream  # type: ignore[index]
    return Exchange(
        request_id="req-1",
        body=dict(BODY),
        stream=False,
        include_usage=False,
        sink=sink,
        record=RequestRecord(request_id="req-1", started_at=0.0, strategy="test", stream=False),
        upstreams=named,
        config=parse_config(None, env={}),
        recorder=recorder,
    )


def answered(*texts: str, usage: dict[str, Any] | None = USAGE) -> Reply:
    return Reply(batches=[[delta(text) for text in texts], [finish()]], usage=usage)


def calls_of(ex: Exchange) -> list[tuple[str, str, int | None]]:
    return [(c.upstream, c.status, c.http_status) for c in ex.record.calls]


async def test_relay_falls_back_in_route_order_before_any_content() -> None:
    local = FakeUpstream("local", Reply(refuse=http_error("local", 503, "loading model")))
    cerebras = FakeUpstream("cerebras", answered("Hel", "lo"))
    sink = CollectSink(response_id="chatcmpl-1", headers={})
    ex = exchange(sink, local=local, cerebras=cerebras)

    await serve(ex, ["local", "cerebras"], reason="test route")

    assert sink.response is not None
    body = orjson.loads(sink.response.body)  # type: ignore[arg-type]
    assert body["choices"][0]["message"]["content"] == "Hello"
    assert body["model_used"] == "cerebras"
    assert body["usage"]["completion_tokens"] == 3
    assert calls_of(ex) == [("local", "error", 503), ("cerebras", "ok", 200)]
    assert ex.record.fallback and ex.record.outcome == "ok"
    assert "fallback to cerebras (loading model)" in (ex.record.routing_reason or "")
    assert cerebras.bodies[0]["stream"] is True and cerebras.bodies[0]["model"] == "cerebras"


async def test_relay_stops_at_a_refusal_another_upstream_may_not_serve() -> None:
    local = FakeUpstream("local", Reply(refuse=http_error("local", 400, "bad request")))
    cerebras = FakeUpstream("cerebras", answered("never"))
    ex = exchange(CollectSink(response_id="c", headers={}), local=local, cerebras=cerebras)

    with pytest.raises(UpstreamHTTPError) as info:
        await serve(ex, ["local", "cerebras"], reason="test route")

    assert info.value.status == 400
    assert cerebras.bodies == [], "a 400 is the client's fault on every upstream"
    assert calls_of(ex) == [("local", "error", 400)]


async def test_an_empty_answer_falls_back_and_is_billed_by_estimate() -> None:
    local = FakeUpstream("local", Reply(batches=[[delta(reasoning="hmm")], [finish()]]))
    cerebras = FakeUpstream("cerebras", answered("Hi"))
    ex = exchange(CollectSink(response_id="c", headers={}), local=local, cerebras=cerebras)

    await serve(ex, ["local", "cerebras"], reason="test route")

    first = ex.record.calls[0]
    assert (first.upstream, first.error) == ("local", "empty answer")
    assert first.estimated and first.prompt_tokens > 0 and first.reasoning_tokens == 1
    assert ex.record.model_used == "cerebras"


async def test_a_broken_committed_stream_is_continued_on_the_other_upstream() -> None:
    broken = UpstreamProtocolError("cerebras", "cerebras: connection lost mid-stream")
    cerebras = FakeUpstream(
        "cerebras", Reply(batches=[[delta("Hello"), delta(" wor")]], error=broken)
    )
    local = FakeUpstream(
        "local",
        answered("Hello wor", "ld", "!"),  # llama.cpp repeats the prefill first
        continues_prefill=True,
        echoes_prefill=True,
    )
    sink = ListSink()
    ex = exchange(sink, local=local, cerebras=cerebras)

    await serve(ex, ["cerebras"], reason="test route")

    assert sink.text == "Hello world!"
    assert local.bodies[0]["messages"][-1] == {"role": "assistant", "content": "Hello wor"}
    assert calls_of(ex) == [("cerebras", "error", 200), ("local", "ok", 200)]
    assert sink.finished is not None
    usage, metadata = sink.finished
    assert metadata["continued"]["from"] == "cerebras" and metadata["continued"]["to"] == "local"
    assert usage["completion_tokens"] == ex.record.calls[0].completion_tokens + 3


async def test_a_broken_stream_is_not_continued_where_no_prefill_is_possible() -> None:
    broken = UpstreamProtocolError("local", "local: connection lost mid-stream")
    local = FakeUpstream("local", Reply(batches=[[delta("Hello")]], error=broken))
    cerebras = FakeUpstream("cerebras", answered("never"))  # continues_prefill False
    ex = exchange(ListSink(), local=local, cerebras=cerebras)

    with pytest.raises(UpstreamProtocolError):
        await serve(ex, ["local", "cerebras"], reason="test route")

    assert cerebras.bodies == []
    assert calls_of(ex) == [("local", "error", 200)]


async def test_race_commits_the_finished_lane_and_settles_the_stopped_one() -> None:
    local = FakeUpstream("local", answered("fast"))
    slow = Reply(batches=[[delta("slow")], [finish()]], usage=USAGE, gap_s=30.0)
    cerebras = FakeUpstream("cerebras", slow)
    sink = ListSink()
    ex = exchange(sink, local=local, cerebras=cerebras)

    async with asyncio.TaskGroup() as group:
        race = Race(ex, group)
        draft = race.start(Lane(local, "draft", "draft", Window(None)), NO_TICKET)
        verify = race.start(Lane(cerebras, "verify", "verify", Window(None)), NO_TICKET)
        assert await race.pump(lambda: draft.window.finished, None)
        await race.stop(verify)
        stream = await race.commit(draft)

    assert sink.text == "fast" and stream.call.status == "ok"
    assert [(c.upstream, c.role, c.status) for c in ex.record.calls] == [
        ("local", "draft", "ok"),
        ("cerebras", "verify", "cancelled"),
    ]
    assert ex.record.calls[1].estimated and ex.record.calls[1].prompt_tokens > 0


@pytest.mark.parametrize(
    ("routed", "client", "sent"),
    [
        ("off", None, "off"),
        ("default", None, "default"),
        (None, None, None),
        ("off", "default", "default"),
    ],
)
async def test_the_relay_thinks_as_the_route_says_unless_the_client_said(
    routed: ThinkingMode | None, client: ThinkingMode | None, sent: str | None
) -> None:
    local = FakeUpstream("local", Reply(refuse=http_error("local", 503)))
    cerebras = FakeUpstream("cerebras", answered("Hi"))
    ex = exchange(CollectSink(response_id="c", headers={}), local=local, cerebras=cerebras)
    ex.client_thinking = client

    await serve(ex, ["local", "cerebras"], reason="test route", thinking=routed)

    assert (local.thinking, cerebras.thinking) == ([sent], [sent]), "the fallback too"


async def test_every_lane_of_a_race_thinks_as_the_route_says() -> None:
    local, cerebras = FakeUpstream("local", answered("a")), FakeUpstream("cerebras", answered("b"))
    ex = exchange(ListSink(), local=local, cerebras=cerebras)

    async with asyncio.TaskGroup() as group:
        race = Race(ex, group, thinking="off")
        draft = race.start(Lane(local, "draft", "draft", Window(None)), NO_TICKET)
        verify = race.start(Lane(cerebras, "verify", "verify", Window(None)), NO_TICKET)
        assert await race.pump(lambda: draft.window.finished and verify.window.finished, None)
        await race.commit(draft)

    assert (local.thinking, cerebras.thinking) == (["off"], ["off"])


async def test_a_lane_cancelled_before_its_task_ran_gives_its_admission_back() -> None:
    released: list[object] = []

    class Ticket:
        def release(self, headers: Any = None) -> None:
            released.append(headers)

    local = FakeUpstream("local", answered("never"))
    ex = exchange(ListSink(), local=local)
    async with asyncio.TaskGroup() as group:
        race = Race(ex, group)
        race.start(Lane(local, "draft", "draft", Window(None)), Ticket())
        race.cancel_all()  # before the lane's task took its first step
    assert local.bodies == [] and ex.record.calls == [], "the call was never opened"
    assert released == [None]
