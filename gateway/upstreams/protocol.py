"""What callers see of an upstream: open a stream for a body and a role, and a health check.

`Upstream` is implemented by the real OpenAI-compatible upstreams (gateway.upstreams.base and
one module per provider) and by the in-process fake (gateway.upstreams.fake) that unit tests
use without a socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from gateway.accounting.ratio import CharsPerToken
from gateway.accounting.records import CallRole, UpstreamCall, UpstreamName
from gateway.accounting.tokens import PromptMemo
from gateway.config import ModelConfig
from gateway.errors import UpstreamError
from gateway.ratelimit import RateLimitWatcher
from gateway.upstreams.billing import Opening
from gateway.upstreams.health import Health, JsonReply
from gateway.wire.chunk import Chunk


class Stream(Protocol):
    """One open streamed call. `batches()` yields the chunks of each network read; iterating
    yields them one by one. When the stream ends, `usage` is what the upstream reported (None:
    nothing), `call` what the call is billed for (settled when the stream's context exits) and
    `extras` the provider's side data (llama.cpp `timings`, Cerebras `time_info`)."""

    @property
    def headers(self) -> Mapping[str, str]:
        """The upstream's response headers."""
        ...

    @property
    def usage(self) -> dict[str, Any] | None: ...

    @property
    def call(self) -> UpstreamCall: ...

    @property
    def extras(self) -> dict[str, Any]: ...

    def batches(self) -> AsyncIterator[list[Chunk]]: ...

    def __aiter__(self) -> AsyncIterator[Chunk]: ...


class Upstream(Protocol):
    """One upstream as its callers use it."""

    @property
    def name(self) -> UpstreamName: ...

    @property
    def config(self) -> ModelConfig: ...

    @property
    def enabled(self) -> bool: ...

    # What this upstream's response headers said about its rate limits (an attribute, as
    # the rate-limit gate's own protocol declares it).
    watcher: RateLimitWatcher
    # Characters per token learned from its reported usage; estimates its unreported prompts.
    chars_per_token: CharsPerToken

    @property
    def continues_prefill(self) -> bool:
        """Whether it continues a trailing assistant message (gateway.serving.continuation)."""
        ...

    @property
    def echoes_prefill(self) -> bool:
        """Whether its continuation starts by repeating that prefill."""
        ...

    def build_body(self, client_body: Mapping[str, Any]) -> dict[str, Any]:
        """The request body this upstream would be sent for `client_body`."""
        ...

    def precheck(self) -> UpstreamError | None:
        """The error a call would fail with before any network traffic (no API key), else None."""
        ...

    def open_stream(
        self,
        client_body: Mapping[str, Any],
        *,
        role: CallRole = "answer",
        request_id: str | None = None,
        body_overrides: Mapping[str, Any] | None = None,
        thinking: str | None = None,
        prompt_tokens: PromptMemo | None = None,
    ) -> Opening[Stream]:
        """The call, ready to send; entering sends it and yields the open stream or raises an
        UpstreamError (carrying the call).

        The Opening's `call` is the caller's to record, from the start; it is settled on exit:
        `ok` when the stream finished, the error's status when it failed, `cancelled` when the
        caller left early."""
        ...

    async def health(self) -> Health:
        """Probe the upstream; never raises."""
        ...

    def health_url(self) -> str: ...

    async def get_json(self, url: str, timeout: float) -> JsonReply | None:
        """GET one of this upstream's read-only endpoints with its key; None when nothing
        answers within `timeout` seconds. Never raises."""
        ...

    async def count_tokens(self, client_body: Mapping[str, Any], timeout: float) -> int | None:
        """The prompt tokens of `client_body` as this upstream's own tokenizer counts them;
        None when it cannot tell (no tokenizer endpoint, no answer within `timeout`). Never
        raises."""
        ...
