"""Finish a stream whose committed upstream failed after content reached the client.

The other upstream gets the original request plus the partial answer as a trailing assistant
message (assistant prefill) and its continuation goes into the same client stream: one id, one
finish_reason, one usage chunk (both calls summed; the ledger keeps both calls), one [DONE], and
`continued: {from, to, at_tokens, reason}` in the final chunk's metadata.

Not continued (the caller then reports the failure as one error event, as before):
`routing.fallback.mid_stream: error` or the fallback switch for the target; a target that cannot
continue a prefill (Cerebras documents none); a partly streamed tool call; several choices; a
failure while the answer was still reasoning (neither upstream can be handed half a reasoning to
go on with); a request that itself ends with an assistant message; an admission refusal (budget,
rate limits). One continuation per request at most.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from gateway.accounting.records import UpstreamCall, UpstreamName
from gateway.accounting.tokens import COMPLETION_LIMIT_KEYS, once
from gateway.accounting.usage import client_usage
from gateway.errors import UpstreamError
from gateway.quota.admission import Refusal
from gateway.serving.exchange import Exchange
from gateway.serving.pump import pump_call
from gateway.upstreams.errors import failed_call
from gateway.wire.chunk import Chunk, read_chunk

log = logging.getLogger("gateway.serving.continuation")


def other_upstream(name: str) -> UpstreamName:
    return "local" if name == "cerebras" else "cerebras"


class EchoStrip:
    """Removes the prefill that an upstream repeats at the start of its continuation.

    It checks rather than assumes: content that does not start the same way as the prefill is
    passed on unchanged; text matching a beginning of the prefill is held until it is clear
    whether it is the echo. Only the first content deltas are looked at."""

    __slots__ = ("rest", "held")

    def __init__(self, prefill: str) -> None:
        self.rest = prefill
        self.held: list[str] = []

    def feed(self, batch: list[Chunk]) -> bool:
        """Strip the echo from `batch` in place; True once the seam is settled."""
        for position, chunk in enumerate(batch):
            if not chunk.text:
                continue
            settled = self._strip(chunk.data)
            batch[position] = read_chunk(chunk.data)  # its text changed: its facts too
            if settled:
                return True
        return False

    def _strip(self, data: dict[str, Any]) -> bool:
        for choice in data.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            text = delta.get("content") if isinstance(delta, dict) else None
            if not isinstance(text, str) or not text:
                continue
            assert isinstance(delta, dict)
            rest = self.rest
            if text.startswith(rest):
                delta["content"] = text[len(rest) :]
                return True
            if rest.startswith(text):
                self.rest = rest[len(text) :]
                self.held.append(text)
                delta["content"] = ""
                continue
            delta["content"] = "".join(self.held) + text  # not an echo after all
            return True
        return False


def continuation_body(body: Mapping[str, Any], prefill: str, sent_tokens: int) -> dict[str, Any]:
    """The original request plus the partial answer as a trailing assistant message; a client's
    token limit is lowered by what was already sent."""
    messages = list(body.get("messages") or ())
    messages.append({"role": "assistant", "content": prefill})
    out = {**body, "messages": messages}
    for key in COMPLETION_LIMIT_KEYS:
        limit = out.get(key)
        if isinstance(limit, int) and not isinstance(limit, bool):
            out[key] = max(1, limit - sent_tokens)
    return out


def _refusal(ex: Exchange, failed: UpstreamError, target: UpstreamName) -> str | None:
    """Why `failed` may not be continued on `target`, or None."""
    if ex.config.routing.fallback_mid_stream != "continue":
        return "routing.fallback.mid_stream is error"
    upstream = ex.upstreams.get(target)
    if upstream is None or not upstream.enabled:
        return f"{target} is disabled"
    if not upstream.continues_prefill:
        return f"{target} cannot continue a partial answer"
    if not ex.fallback_allowed(target):
        return f"routing.fallback forbids {target}"
    messages = ex.body.get("messages")
    if isinstance(messages, list) and messages:
        last = messages[-1]
        if isinstance(last, dict) and last.get("role") == "assistant":
            return "the request already ends with an assistant message"
    return None


async def continue_stream(ex: Exchange, failed: UpstreamError) -> bool:
    """Finish `ex`'s response on the other upstream after `failed` broke the committed stream.

    Returns False, having sent nothing, when the answer may not be continued (module doc); the
    caller then reports `failed`. Returns True once the response is finished. Raises an
    UpstreamError when the continuation fails: its own once it sent content, else `failed`.
    """
    target = other_upstream(failed.upstream)
    why = _refusal(ex, failed, target)
    prefill = ""
    if why is None:
        prefill, why = ex.sink.partial_answer()
    first = failed_call(failed)
    at_tokens = first.completion_tokens if first is not None else 0
    body: dict[str, Any] = {}
    if why is None:
        body = continuation_body(ex.body, prefill, at_tokens)
        estimate = ex.upstreams[target].chars_per_token.estimate(once(body))
        admission = await ex.gate.admit(target, body, estimate)
        if isinstance(admission, Refusal):
            why = admission.reason
    if why is not None:
        log.info("%s not continued on %s: %s", ex.request_id, target, why)
        return False
    assert not isinstance(admission, Refusal)
    upstream = ex.upstreams[target]
    log.info(
        "%s continuing on %s after %s failed at %d tokens: %s",
        ex.request_id,
        target,
        failed.upstream,
        at_tokens,
        failed.message,
    )
    sink = ex.sink
    sink.model_used = target
    echo = EchoStrip(prefill) if upstream.echoes_prefill else None
    sent = False

    async def feed(batch: list[Chunk]) -> None:
        nonlocal echo, sent
        if echo is not None and echo.feed(batch):
            echo = None
        # Only text past the seam is the continuation's own: while the echo is still being
        # matched, a failure is the first upstream's.
        sent = sent or echo is None
        await sink.emit_many(batch)

    try:
        # Thinking off: llama.cpp refuses a prefill together with enable_thinking.
        stream = await pump_call(
            upstream,
            body,
            calls=ex.record.calls,
            ticket=admission,
            gate=ex.gate,
            feed=feed,
            request_id=ex.request_id,
            thinking="off",
        )
    except UpstreamError as exc:
        if sent:
            raise
        raise failed from exc
    await _complete(ex, failed, first, stream.call, stream.usage)
    return True


async def _complete(
    ex: Exchange,
    failed: UpstreamError,
    first: UpstreamCall | None,
    second: UpstreamCall,
    reported: dict[str, Any] | None,
) -> None:
    """Record the continued answer and finish the client response with both calls' usage."""
    target = second.upstream
    usage = client_usage(reported, second)
    before = first.prompt_tokens if first is not None else 0
    done = first.completion_tokens if first is not None else 0
    usage["prompt_tokens"] = usage.get("prompt_tokens", 0) + before
    usage["completion_tokens"] = usage.get("completion_tokens", 0) + done
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    # The details are summed from both calls too, never left as the second call's alone.
    calls = (second,) if first is None else (first, second)
    cached = sum(call.cached_tokens for call in calls)
    reasoning = sum(call.reasoning_tokens for call in calls)
    usage.pop("prompt_tokens_details", None)
    usage.pop("completion_tokens_details", None)
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    if first is not None and first.estimated:
        usage["estimated"] = True
    record = ex.record
    record.model_used = target
    record.outcome = "ok"
    record.fallback = True
    # The second call's prompt carries the partial answer as prefill: not what one call costs.
    record.counterfactual_prompt_tokens = before or max(0, second.prompt_tokens - done)
    record.counterfactual_completion_tokens = done + second.completion_tokens
    ex.set_reason(
        f"{record.routing_reason}; continued on {target} after {failed.upstream} failed "
        f"mid-stream ({failed.message})"
    )
    ex.metadata["model_used"] = target
    ex.metadata["continued"] = {
        "from": failed.upstream,
        "to": target,
        "at_tokens": done,
        "reason": failed.message,
    }
    await ex.finish(usage)
