"""The upstream interface and the OpenAI-compatible base that llama.cpp and Cerebras share.

An upstream turns a client's chat request into one streamed HTTP call and yields normalised chunk
dicts. Internally every call streams (a non-stream client gets the stream assembled), so timeouts,
cancellation and token accounting work the same on every path.

A stream that is read is owned: `open_stream()` is an async context manager, and leaving it before
the upstream finished closes the connection at once (llama.cpp stops generating, Cerebras stops
billing completion tokens).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from gateway.accounting.ratio import CharsPerToken
from gateway.accounting.records import CallRole, UpstreamCall, UpstreamName
from gateway.accounting.tokens import PromptMemo, estimate_completion_tokens, once
from gateway.config import ModelConfig
from gateway.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamStreamError,
    UpstreamTimeout,
)
from gateway.ratelimit import RateLimitWatcher
from gateway.wire.sse import DONE, EventTooLarge, SSEDecoder

log = logging.getLogger("gateway.upstream")

_MAX_ERROR_BODY = 64 * 1024
# How long to wait for the end of the HTTP body after `[DONE]` before closing the connection.
_TAIL_WAIT_S = 0.05
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


def client_sets_reasoning(body: Mapping[str, Any]) -> bool:
    """Whether the client's request carries a reasoning parameter of its own."""
    if any(body.get(name) is not None for name in CLIENT_REASONING_FIELDS):
        return True
    kwargs = body.get("chat_template_kwargs")
    return isinstance(kwargs, Mapping) and any(
        kwargs.get(name) is not None for name in _TEMPLATE_REASONING_KEYS
    )


@dataclass(slots=True)
class Health:
    """`state`: ok | loading | down | unauthorized | disabled | no_api_key."""

    state: str
    detail: str = ""
    latency_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state}
        if self.detail:
            out["detail"] = self.detail
        if self.latency_ms is not None:
            out["latency_ms"] = round(self.latency_ms, 2)
        return out


