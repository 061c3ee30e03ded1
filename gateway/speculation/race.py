"""The upstream calls of one speculative request, each read by its own task into one queue.

A `Race` lives inside the request's `asyncio.TaskGroup`: `start()` opens a call as a task that
feeds the shared queue, `pump()` moves what arrives into the lanes' windows until the verdict can
be made, `stop()` cancels a lane (its connection closes at once, so the upstream stops generating
and billing) and waits until its tokens are settled, `commit()` replays a lane's window to the
client and follows the rest of it live. A client disconnect cancels the task group, and with it
every call of the request.

Only the request's own task (in `pump()` and `commit()`) writes to the client, so cancelling a
lane can never cut a write in half. The queue is bounded and holds one event per network read:
a client that reads slowly stops the committed lane's reads, and so the upstream, instead of
letting chunks pile up in memory; the committed lane's chunks go out one batch per write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.accounting.records import CallRole, UpstreamName
from gateway.config import ThinkingMode
from gateway.errors import UpstreamError
from gateway.quota.admission import Refusal, Ticket
from gateway.serving.exchange import Exchange
from gateway.serving.pump import pump_call
from gateway.speculation.window import Window
from gateway.upstreams import Stream, Upstream
from gateway.wire.chunk import Chunk

log = logging.getLogger("gateway.speculation")


# Events in flight across all lanes; a full queue stops the lanes' reads (backpressure).
QUEUE_EVENTS = 16


@dataclass(frozen=True, slots=True)
class _Opened:
    """The lane's upstream accepted the request (its response headers arrived)."""


@dataclass(frozen=True, slots=True)
class _Chunks:
    """The chunks of one network read, with each chunk's answer logprobs."""

    chunks: list[Chunk]
    logprobs: list[list[float]]


@dataclass(frozen=True, slots=True)
class _End:
    pass


@dataclass(frozen=True, slots=True)
class _Failed:
    error: UpstreamError


_Event = _Opened | _Chunks | _End | _Failed


def take_logprobs(chunk: dict[str, Any], *, strip: bool) -> list[float]:
    """Token logprobs of a chunk's answer content; removed from the chunk when `strip`."""
    values: list[float] = []
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        logprobs = choice.pop("logprobs", None) if strip else choice.get("logprobs")
        entries = logprobs.get("content") if isinstance(logprobs, dict) else None
        for entry in entries or ():
            value = entry.get("logprob") if isinstance(entry, dict) else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                values.append(float(value))
    return values


class Lane:
    """One upstream call of the race and its window."""

    def __init__(
        self,
        upstream: Upstream,
        role: CallRole,
        label: str,
        window: Window,
        *,
        overrides: Mapping[str, Any] | None = None,
        strip_logprobs: bool = False,
    ) -> None:
        self.upstream = upstream
        self.role = role
        self.label = label
        self.window = window
        self.overrides = dict(overrides or {})
        self.strip_logprobs = strip_logprobs
        self.stream: Stream | None = None
        self.refusal: Refusal | None = None
        self.task: asyncio.Task[None] | None = None
        self.stopped = False

    @property
    def name(self) -> UpstreamName:
        return self.upstream.name

    def __repr__(self) -> str:
        return f"<Lane {self.label}>"


