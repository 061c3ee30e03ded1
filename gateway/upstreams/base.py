"""The OpenAI-compatible upstream that llama.cpp and Cerebras share: one call's request,
its no-thinking handling, and its settlement; provider quirks are hooks overridden per provider.

An upstream turns a client's chat request into one streamed HTTP call and yields normalised
chunks (gateway.upstreams.stream). Internally every call streams (a non-stream client gets the
stream assembled), so timeouts, cancellation and token accounting work the same on every path.

A stream that is read is owned: `open_stream()` is an async context manager, and leaving it before
the upstream finished closes the connection at once (llama.cpp stops generating, Cerebras stops
billing completion tokens).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from gateway.accounting.ratio import CharsPerToken
from gateway.accounting.records import CallRole, UpstreamCall, UpstreamName
from gateway.accounting.tokens import PromptMemo, once
from gateway.config import ModelConfig
from gateway.errors import (
    CONTEXT_LENGTH_EXCEEDED,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamTimeout,
)
from gateway.ratelimit import RateLimitWatcher
from gateway.upstreams import client, errors
from gateway.upstreams.billing import Opening, bill_unanswered, settled_on_exit
from gateway.upstreams.client import request_timeout
from gateway.upstreams.health import (
    Health,
    JsonReply,
    Probed,
    get_json,
    health_from_status,
    probe,
)
from gateway.upstreams.lean import LeanPool, lean_target
from gateway.upstreams.response import UpstreamResponse
from gateway.upstreams.stream import UpstreamStream

log = logging.getLogger("gateway.upstream")

# Client fields that are the gateway's business, never an upstream's.
_GATEWAY_FIELDS = ("stream", "stream_options", "model")
# Fields by which a client states its own reasoning wishes (OpenAI, Cerebras, Z.ai, OpenRouter,
# llama.cpp); when one is present the gateway's thinking control leaves the request alone.
CLIENT_REASONING_FIELDS = (
    "reasoning_effort",
    "disable_reasoning",
    "thinking",
    "reasoning",
    "reasoning_budget",
    "thinking_budget",
    "enable_thinking",
)
_TEMPLATE_REASONING_KEYS = ("enable_thinking", "thinking", "reasoning_effort")
# Statuses with which an upstream refuses a parameter it does not know.
_PARAMETER_REFUSALS = (400, 422)


def streamed_body(client_body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The upstream request: the client's fields untouched, except those the gateway owns (it
    always streams, with usage, from `model`)."""
    body = {k: v for k, v in client_body.items() if k not in _GATEWAY_FIELDS}
    body["model"] = model
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    return body


def client_sets_reasoning(body: Mapping[str, Any]) -> bool:
    """Whether the client's request carries a reasoning parameter of its own."""
    if any(body.get(name) is not None for name in CLIENT_REASONING_FIELDS):
        return True
    kwargs = body.get("chat_template_kwargs")
    return isinstance(kwargs, Mapping) and any(
        kwargs.get(name) is not None for name in _TEMPLATE_REASONING_KEYS
    )


