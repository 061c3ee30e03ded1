"""What one upstream call is billed for: the upstream's reported usage, else an estimate.

The estimates (a cancelled or cut call reports no usage): the prompt from the request body's size
at the upstream's learned characters per token (gateway.accounting.ratio), the completion from
the characters streamed at its learned characters per completion token, at least one token per
streamed event. A completed call's reported usage teaches both ratios.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from gateway.accounting.ratio import CharsPerToken
from gateway.accounting.records import UpstreamCall
from gateway.accounting.tokens import PromptMemo
from gateway.errors import UpstreamError
from gateway.upstreams.errors import tag
from gateway.wire.chunk import Chunk

S_co = TypeVar("S_co", covariant=True)


class Opening(Generic[S_co]):
    """One upstream call as its caller receives it, before it is sent.

    `call` is what the call is billed for, from the start: the caller adds it to its own record
    (a call cancelled before its response headers is billed too). Entering sends the request and
    yields the open stream, or raises an UpstreamError carrying `call` (`failed_call`); the call
    is settled when the block exits. The upstream never writes into the caller's record."""

    __slots__ = ("call", "_context")

    def __init__(self, call: UpstreamCall, context: AbstractAsyncContextManager[S_co]) -> None:
        self.call = call
        self._context = context

    async def __aenter__(self) -> S_co:
        return await self._context.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._context.__aexit__(exc_type, exc, tb)


@dataclass(slots=True)
class Tally:
    """Characters and content-bearing events streamed so far, from each chunk's facts."""

    content_chars: int = 0
    content_events: int = 0
    reasoning_chars: int = 0
    reasoning_events: int = 0

    def add(self, chunk: Chunk) -> None:
        if chunk.chars:
            self.content_chars += chunk.chars
            self.content_events += chunk.char_events
        if chunk.reasoning_chars:
            self.reasoning_chars += chunk.reasoning_chars
            self.reasoning_events += chunk.reasoning_events


def bill(
    call: UpstreamCall,
    status: str,
    usage: dict[str, Any] | None,
    tally: Tally,
    prompt: PromptMemo,
    ratio: CharsPerToken,
) -> UpstreamCall:
    """Fill `call` with its end `status` and billed tokens: `usage` as reported (a completed
    call's also teaches `ratio`), or estimated from the prompt at `ratio` and the `tally` of what
    was streamed."""
    call.status = status  # type: ignore[assignment]
    if usage is not None:
        call.prompt_tokens = _int(usage.get("prompt_tokens"))
        call.completion_tokens = _int(usage.get("completion_tokens"))
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict):
            call.cached_tokens = _int(details.get("cached_tokens"))
        call.estimated = False
        if status == "ok":
            ratio.learn(prompt, call.prompt_tokens)
            ratio.learn_completion(tally.content_chars, call.completion_tokens)
    else:
        call.prompt_tokens = ratio.prompt_tokens(prompt.size())
        call.completion_tokens = ratio.completion_tokens(tally.content_chars, tally.content_events)
        call.estimated = True
    call.reasoning_tokens = _reasoning_tokens(usage, tally, call.completion_tokens, ratio)
    return call


class Billable(Protocol):
    """An open stream as its settlement sees it."""

    @property
    def call(self) -> UpstreamCall: ...

    @property
    def finished(self) -> bool:
        """The upstream ended the answer (`[DONE]` or a finish_reason)."""
        ...

    def settle(self, status: str) -> UpstreamCall: ...

    async def collect_arrived(self) -> None:
        """Take in what the upstream already sent, before a call left early is settled."""
        ...


@asynccontextmanager
async def settled_on_exit(stream: Billable) -> AsyncIterator[None]:
    """Settle `stream`'s call when the block exits: `ok` when the upstream finished the answer,
    the error's status when an UpstreamError ends it (tagged onto the call), else `cancelled`
    (the caller left early; what the upstream already sent is taken in first, see
    `collect_arrived`). An error the call already carries is kept."""
    status = "cancelled"
    call = stream.call
    try:
        yield
        status = "ok" if stream.finished else "cancelled"
    except UpstreamError as exc:
        status = exc.call_status
        raise tag(exc, call) from exc.__cause__
    finally:
        error = call.error
        try:
            if status == "cancelled":
                await stream.collect_arrived()
        finally:  # settled even if cancelled again while collecting
            stream.settle(status)
            call.error = error


def bill_unanswered(call: UpstreamCall, prompt: PromptMemo, ratio: CharsPerToken) -> None:
    """A call cancelled before its response headers: the prompt may already be processed and
    billed, so it is estimated at the learned ratio."""
    call.status = "cancelled"
    call.prompt_tokens = ratio.prompt_tokens(prompt.size())
    call.estimated = True


def _reasoning_tokens(
    usage: dict[str, Any] | None, tally: Tally, completion_tokens: int, ratio: CharsPerToken
) -> int:
    """The upstream's reasoning_tokens when its usage has them, else estimated from the
    streamed reasoning text; never more than the completion."""
    details = (usage or {}).get("completion_tokens_details")
    reported = details.get("reasoning_tokens") if isinstance(details, dict) else None
    if isinstance(reported, int) and not isinstance(reported, bool) and reported >= 0:
        return min(reported, completion_tokens)
    if not tally.reasoning_chars:
        return 0
    estimate = ratio.completion_tokens(tally.reasoning_chars, tally.reasoning_events)
    return min(estimate, completion_tokens)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
