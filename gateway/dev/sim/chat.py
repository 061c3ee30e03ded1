"""POST /v1/chat/completions: validation, quota, faults, and the streamed or whole answer."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from typing import Any

import orjson
from aiohttp import web

from gateway.dev.sim.dialects import DONE, Cerebras, Dialect, ErrorReply, Stats
from gateway.dev.sim.faults import MALFORMED_EVENT, MID_STREAM_FAULTS, STATUS_FAULTS, Fault
from gateway.dev.sim.options import SimRequestLog
from gateway.dev.sim.state import STATE_KEY, SimState
from gateway.dev.sim.text import (
    AnswerPlan,
    Piece,
    completion_limit,
    estimate_prompt_tokens,
    plan_answer,
)
from gateway.dev.sim.thinking import refused_thinking_param

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
GARBAGE_SIZE = 4096


def garbage_bytes(size: int = GARBAGE_SIZE) -> bytes:
    """Bytes that are never valid UTF-8 (all >= 0x80, starting with 0xff) and hold no newline."""
    return b"\xff" + bytes(random.randrange(0x80, 0x100) for _ in range(size - 1))


async def handle_chat(request: web.Request) -> web.StreamResponse:
    """Log the request, draw a fault, answer; record disconnects and refund unused quota."""
    state = request.app[STATE_KEY]
    log = SimRequestLog(
        body={},
        headers={str(k): v for k, v in request.headers.items()},
        path=request.path,
        started_at=time.monotonic(),
    )
    state.record(log)
    exchange = _Exchange(request, state, log, state.faults.pop())
    state.active += 1
    try:
        return await exchange.run()
    except asyncio.CancelledError:
        if not state.closing and not exchange.server_closed:
            log.disconnected_at = time.monotonic()
        raise
    finally:
        state.active -= 1
        log.ended_at = time.monotonic()
        exchange.refund()


class _Exchange:
    """One chat request from body to last byte."""

    def __init__(
        self, request: web.Request, state: SimState, log: SimRequestLog, fault: Fault | None
    ) -> None:
        self.request = request
        self.state = state
        self.options = state.options
        self.dialect = state.dialect
        self.log = log
        self.fault = fault
        log.fault = fault.name if fault else None
        self.quota = state.quota
        self.reserved_completion = 0
        self.server_closed = False

    # --- flow ---------------------------------------------------------------------------------
    async def run(self) -> web.StreamResponse:
        body, parse_error = await self._read_body()
        fault = self.fault.name if self.fault else None
        if fault == "drop":
            return self._close_connection()
        if fault in STATUS_FAULTS:
            return self._status_fault()
        if fault == "slow_error_body":
            return await self._slow_error_body()
        if self.state.is_loading():
            return self._error(self.dialect.loading())
        key = self.options.api_key
        if key is not None and self.request.headers.get("Authorization") != f"Bearer {key}":
            return self._error(self.dialect.unauthorized())
        if parse_error is not None:
            return self._error(self.dialect.bad_request(parse_error))
        invalid = self._validate(body)
        if invalid is not None:
            return self._error(invalid)
        prompt_tokens = estimate_prompt_tokens(body)
        self.log.prompt_tokens = prompt_tokens
        if prompt_tokens > self.options.n_ctx:
            return self._error(self.dialect.context_overflow(prompt_tokens, self.options.n_ctx))
        if self.options.profile == "cerebras":
            denied = self._reserve(body, prompt_tokens)
            if denied is not None:
                return self._error(self.dialect.rate_limited(denied))
        plan = plan_answer(body, self.options)
        self.log.prefill, self.log.planned_content = plan.prefill, plan.new_content
        if fault == "huge_event":
            plan.pieces.insert(0, Piece("content", "x" * int(self._param("size"))))
        ttft = float(self._param("delay")) if fault == "slow_first_token" else self.options.ttft
        logprobs = body.get("logprobs") is True
        top = body.get("top_logprobs")
        encoder = self.dialect(
            self.options.model_name,
            (top if isinstance(top, int) else 0) if logprobs else None,
            plan.logprob,
        )
        if self.log.stream:
            options = body.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            return await self._stream(plan, encoder, ttft, usage)
        return await self._complete(plan, encoder, ttft)

    async def _read_body(self) -> tuple[dict[str, Any], str | None]:
        raw = await self.request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return {}, f"invalid JSON body: {exc}"
        if not isinstance(body, dict):
            return {}, "the request body must be a JSON object"
        self.log.body = body
        self.log.stream = body.get("stream") is True
        return body, None

    def _validate(self, body: dict[str, Any]) -> ErrorReply | None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self.dialect.bad_request("'messages' must be a non-empty array", "messages")
        refused = refused_thinking_param(body, self.options)
        if refused is not None:
            return self.dialect.bad_request(f"Unsupported parameter: '{refused}'", refused)
        temperature = body.get("temperature")
        if self.options.profile == "cerebras" and temperature is not None:
            if not isinstance(temperature, int | float) or not 0 <= temperature <= 1.5:
                return self.dialect.bad_request(
                    "temperature must be between 0 and 1.5", "temperature"
                )
        return None

    def _reserve(self, body: dict[str, Any], prompt_tokens: int) -> str | None:
        limit = completion_limit(body)
        completion = self.options.default_max_completion_tokens if limit is None else limit
        denied = self.quota.reserve(prompt_tokens + completion)
        if denied is None:
            self.reserved_completion = completion
            self.log.reserved_tokens = prompt_tokens + completion
        return denied

    def refund(self) -> None:
        if self.reserved_completion:
            self.quota.refund(max(0, self.reserved_completion - self.log.completion_tokens_sent))
            self.reserved_completion = 0

    def _param(self, key: str) -> Any:
        assert self.fault is not None
        return self.fault.param(key)

    # --- responses ----------------------------------------------------------------------------
    def _quota_headers(self) -> dict[str, str]:
        return self.quota.headers() if self.options.profile == "cerebras" else {}

    def _error(self, reply: ErrorReply, headers: dict[str, str] | None = None) -> web.Response:
        self.log.status = reply.status
        self.log.first_byte_at = time.monotonic()
        return web.Response(
            status=reply.status,
            body=orjson.dumps(reply.body),
            content_type="application/json",
            headers=self._quota_headers() if headers is None else headers,
        )

    def _status_fault(self) -> web.Response:
        assert self.fault is not None
        name = self.fault.name
        if name == "http_500":
            return self._error(self.dialect.server_error())
        if name == "http_503_loading":
            return self._error(self.dialect.loading())
        if name == "http_429_bare":
            return self._error(Cerebras.rate_limited("request_quota_exceeded"), headers={})
        kind = self._param("kind")
        code = "token_quota_exceeded" if kind == "tokens" else "request_quota_exceeded"
        headers = self.quota.exhausted_headers(float(self._param("reset_seconds")), kind)
        return self._error(self.dialect.rate_limited(code), headers=headers)

    async def _slow_error_body(self) -> web.StreamResponse:
        """A 500 whose headers go out at once and whose body waits `seconds`."""
        self.log.status = 500
        response = web.StreamResponse(status=500, headers={"Content-Type": "application/json"})
        await response.prepare(self.request)
        await asyncio.sleep(float(self._param("seconds")))
        await response.write(orjson.dumps(self.dialect.server_error().body))
        return response

    def _close_connection(self) -> web.Response:
        """Close the socket without a proper HTTP ending; aiohttp's final write then fails."""
        self.server_closed = True
        transport = self.request.transport
        if transport is not None:
            transport.close()
        return web.Response()

    def _stats(self, plan: AnswerPlan, prompt_seconds: float, first_at: float) -> Stats:
        return Stats(
            prompt_tokens=plan.prompt_tokens,
            completion_tokens=self.log.completion_tokens_sent,
            prompt_seconds=prompt_seconds,
            completion_seconds=time.monotonic() - first_at,
            cached_tokens=int(plan.prompt_tokens * self.options.cached_prompt_share),
        )

    async def _complete(self, plan: AnswerPlan, encoder: Dialect, ttft: float) -> web.Response:
        fault = self.fault.name if self.fault else None
        tps = self.options.tps
        generation = max(0, len(plan.pieces) - 1) / tps if tps > 0 else 0.0
        started = time.monotonic()
        if ttft > 0:
            await asyncio.sleep(ttft)
        await self._held()
        first_at = time.monotonic()
        if generation > 0:
            await asyncio.sleep(generation)
        if fault == "stall":
            await asyncio.sleep(float(self._param("seconds")))
        if fault == "cut":
            return self._close_connection()
        if fault == "error_event":
            return self._error(self.dialect.server_error())
        self.log.status = 200
        self.log.first_byte_at = time.monotonic()
        if fault in ("malformed_event", "garbage"):
            raw = MALFORMED_EVENT[6:-2] if fault == "malformed_event" else garbage_bytes()
            return web.Response(body=raw, content_type="application/json")
        self.log.completion_tokens_sent = len(plan.pieces)
        stats = self._stats(plan, first_at - started, first_at)
        body = orjson.dumps(encoder.completion(plan.pieces, plan.finish_reason, stats))
        response = web.Response(
            body=body, content_type="application/json", headers=self._quota_headers()
        )
        self.log.finished = True
        return response

    async def _stream(
        self, plan: AnswerPlan, encoder: Dialect, ttft: float, include_usage: bool
    ) -> web.StreamResponse:
        started = time.monotonic()
        if ttft > 0:
            await asyncio.sleep(ttft)
        await self._held()
        response = web.StreamResponse(headers={**SSE_HEADERS, **self._quota_headers()})
        await response.prepare(self.request)
        self.log.status = 200
        first_at = time.monotonic()
        events = self._events(plan, encoder, include_usage, first_at - started, first_at)
        fault_at = -1
        if self.fault is not None and self.fault.name in MID_STREAM_FAULTS:
            fault_at = int(self._param("after_chunks"))
        interval = 1.0 / self.options.tps if self.options.tps > 0 else 0.0
        log = self.log
        written = 0
        try:
            for data, tokens in events:
                if written == fault_at:
                    ended, stalled = await self._mid_stream_fault(response, encoder)
                    if ended:
                        return response
                    first_at += stalled
                if tokens and interval:
                    delay = first_at + log.completion_tokens_sent * interval - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await response.write(data)
                if not written:
                    log.first_byte_at = time.monotonic()
                written += 1
                log.completion_tokens_sent += tokens
        except ConnectionError:
            log.disconnected_at = time.monotonic()
            return response
        log.finished = True
        return response

    def _events(
        self,
        plan: AnswerPlan,
        encoder: Dialect,
        include_usage: bool,
        prompt_seconds: float,
        first_at: float,
    ) -> Iterator[tuple[bytes, int]]:
        """(event bytes, tokens it carries); final and usage chunks are built when reached."""
        yield encoder.role(), 0
        for piece in plan.pieces:
            yield encoder.piece(piece), 1
        stats = self._stats(plan, prompt_seconds, first_at)
        yield encoder.final(plan.finish_reason, stats), 0
        if include_usage:
            yield encoder.usage(stats), 0
        yield DONE, 0

    async def _held(self) -> None:
        """Wait while the server holds its answers (`SimServer.hold`)."""
        hold = self.state.hold
        if hold is not None:
            await hold.wait()

    async def _mid_stream_fault(
        self, response: web.StreamResponse, encoder: Dialect
    ) -> tuple[bool, float]:
        """Apply the mid-stream fault; return (stream ended, seconds stalled)."""
        assert self.fault is not None
        name = self.fault.name
        if name == "stall":
            started = time.monotonic()
            await asyncio.sleep(float(self._param("seconds")))
            return False, time.monotonic() - started
        if name == "malformed_event":
            await response.write(MALFORMED_EVENT)
            return False, 0.0
        if name == "cut":
            self._close_connection()
        elif name == "garbage":
            await response.write(garbage_bytes())
        elif name == "error_event":
            await response.write(encoder.error_event(self.dialect.server_error()))
        return True, 0.0