class UpstreamStream:
    """An open streamed call. Iterating yields normalised chunk dicts (usage chunks excluded).

    After iteration, `usage`, `finish_reasons` and `saw_done` tell how it ended, and `call` holds
    what the call was billed for (estimated when no usage arrived).
    """

    def __init__(
        self,
        upstream: OpenAICompatibleUpstream,
        response: aiohttp.ClientResponse,
        call: UpstreamCall,
        prompt_tokens: PromptMemo,
        first_deadline: float,
    ) -> None:
        self.upstream = upstream
        self.response = response
        self.call = call
        self.usage: dict[str, Any] | None = None
        self.finish_reasons: dict[int, str] = {}
        self.saw_done = False
        self.content_chars = 0
        self.content_events = 0
        self.reasoning_chars = 0
        self.reasoning_events = 0
        self.first_event_at: float | None = None
        self.extras: dict[str, Any] = {}
        self._prompt_tokens = prompt_tokens
        self._first_deadline = first_deadline
        self._decoder = SSEDecoder(upstream.max_event_bytes)

    @property
    def name(self) -> UpstreamName:
        return self.upstream.name

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[dict[str, Any]]:
        async for batch in self.batches():
            for chunk in batch:
                yield chunk

    async def batches(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The chunks of each network read together, so a relay can write them in one go.

        Chunks parsed before a broken event of the same read are still delivered first."""
        upstream = self.upstream
        decoder = self._decoder
        content = self.response.content
        idle = upstream.config.timeouts.idle
        deadline: float | None = self._first_deadline
        loop = asyncio.get_running_loop()
        while True:
            try:
                # What already arrived needs no timer; only a read that waits gets one.
                data = content.read_nowait()
                if not data:
                    async with asyncio.timeout_at(deadline):
                        data = await content.readany()
            except TimeoutError:
                if self.first_event_at is None:
                    raise UpstreamTimeout(
                        upstream.name,
                        f"{upstream.name}: no first token within "
                        f"{upstream.config.timeouts.first_token:g}s",
                    ) from None
                raise UpstreamTimeout(
                    upstream.name, f"{upstream.name}: stream idle for more than {idle:g}s"
                ) from None
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError) as exc:
                raise UpstreamProtocolError(
                    upstream.name,
                    f"{upstream.name}: connection lost mid-stream ({type(exc).__name__})",
                ) from None
            try:
                payloads = decoder.feed(data) if data else decoder.close()
            except EventTooLarge as exc:
                raise UpstreamProtocolError(upstream.name, f"{upstream.name}: {exc}") from None
            batch: list[dict[str, Any]] = []
            failure: UpstreamError | None = None
            for payload in payloads:
                if payload == DONE:
                    self.saw_done = True
                    break
                try:
                    chunk = self._parse(payload)
                except UpstreamError as exc:
                    failure = exc
                    break
                if self.first_event_at is None:
                    self.first_event_at = time.monotonic()
                if chunk is not None:
                    batch.append(chunk)
            if batch:
                yield batch
            if failure is not None:
                raise failure
            if self.saw_done:
                await self._read_tail()
                return
            if not data:
                if self.finish_reasons:
                    return  # complete answer; only the [DONE] marker is missing
                raise UpstreamProtocolError(
                    upstream.name, f"{upstream.name}: stream ended before the answer was complete"
                )
            if self.first_event_at is not None:
                deadline = loop.time() + idle

    async def _read_tail(self) -> None:
        """Read what follows `[DONE]` (the chunked terminator), briefly.

        Only a body read to its end can go back to the pool (a keep-alive connection to Cerebras
        saves a TLS handshake on the next request); if the tail does not come at once, the caller
        closes the connection instead.
        """
        content = self.response.content
        try:
            while not content.at_eof() and content.read_nowait():
                pass  # the tail usually came with [DONE]: no timer for it
            if content.at_eof():
                return
            async with asyncio.timeout(_TAIL_WAIT_S):
                while not content.at_eof() and await content.readany():
                    pass
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass

    @property
    def fully_read(self) -> bool:
        """Whether the HTTP body was read to its end (the connection may then be reused)."""
        return self.response.content.at_eof()

    def _parse(self, payload: bytes) -> dict[str, Any] | None:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                self.upstream.name, f"{self.upstream.name}: malformed JSON event in stream"
            ) from None
        if not isinstance(chunk, dict):
            raise UpstreamProtocolError(
                self.upstream.name, f"{self.upstream.name}: stream event is not a JSON object"
            )
        error = chunk.get("error")
        if error is not None:
            raise UpstreamStreamError(
                self.upstream.name, error if isinstance(error, dict) else {"message": str(error)}
            )
        usage = chunk.pop("usage", None)
        if isinstance(usage, dict):
            self.usage = usage
        self.upstream.normalize_chunk(chunk, self)
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            if usage is not None:
                return None
            raise UpstreamProtocolError(
                self.upstream.name, f"{self.upstream.name}: stream event without choices"
            )
        if not choices:
            return None
        for choice in choices:
            if not isinstance(choice, dict):
                raise UpstreamProtocolError(
                    self.upstream.name, f"{self.upstream.name}: malformed choice in stream"
                )
            delta = choice.get("delta")
            if isinstance(delta, dict):
                text = delta.get("content")
                reasoning = delta.get("reasoning_content")
                calls = delta.get("tool_calls")
                size = (len(text) if isinstance(text, str) else 0) + (
                    len(reasoning) if isinstance(reasoning, str) else 0
                )
                if calls:
                    size += _tool_call_chars(calls)
                if size:
                    self.content_chars += size
                    self.content_events += 1
                if isinstance(reasoning, str) and reasoning:
                    self.reasoning_chars += len(reasoning)
                    self.reasoning_events += 1
            reason = choice.get("finish_reason")
            if reason:
                index = choice.get("index", 0)
                self.finish_reasons[index if isinstance(index, int) else 0] = str(reason)
        return chunk

    def _read_arrived(self) -> None:
        """Parse the events that arrived but were never read: a call left early is billed for
        them too, and the upstream's usage may be among them. Best effort."""
        try:
            for payload in self._decoder.feed(self.response.content.read_nowait()):
                if payload == DONE:
                    return
                self._parse(payload)
        except (UpstreamError, EventTooLarge, aiohttp.ClientError, OSError, RuntimeError):
            return

    def settle(self, status: str) -> UpstreamCall:
        """Fill `call` with billed tokens: reported usage, or an estimate of what was streamed
        (and had arrived when the call was left)."""
        call = self.call
        call.status = status  # type: ignore[assignment]
        if status == "cancelled" and self.usage is None:
            self._read_arrived()
        usage = self.usage
        if usage is not None:
            call.prompt_tokens = _int(usage.get("prompt_tokens"))
            call.completion_tokens = _int(usage.get("completion_tokens"))
            details = usage.get("prompt_tokens_details")
            if isinstance(details, dict):
                call.cached_tokens = _int(details.get("cached_tokens"))
            call.estimated = False
            if status == "ok":
                self.upstream.chars_per_token.learn(self._prompt_tokens, call.prompt_tokens)
        else:
            call.prompt_tokens = self.upstream.chars_per_token.prompt_tokens(
                self._prompt_tokens.size()
            )
            call.completion_tokens = estimate_completion_tokens(
                self.content_chars, self.content_events
            )
            call.estimated = True
        call.reasoning_tokens = self._reasoning_tokens(call.completion_tokens)
        return call

    def _reasoning_tokens(self, completion_tokens: int) -> int:
        """The upstream's reasoning_tokens when its usage has them, else estimated from the
        streamed reasoning text; never more than the completion."""
        details = (self.usage or {}).get("completion_tokens_details")
        reported = details.get("reasoning_tokens") if isinstance(details, dict) else None
        if isinstance(reported, int) and not isinstance(reported, bool) and reported >= 0:
            return min(reported, completion_tokens)
        if not self.reasoning_chars:
            return 0
        estimate = estimate_completion_tokens(self.reasoning_chars, self.reasoning_events)
        return min(estimate, completion_tokens)


def _tool_call_chars(calls: Any) -> int:
    total = 0
    if isinstance(calls, list):
        for call in calls:
            if isinstance(call, dict):
                fn = call.get("function")
                if isinstance(fn, dict):
                    total += len(str(fn.get("name") or "")) + len(str(fn.get("arguments") or ""))
    return total


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class OpenAICompatibleUpstream:
    """An OpenAI-compatible chat-completions server. Subclasses hold one provider's quirks."""

    name: UpstreamName

    def __init__(
        self,
        name: UpstreamName,
        config: ModelConfig,
        session: aiohttp.ClientSession,
        *,
        max_event_bytes: int = 8 * 1024 * 1024,
        watcher: RateLimitWatcher | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.session = session
        self.max_event_bytes = max_event_bytes
        self.watcher = watcher or RateLimitWatcher(name)
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=config.timeouts.connect, sock_read=None
        )
        # False once this upstream refused its no-thinking parameter (kept for the process).
        self.no_think_accepted = True
        # Learned from this upstream's reported usage; estimates its unreported prompts.
        self.chars_per_token = CharsPerToken()

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    # --- provider quirks (overridden per upstream) -------------------------------------------

    def build_body(self, client_body: Mapping[str, Any]) -> dict[str, Any]:
        """The upstream request: the client's fields untouched, except those the gateway owns."""
        body = {k: v for k, v in client_body.items() if k not in _GATEWAY_FIELDS}
        body["model"] = self.config.model
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        return body

    def headers(self) -> dict[str, str]:
        """Request headers: this upstream's own key only; nothing of the client's is forwarded."""
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if not self.reuse_connections:
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
        if isinstance(payload, dict):
            inner = payload.get("error")
            if isinstance(inner, dict):
                return dict(inner)
            if isinstance(inner, str):
                return {"message": inner}
            if "message" in payload:
                return dict(payload)
        if isinstance(payload, str) and payload.strip():
            return {"message": payload.strip()[:2000]}
        return {"message": f"{self.name} answered HTTP {status}"}

    def may_fall_back(self, status: int, error: Mapping[str, Any]) -> bool:
        """Whether another upstream may serve a request this one refused with `status`."""
        return status >= 500 or status in (401, 403, 404, 408, 409, 429)

    # --- calls ----------------------------------------------------------------------------------

    @asynccontextmanager
    async def open_stream(
        self,
        client_body: Mapping[str, Any],
        *,
        role: CallRole = "answer",
        request_id: str | None = None,
        body_overrides: Mapping[str, Any] | None = None,
        calls: list[UpstreamCall] | None = None,
        thinking: str | None = None,
        prompt_tokens: PromptMemo | None = None,
    ) -> AsyncIterator[UpstreamStream]:
        """POST the request and yield the open stream; raise an UpstreamError before that.

        The call's UpstreamCall is appended to `calls` at once and settled on exit: `ok` when the
        stream finished, the error's status when it failed, `cancelled` when the caller left early
        (tokens streamed so far are then billed as reported or estimated).

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
        if calls is not None:
            calls.append(call)
        refused = self.precheck()
        if refused is not None:
            raise self._tag(refused, call)
        loop = asyncio.get_running_loop()
        first_deadline = loop.time() + self.config.timeouts.first_token
        response: aiohttp.ClientResponse | None = None
        finished = False
        try:
            try:
                async with asyncio.timeout_at(first_deadline):
                    response = await self._post(body, headers)
                    if response.status != 200 and no_think:
                        refusal = await self._http_error(response, call)
                        if not (
                            isinstance(refusal, UpstreamError) and self.refuses_no_think(refusal)
                        ):
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
                call.status = "cancelled"
                if response is None or response.status == 200:
                    # Before the headers: the prompt may already be processed and billed.
                    call.prompt_tokens = self.chars_per_token.prompt_tokens(prompt_tokens.size())
                    call.estimated = True
                else:
                    call.http_status = response.status
                raise
            except TimeoutError:
                raise self._tag(
                    UpstreamTimeout(
                        self.name,
                        f"{self.name}: no response within {self.config.timeouts.first_token:g}s",
                    ),
                    call,
                ) from None
            except aiohttp.ClientConnectorError as exc:
                raise self._tag(
                    UpstreamConnectError(
                        self.name, f"{self.name}: cannot connect ({_reason(exc)})"
                    ),
                    call,
                ) from None
            except (aiohttp.ClientError, OSError) as exc:
                raise self._tag(
                    UpstreamConnectError(
                        self.name, f"{self.name}: connection failed ({type(exc).__name__})"
                    ),
                    call,
                ) from None
            call.http_status = response.status
            stream = UpstreamStream(self, response, call, prompt_tokens, first_deadline)
            status = "cancelled"
            try:
                yield stream
                finished = stream.saw_done or bool(stream.finish_reasons)
                status = "ok" if finished else "cancelled"
            except UpstreamError as exc:
                status = exc.call_status
                raise self._tag(exc, call) from exc.__cause__
            finally:
                error = call.error
                stream.settle(status)
                call.error = error
        finally:
            if response is not None:
                if finished and stream.fully_read:
                    response.release()
                else:
                    response.close()

    async def _post(
        self, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> aiohttp.ClientResponse:
        response = await self.session.post(
            self.config.chat_url, data=orjson.dumps(body), headers=headers, timeout=self._timeout
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

    async def _http_error(self, response: aiohttp.ClientResponse, call: UpstreamCall) -> Exception:
        raw = await response.content.read(_MAX_ERROR_BODY)
        try:
            payload: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            payload = raw.decode("utf-8", "replace")
        error = self.error_from_body(response.status, payload)
        call.http_status = response.status
        exc: UpstreamError
        if response.status == 429:
            exc = UpstreamRateLimited(self.name, error, retry_after=self.watcher.retry_after())
        else:
            exc = UpstreamHTTPError(
                self.name,
                response.status,
                error,
                fallback_ok=self.may_fall_back(response.status, error),
            )
        return self._tag(exc, call)

    @staticmethod
    def _tag(exc: UpstreamError, call: UpstreamCall) -> UpstreamError:
        call.status = exc.call_status  # type: ignore[assignment]
        call.error = exc.message
        exc.call = call
        return exc

    async def health(self) -> Health:
        """Probe the upstream; never raises."""
        if not self.enabled:
            return Health("disabled")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(min(5.0, self.config.timeouts.connect + 2)):
                async with self.session.get(
                    self.health_url(), headers=self.probe_headers(), timeout=self._timeout
                ) as resp:
                    raw = await resp.content.read(_MAX_ERROR_BODY)
                    status = resp.status
        except TimeoutError:
            return Health("down", "health probe timed out")
        except (aiohttp.ClientError, OSError) as exc:
            return Health("down", f"unreachable ({_reason(exc)})")
        latency = (time.perf_counter() - started) * 1000
        return self.health_from(status, raw, latency)

    def health_url(self) -> str:
        return self.config.endpoint + "/models"

    def probe_headers(self) -> dict[str, str]:
        if self.config.api_key:
            return {"Authorization": f"Bearer {self.config.api_key}"}
        return {}

    def health_from(self, status: int, raw: bytes, latency_ms: float) -> Health:
        if status == 200:
            return Health("ok", latency_ms=latency_ms)
        if status in (401, 403):
            return Health("unauthorized", f"HTTP {status}", latency_ms)
        return Health("down", f"HTTP {status}", latency_ms)


def _reason(exc: BaseException) -> str:
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror
    return type(exc).__name__
