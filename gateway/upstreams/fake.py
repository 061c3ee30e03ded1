"""An in-process upstream for unit tests: scripted chunks, errors and headers, no socket.

Like httpx's MockTransport, `FakeUpstream` implements the same protocol as the real upstreams
(gateway.upstreams.protocol.Upstream), so relay, continuation and race logic can be tested without
a server. Its calls are recorded and billed by the same code as a real call's: chunks are read
by gateway.wire.chunk.read_chunk and settled by gateway.upstreams.billing. The simulators in
gateway.dev.sim stay for tests of the network itself (timeouts, cut connections, keep-alive).

    local = FakeUpstream("local", Reply(batches=[[delta("Hel"), delta("lo")], [finish()]]))
    cerebras = FakeUpstream("cerebras", Reply(refuse=http_error("cerebras", 503)))
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.accounting.ratio import CharsPerToken
from gateway.accounting.records import CallRole, UpstreamCall, UpstreamName
from gateway.accounting.tokens import PromptMemo, once
from gateway.config import ModelConfig
from gateway.errors import UpstreamError, UpstreamHTTPError
from gateway.ratelimit import RateLimitWatcher
from gateway.upstreams.base import streamed_body
from gateway.upstreams.billing import Opening, Tally, bill, bill_unanswered, settled_on_exit
from gateway.upstreams.errors import error_object, may_fall_back, tag
from gateway.upstreams.health import Health, JsonReply
from gateway.upstreams.protocol import Upstream
from gateway.upstreams.stream import ChunkStream
from gateway.wire.chunk import Chunk, read_chunk


@dataclass(slots=True)
class Reply:
    """How one call goes. `refuse`: raised before the stream opens (an HTTP error, no key).
    Otherwise the stream yields `batches` (each one network read of chunk dicts), waiting
    `gap_s` before each, then raises `error` if set, else ends (`done`: with `[DONE]`).
    `usage` is the upstream's reported usage (None: the call is billed by estimate). A Reply
    used for several calls raises the same error instances each time."""

    batches: Sequence[Sequence[dict[str, Any]]] = ()
    error: UpstreamError | None = None
    refuse: UpstreamError | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    usage: dict[str, Any] | None = None
    done: bool = True
    gap_s: float = 0.0


def delta(content: str = "", *, reasoning: str = "", index: int = 0) -> dict[str, Any]:
    """A chunk dict with one choice whose delta carries `content` and/or `reasoning`."""
    body: dict[str, Any] = {}
    if content:
        body["content"] = content
    if reasoning:
        body["reasoning_content"] = reasoning
    return {"choices": [{"index": index, "delta": body, "finish_reason": None}]}


def finish(reason: str = "stop", *, index: int = 0) -> dict[str, Any]:
    """The chunk dict that ends a choice."""
    return {"choices": [{"index": index, "delta": {}, "finish_reason": reason}]}


def http_error(name: str, status: int, message: str = "") -> UpstreamHTTPError:
    """The error a real upstream raises for a refusal with `status` (fallback as it decides)."""
    error = error_object(name, status, {"message": message} if message else None)
    return UpstreamHTTPError(name, status, error, fallback_ok=may_fall_back(status))


class FakeStream(ChunkStream):
    """One scripted call's open stream (gateway.upstreams.protocol.Stream)."""

    def __init__(
        self, reply: Reply, call: UpstreamCall, prompt_tokens: PromptMemo, ratio: CharsPerToken
    ) -> None:
        self.reply = reply
        self.call = call
        self.usage: dict[str, Any] | None = None
        self.extras: dict[str, Any] = {}
        self.tally = Tally()
        self.finish_reasons: dict[int, str] = {}
        self.saw_done = False
        self._prompt_tokens = prompt_tokens
        self._ratio = ratio

    @property
    def headers(self) -> Mapping[str, str]:
        return self.reply.headers

    @property
    def finished(self) -> bool:
        return self.saw_done or bool(self.finish_reasons)

    async def batches(self) -> AsyncIterator[list[Chunk]]:
        reply = self.reply
        for scripted in reply.batches:
            if reply.gap_s:
                await asyncio.sleep(reply.gap_s)
            batch = [read_chunk(copy.deepcopy(data)) for data in scripted]
            for chunk in batch:
                self.tally.add(chunk)
                self.finish_reasons.update(chunk.finish)
            yield batch
        if reply.error is not None:
            raise reply.error
        self.usage = reply.usage
        self.saw_done = reply.done

    def settle(self, status: str) -> UpstreamCall:
        return bill(self.call, status, self.usage, self.tally, self._prompt_tokens, self._ratio)

    async def collect_arrived(self) -> None:
        """Nothing is in flight in a scripted reply."""