class OpenAICompatibleUpstream:
    """An OpenAI-compatible chat-completions server. Subclasses hold one provider's quirks.

    Its streamed calls go through `pool` (gateway.upstreams.lean) when one is given and the
    endpoint is plain http; through the aiohttp `session` otherwise (https, tests that mock
    aiohttp). Probes and other one-off calls always use the session."""

    name: UpstreamName

    def __init__(
        self,
        name: UpstreamName,
        config: ModelConfig,
        session: aiohttp.ClientSession,
        *,
        max_event_bytes: int = 8 * 1024 * 1024,
        watcher: RateLimitWatcher | None = None,
        pool: LeanPool | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.session = session
        target = lean_target(config.chat_url) if pool is not None else None
        self._lean = (pool, target) if pool is not None and target is not None else None
        self.max_event_bytes = max_event_bytes
        self.watcher = watcher or RateLimitWatcher(name)
        self._timeout = request_timeout(config)
        # False once this upstream refused its no-thinking parameter (kept for the process).
        self.no_think_accepted = True
        # Learned from this upstream's reported usage; estimates its unreported prompts.
        self.chars_per_token = CharsPerToken()
        # What its server does with kept-alive connections (with retries_stale_connections).
        self.reuse = client.ConnectionReuse()
        self._pooling_given_up = False

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    # --- provider quirks (overridden per upstream) -------------------------------------------

    def build_body(self, client_body: Mapping[str, Any]) -> dict[str, Any]:
        return streamed_body(client_body, self.config.model)

    def headers(self) -> dict[str, str]:
        """Request headers: this upstream's own key only; nothing of the client's is forwarded."""
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if not self.reuse_connections or not self.reuse.worth_pooling:
            headers["Connection"] = "close"  # aiohttp then keeps no pooled connection either
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def precheck(self) -> UpstreamError | None:
        """An error to raise without any network call (e.g. no API key), else None."""
        return None

    # False: every call asks for `Connection: close`, so no connection is pooled (a provider
    # whose server drops kept-alive connections).
    reuse_connections: bool = True

    # True: a call that went out on a pooled connection the server had already closed (it fails
    # before any byte of a response) is sent once more on a new one (gateway.upstreams.client);
    # a server that keeps no connection at all then gets `Connection: close` after a few such
    # calls. Only for a server where a repeated request can cost no money.
    retries_stale_connections: bool = False

    # Whether the server continues a trailing assistant message (assistant prefill), so that a
    # stream broken elsewhere can be finished here; and whether its stream then starts by
    # repeating that prefill (gateway.serving.continuation strips it, after checking).
    continues_prefill: bool = False
    echoes_prefill: bool = False

    # Parameter names that an upstream's refusal of the no-thinking parameter would mention.
    no_think_names: tuple[str, ...] = ()

    def add_no_think(self, body: dict[str, Any]) -> bool:
        """Add this upstream's own "do not think" parameter to `body`; False when it has none
        (a plain OpenAI-compatible server has no documented one)."""
        return False

    def refuses_no_think(self, error: UpstreamError) -> bool:
        """Whether `error` (before any content) is this upstream refusing the parameter."""
        if not isinstance(error, UpstreamHTTPError) or error.status not in _PARAMETER_REFUSALS:
            return False
        text = " ".join(str(part) for part in (error.message, error.param, error.code) if part)
        return any(name in text for name in self.no_think_names)

    def normalize_chunk(self, chunk: dict[str, Any], stream: UpstreamStream) -> None:
        """Rewrite one parsed chunk into the client dialect, in place."""

    def error_from_body(self, status: int, payload: Any) -> dict[str, Any]:
        """The error object of a non-2xx body, whatever shape the upstream used."""
        return errors.error_object(self.name, status, payload)

    def context_overflow(self, error: Mapping[str, Any]) -> bool:
        """Whether an error object this upstream sent says the prompt does not fit its context
        (OpenAI's code here; each upstream's module knows its own wording)."""
        return error.get("code") == CONTEXT_LENGTH_EXCEEDED

    def may_fall_back(self, status: int, error: Mapping[str, Any]) -> bool:
        """Whether another upstream may serve a request this one refused with `status`."""
        return errors.may_fall_back(status)

    # --- calls ----------------------------------------------------------------------------------

    def open_stream(
        self,
        client_body: Mapping[str, Any],
        *,
        role: CallRole = "answer",
        request_id: str | None = None,
        body_overrides: Mapping[str, Any] | None = None,
        thinking: str | None = None,
        prompt_tokens: PromptMemo | None = None,
    ) -> Opening[UpstreamStream]:
        """The call, ready to send: entering POSTs the request and yields the open stream, or
        raises an UpstreamError before that.

        The returned Opening's `call` is settled on exit: `ok` when the stream finished, the
        error's status when it failed, `cancelled` when the caller left early (tokens streamed
        so far are then billed as reported or estimated).

        `thinking="off"` adds this upstream's no-thinking parameter unless the client set a
        reasoning parameter of its own. If the upstream refuses it (400/422 naming it, so before
        any content), the call is repeated once without it and the parameter is not sent to this
        upstream again.

        `prompt_tokens` is the caller's memo of the client body's prompt size; the built body
        keeps the client's messages and tools, so it holds unless `body_overrides` replace them.
        """
        body = self.build_body(client_body)
        if body_overrides:
            body.update(body_overrides)
        if prompt_tokens is None or (
            body_overrides and ("messages" in body_overrides or "tools" in body_overrides)
        ):
            prompt_tokens = once(body)
        plain_body = dict(body)
        no_think = (
            thinking == "off"
            and self.no_think_accepted
            and not client_sets_reasoning(client_body)
            and self.add_no_think(body)
        )
        headers = self.headers()
        if request_id:
            headers["X-Request-Id"] = request_id
        call = UpstreamCall(upstream=self.name, role=role, thinking_off=no_think)
        sending = self._send(call, body, plain_body, headers, prompt_tokens)
        return Opening(call, sending)

    @asynccontextmanager
    async def _send(
        self,
        call: UpstreamCall,
        body: dict[str, Any],
        plain_body: dict[str, Any],
        headers: dict[str, str],
        prompt_tokens: PromptMemo,
    ) -> AsyncIterator[UpstreamStream]:
        """POST `body` (`plain_body` again when the no-thinking parameter is refused) and yield
        the open stream; `call` is tagged with how it ended."""
        no_think = call.thinking_off
        refused = self.precheck()
        if refused is not None:
            raise errors.tag(refused, call)
        loop = asyncio.get_running_loop()
        first_deadline = loop.time() + self.config.timeouts.first_token
        response: UpstreamResponse | None = None
        finished = False
        try:
            try:
                async with asyncio.timeout_at(first_deadline):
                    response = await self._post(body, headers)
                    if response.status != 200 and no_think:
                        refusal = await self._http_error(response, call)
                        if not self.refuses_no_think(refusal):
                            raise refusal
                        self._forget_no_think(refusal)
                        response.release()
                        response = None
                        body, no_think = plain_body, False
                        call.thinking_off, call.status, call.error = False, "ok", None
                        response = await self._post(body, headers)
                    if response.status != 200:
                        raise await self._http_error(response, call)
            except asyncio.CancelledError:
                # Also while an error body was being read: the call did not end as ok.
                if response is None or response.status == 200:
                    bill_unanswered(call, prompt_tokens, self.chars_per_token)
                else:
                    call.status = "cancelled"
                    call.http_status = response.status
                raise
            except TimeoutError:
                raise errors.tag(
                    UpstreamTimeout(
                        self.name,
                        f"{self.name}: no response within {self.config.timeouts.first_token:g}s",
                    ),
                    call,
                ) from None
            except (aiohttp.ClientError, OSError) as exc:
                raise errors.tag(errors.connect_error(self.name, exc), call) from None
            call.http_status = response.status
            stream = UpstreamStream(self, response, call, prompt_tokens, first_deadline)
            async with settled_on_exit(stream):
                yield stream
            finished = stream.finished
        finally:
            if response is not None:
                if finished and stream.fully_read:
                    response.release()
                else:
                    response.close()

    async def _post(self, body: Mapping[str, Any], headers: Mapping[str, str]) -> UpstreamResponse:
        response: UpstreamResponse
        if self._lean is not None:
            pool, target = self._lean
            response = await pool.post(
                target,
                orjson.dumps(body),
                headers,
                connect_timeout=self.config.timeouts.connect,
                retry_stale=self.retries_stale_connections,
                reuse=self.reuse,
            )
        else:
            response = await client.post(
                self.session,
                self.config.chat_url,
                orjson.dumps(body),
                headers,
                self._timeout,
                retry_stale=self.retries_stale_connections,
                reuse=self.reuse,
            )
        if not self._pooling_given_up and not self.reuse.worth_pooling:
            self._pooling_given_up = True
            log.info(
                "%s closed %d pooled connections and answered on none: each call now asks for "
                "a new connection",
                self.name,
                self.reuse.stale,
            )
        self.watcher.observe(response.headers)
        return response

    def _forget_no_think(self, error: UpstreamError) -> None:
        """Stop sending the refused parameter to this upstream; log that once."""
        if self.no_think_accepted:
            self.no_think_accepted = False
            log.warning(
                "%s refused its no-thinking parameter (%s); retrying without it, and it is not "
                "sent to %s again until restart",
                self.name,
                error.message,
                self.name,
            )

    async def _http_error(self, response: UpstreamResponse, call: UpstreamCall) -> UpstreamError:
        status = response.status
        error = self.error_from_body(status, await errors.read_error_body(response))
        call.http_status = status
        exc = errors.http_error(
            self.name,
            status,
            error,
            retry_after=self.watcher.retry_after() if status == 429 else None,
            fallback_ok=self.may_fall_back(status, error),
        )
        if self.context_overflow(error):
            exc.condition = CONTEXT_LENGTH_EXCEEDED
        return errors.tag(exc, call)

    async def health(self) -> Health:
        """Probe the upstream; never raises."""
        if not self.enabled:
            return Health("disabled")
        probed = await probe(
            self.session,
            self.health_url(),
            self.probe_headers(),
            timeout=min(5.0, self.config.timeouts.connect + 2),
            request_timeout=self._timeout,
        )
        return probed if isinstance(probed, Health) else self.health_from(probed)

    async def count_tokens(self, client_body: Mapping[str, Any], timeout: float) -> int | None:
        """None: an OpenAI-compatible API has no tokenizer endpoint (llama.cpp overrides)."""
        del client_body, timeout
        return None

    async def get_json(self, url: str, timeout: float) -> JsonReply | None:
        return await get_json(self.session, url, self.probe_headers(), timeout)

    def health_url(self) -> str:
        return self.config.endpoint + "/models"

    def probe_headers(self) -> dict[str, str]:
        if self.config.api_key:
            return {"Authorization": f"Bearer {self.config.api_key}"}
        return {}

    def health_from(self, probed: Probed) -> Health:
        """The state a probe's answer tells (a provider reads its own health body)."""
        return health_from_status(probed)
