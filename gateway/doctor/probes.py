"""The doctor's streamed probe: a tiny completion through the gateway's own upstreams (so
dialect quirks, keys and error mapping are exactly the gateway's)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.upstreams import Upstream


@dataclass(slots=True)
class StreamProbe:
    """What one streamed completion showed. `error` is None when the stream completed.

    `ttft_s`: seconds from sending to the first token (text, reasoning or tool call);
    `tokens_per_s`: decode speed as the upstream reports it (`rate_source` says how), else as
    measured between the first and the last token."""

    error: UpstreamError | None = None
    ttft_s: float | None = None
    tokens: int = 0
    tokens_per_s: float | None = None
    rate_source: str = ""
    text: str = ""
    tool_calls: list[str] = field(default_factory=list)
    logprob_tokens: int = 0
    finish_reason: str | None = None

    def figures(self) -> dict[str, Any]:
        return {
            "ttft_ms": None if self.ttft_s is None else round(self.ttft_s * 1000, 1),
            "tokens": self.tokens,
            "tokens_per_s": None if self.tokens_per_s is None else round(self.tokens_per_s, 1),
            "rate_source": self.rate_source or None,
        }

    def speed(self) -> str:
        """`TTFT 120 ms, 8 tokens at 35.1 tokens/s (llama.cpp timings)`."""
        ttft = "n/a" if self.ttft_s is None else f"{self.ttft_s * 1000:.0f} ms"
        rate = (
            "speed n/a"
            if self.tokens_per_s is None
            else f"{self.tokens_per_s:.1f} tokens/s ({self.rate_source})"
        )
        return f"TTFT {ttft}, {self.tokens} token(s) at {rate}"


async def stream_probe(upstream: Upstream, body: Mapping[str, Any], timeout: float) -> StreamProbe:
    """Stream `body` (the gateway adds model, stream and usage) from `upstream`. Never raises
    an UpstreamError: it lands in `error`."""
    probe = StreamProbe()
    started = time.monotonic()
    first: float | None = None
    last = started
    events = 0
    usage: dict[str, Any] | None = None
    extras: dict[str, Any] = {}
    try:
        async with asyncio.timeout(timeout):
            async with upstream.open_stream(body) as stream:
                async for chunk in stream:
                    if _read_chunk(chunk.data, probe):
                        last = time.monotonic()
                        first = first if first is not None else last
                        events += 1
                usage, extras = stream.usage, stream.extras
    except UpstreamError as exc:
        probe.error = exc
    except TimeoutError:
        probe.error = UpstreamTimeout(
            upstream.name, f"{upstream.name}: no complete answer within {timeout:g}s"
        )
    if first is not None:
        probe.ttft_s = first - started
    completion = usage.get("completion_tokens") if usage else None
    probe.tokens = completion if isinstance(completion, int) else events
    probe.tokens_per_s, probe.rate_source = _rate(probe.tokens, extras, events, first, last)
    return probe


def _read_chunk(chunk: Mapping[str, Any], probe: StreamProbe) -> bool:
    """Note what one chunk carries; True when it carries a token."""
    carried = False
    for choice in chunk.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict):
            text = delta.get("content")
            if isinstance(text, str) and text:
                probe.text += text
                carried = True
            if delta.get("reasoning_content"):
                carried = True
            calls = delta.get("tool_calls")
            if isinstance(calls, list) and calls:
                carried = True
                for call in calls:
                    function = call.get("function") if isinstance(call, dict) else None
                    name = function.get("name") if isinstance(function, dict) else None
                    if isinstance(name, str) and name:
                        probe.tool_calls.append(name)
        logprobs = choice.get("logprobs")
        content = logprobs.get("content") if isinstance(logprobs, dict) else None
        if isinstance(content, list):
            probe.logprob_tokens += len(content)
        reason = choice.get("finish_reason")
        if reason:
            probe.finish_reason = str(reason)
    return carried


def _rate(
    tokens: int, extras: Mapping[str, Any], events: int, first: float | None, last: float
) -> tuple[float | None, str]:
    """Decode speed: llama.cpp's `timings`, Cerebras' `time_info`, else measured."""
    timings = extras.get("timings")
    if isinstance(timings, dict):
        rate = timings.get("predicted_per_second")
        if isinstance(rate, int | float) and rate > 0:
            return float(rate), "llama.cpp timings"
    time_info = extras.get("time_info")
    if isinstance(time_info, dict):
        seconds = time_info.get("completion_time")
        if isinstance(seconds, int | float) and seconds > 0 and tokens > 0:
            return tokens / seconds, "Cerebras time_info"
    if first is not None and events >= 2 and last > first:
        return (events - 1) / (last - first), "measured"
    return None, ""