class FakeUpstream:
    """An upstream that answers each call with the next scripted `Reply` (the last one repeats).

    `bodies` holds each request body as the upstream would have been sent it; `roles` each
    call's role; `thinking` each call's thinking mode (the fake sends no parameter for it)."""

    def __init__(
        self,
        name: UpstreamName,
        *replies: Reply,
        enabled: bool = True,
        continues_prefill: bool = False,
        echoes_prefill: bool = False,
        health: Health | None = None,
    ) -> None:
        if not replies:
            raise ValueError("a FakeUpstream needs at least one Reply")
        self.name = name
        # `kind` is a config choice; the fake answers like a plain OpenAI-compatible server.
        self.config = ModelConfig(
            name=name, kind="openai", enabled=enabled, endpoint="fake://" + name, model=name
        )
        self.watcher = RateLimitWatcher(name)
        self.chars_per_token = CharsPerToken()
        self.continues_prefill = continues_prefill
        self.echoes_prefill = echoes_prefill
        self.replies = list(replies)
        self.bodies: list[dict[str, Any]] = []
        self.roles: list[CallRole] = []
        self.thinking: list[str | None] = []
        self._health = health or Health("ok")

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def build_body(self, client_body: Mapping[str, Any]) -> dict[str, Any]:
        return streamed_body(client_body, self.config.model)

    def precheck(self) -> UpstreamError | None:
        return None

    def open_stream(
        self,
        client_body: Mapping[str, Any],
        *,
        role: CallRole = "answer",
        request_id: str | None = None,
        body_overrides: Mapping[str, Any] | None = None,
        thinking: str | None = None,
        prompt_tokens: PromptMemo | None = None,
    ) -> Opening[FakeStream]:
        body = self.build_body(client_body)
        if body_overrides:
            body.update(body_overrides)
        self.bodies.append(body)
        self.roles.append(role)
        self.thinking.append(thinking)
        reply = self.replies[0] if len(self.replies) == 1 else self.replies.pop(0)
        estimate = prompt_tokens if prompt_tokens is not None and not body_overrides else once(body)
        call = UpstreamCall(upstream=self.name, role=role)
        return Opening(call, self._send(call, reply, estimate))

    @asynccontextmanager
    async def _send(
        self, call: UpstreamCall, reply: Reply, estimate: PromptMemo
    ) -> AsyncIterator[FakeStream]:
        try:
            await asyncio.sleep(0)  # a real call yields to the loop before its headers arrive
        except asyncio.CancelledError:
            bill_unanswered(call, estimate, self.chars_per_token)
            raise
        refusal = reply.refuse
        if refusal is not None:
            if isinstance(refusal, UpstreamHTTPError):
                call.http_status = refusal.status
            raise tag(refusal, call)
        self.watcher.observe(reply.headers)
        call.http_status = 200
        stream = FakeStream(reply, call, estimate, self.chars_per_token)
        async with settled_on_exit(stream):
            yield stream

    async def health(self) -> Health:
        return self._health if self.enabled else Health("disabled")

    def health_url(self) -> str:
        return self.config.endpoint + "/health"

    async def get_json(self, url: str, timeout: float) -> JsonReply | None:
        """Nothing answers: a fake upstream has no read-only endpoints."""
        return None

    async def count_tokens(self, client_body: Mapping[str, Any], timeout: float) -> int | None:
        """None: a fake upstream has no tokenizer."""
        return None


if TYPE_CHECKING:  # mypy checks here that the fake keeps to the protocol the callers use
    _CONFORMS: Upstream = FakeUpstream("local", Reply())