class Race:
    def __init__(
        self, ex: Exchange, group: asyncio.TaskGroup, *, thinking: ThinkingMode | None = None
    ) -> None:
        """`thinking`: the route choice's thinking mode for every lane, unless the client stated
        its own (`Exchange.thinking_mode`)."""
        self.ex = ex
        self.thinking = ex.thinking_mode(thinking)
        self._group = group
        self._events: asyncio.Queue[tuple[Lane, _Event]] = asyncio.Queue(QUEUE_EVENTS)
        self.lanes: list[Lane] = []
        self._announced = False
        self._announce_at: float | None = None

    def start(self, lane: Lane, ticket: Ticket) -> Lane:
        """Open `lane`'s call in a task of the group; its admission `ticket` is released there,
        or when the task ends (a task cancelled before it ran never reaches the call)."""
        self.lanes.append(lane)
        task = self._group.create_task(self._read(lane, ticket), name=lane.label)
        task.add_done_callback(lambda _: ticket.release())
        lane.task = task
        return lane

    async def _read(self, lane: Lane, ticket: Ticket) -> None:
        ex = self.ex
        put = self._events.put
        strip = lane.strip_logprobs

        async def opened(stream: Stream) -> None:
            lane.stream = stream
            await put((lane, _Opened()))

        async def feed(batch: list[Chunk]) -> None:
            logprobs = [take_logprobs(chunk.data, strip=strip) for chunk in batch]
            await put((lane, _Chunks(batch, logprobs)))

        event: _Event
        try:
            # The ticket is released before the end waits for room in the queue.
            await pump_call(
                lane.upstream,
                ex.body,
                calls=ex.record.calls,
                ticket=ticket,
                gate=ex.gate,
                feed=feed,
                opened=opened,
                role=lane.role,
                request_id=ex.request_id,
                body_overrides=lane.overrides,
                thinking=self.thinking,
                prompt_tokens=ex.prompt_tokens,
            )
        except UpstreamError as exc:
            log.info("%s %s failed: %s", ex.request_id, lane.label, exc.message)
            event = _Failed(exc)
        else:
            event = _End()
        await put((lane, event))

    def announce_after(self, delay: float) -> None:
        """Send the role chunk after `delay` seconds at the latest, while waiting for events
        (keeps the client waiting visibly while upstreams are slow to accept)."""
        self._announce_at = asyncio.get_running_loop().time() + delay

    async def _announce(self) -> None:
        """Send the role chunk once the first upstream accepted the request.

        Not earlier: until some upstream answers, a failure can still reach the client as a
        real HTTP status (Cline reads the status for context overflow and rate limits)."""
        if not self._announced:
            self._announced = True
            await self.ex.sink.begin()

    async def _next(self, deadline: float | None) -> tuple[Lane, _Event] | None:
        """The next chunk, end or failure of a lane; None at `deadline`. Announces on the way."""
        while True:
            due = None if self._announced else self._announce_at
            announcing = due is not None and (deadline is None or due < deadline)
            try:
                async with asyncio.timeout_at(due if announcing else deadline):
                    lane, event = await self._events.get()
            except TimeoutError:
                if not announcing:
                    return None
                await self._announce()
                continue
            if not isinstance(event, _Opened):
                return lane, event
            if not lane.stopped:
                await self._announce()

    @staticmethod
    def _absorb(lane: Lane, event: _Event) -> None:
        window = lane.window
        if isinstance(event, _Chunks):
            for chunk, logprobs in zip(event.chunks, event.logprobs, strict=True):
                window.add(chunk, logprobs)
        elif isinstance(event, _End):
            window.finished = True
        elif isinstance(event, _Failed):
            window.error = event.error

    async def pump(self, until: Callable[[], bool], deadline: float | None) -> bool:
        """Move arriving chunks into windows until `until()` holds (True) or `deadline` (False;
        None: no deadline, the calls' own timeouts end them)."""
        while not until():
            item = await self._next(deadline)
            if item is None:
                return until()
            lane, event = item
            if not lane.stopped:
                self._absorb(lane, event)
        return True

    async def stop(self, lane: Lane) -> None:
        """Cancel `lane` now and wait until its call is settled (tokens counted)."""
        lane.stopped = True
        task = lane.task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})

    async def stop_all(self, *, keep: Lane | None = None) -> None:
        for lane in self.lanes:
            if lane is not keep:
                await self.stop(lane)

    def cancel_all(self) -> None:
        """Cancel every lane without waiting (the task group waits for them)."""
        for lane in self.lanes:
            lane.stopped = True
            if lane.task is not None:
                lane.task.cancel()

    async def commit(self, lane: Lane) -> Stream:
        """Send `lane`'s window to the client, then the rest of its stream as it arrives.

        Returns the finished stream; raises the lane's UpstreamError if it failed.
        """
        sink = self.ex.sink
        sink.model_used = lane.name
        window = lane.window
        await sink.emit_many(list(window.chunks))  # the buffered window, in one write
        while not window.finished and window.error is None:
            item = await self._next(None)
            assert item is not None, "no deadline"
            source, event = item
            if source is not lane:
                continue
            if isinstance(event, _Chunks):
                await sink.emit_many(event.chunks)
            else:
                self._absorb(lane, event)
        if window.error is not None:
            raise window.error
        assert lane.stream is not None, "a finished lane has its stream"
        return lane.stream
