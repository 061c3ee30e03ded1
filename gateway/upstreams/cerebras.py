"""The Cerebras Inference API: its dialect and its quirks.

- `max_tokens` is deprecated there: it is sent as `max_completion_tokens`, capped by config so that
  a request without a limit does not reserve the model's whole output window from the rate limit.
- `temperature` is accepted from 0 to 1.5 only; higher values are clamped rather than refused.
- Reasoning streams as `delta.reasoning`; clients read `reasoning_content`, so it is renamed. In
  the history it goes back the same way: an assistant message's `reasoning_content` is sent as
  `reasoning` (the Anthropic door puts thinking blocks there; clients may too).
- Chunks may carry `time_info`, kept aside; error bodies are flat objects (wrapped by the base).
- Without an API key no call is made at all.
- A prompt that does not fit: 400 `context_length_exceeded`, "Please reduce the length of the
  messages or completion." (either one is taken), tagged CONTEXT_LENGTH_EXCEEDED for the doors.
- Thinking off is `reasoning_effort: "none"`. Cerebras' reasoning guide
  (https://inference-docs.cerebras.ai/capabilities/reasoning, "GLM: reasoning_effort and
  disable_reasoning"): "Reasoning is enabled by default on zai-glm-4.7. Use
  reasoning_effort="none" to disable it"; `disable_reasoning` "is deprecated and will be removed
  after July 21, 2026". The low/medium/high levels are documented for gpt-oss-120b only.
- No assistant prefill: the Chat Completions reference
  (https://inference-docs.cerebras.ai/api-reference/chat-completions) documents assistant
  messages as conversation history only, with no way to continue a trailing one (no `prefix`
  flag as Mistral and DeepSeek have), so a broken local stream is never continued here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gateway.accounting.tokens import completion_limit
from gateway.errors import UpstreamError, UpstreamHTTPError
from gateway.upstreams.base import OpenAICompatibleUpstream
from gateway.upstreams.health import Health
from gateway.upstreams.stream import UpstreamStream

_CONTEXT_OVERFLOW_WORDS = "reduce the length of the messages"

MAX_TEMPERATURE = 1.5
HEALTH_CACHE_S = 10.0


class CerebrasUpstream(OpenAICompatibleUpstream):
    _health_cache: tuple[float, Health] | None = None
    no_think_names = ("reasoning_effort",)

    def add_no_think(self, body: dict[str, Any]) -> bool:
        body["reasoning_effort"] = "none"
        return True

    def build_body(self, client_body: Mapping[str, Any]) -> dict[str, Any]:
        body = super().build_body(client_body)
        limit = completion_limit(body)
        body.pop("max_tokens", None)
        cap = self.config.max_completion_tokens_cap
        if cap is not None:
            limit = cap if limit is None else min(limit, cap)
        if limit is not None:
            body["max_completion_tokens"] = limit
        temperature = body.get("temperature")
        if isinstance(temperature, int | float) and temperature > MAX_TEMPERATURE:
            body["temperature"] = MAX_TEMPERATURE
        messages = body.get("messages")
        if isinstance(messages, list) and any(
            isinstance(m, dict) and "reasoning_content" in m for m in messages
        ):
            body["messages"] = [_reasoning_renamed(m) for m in messages]
        return body

    def normalize_chunk(self, chunk: dict[str, Any], stream: UpstreamStream) -> None:
        time_info = chunk.pop("time_info", None)
        if time_info is not None:
            stream.extras["time_info"] = time_info
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            if "usage" in chunk or stream.usage is not None:
                chunk["choices"] = []
            return
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict) and "reasoning" in delta:
                reasoning = delta.pop("reasoning")
                if reasoning is not None and "reasoning_content" not in delta:
                    delta["reasoning_content"] = reasoning

    def context_overflow(self, error: Mapping[str, Any]) -> bool:
        if super().context_overflow(error):
            return True
        return _CONTEXT_OVERFLOW_WORDS in str(error.get("message") or "").lower()

    def precheck(self) -> UpstreamError | None:
        if self.config.api_key:
            return None
        return UpstreamHTTPError(
            self.name,
            401,
            {
                "message": "no Cerebras API key configured (set CEREBRAS_API_KEY)",
                "type": "authentication_error",
                "code": "no_api_key",
            },
            fallback_ok=True,
        )

    async def health(self) -> Health:
        """Probe `/models` at most once per HEALTH_CACHE_S: /health needs no client key, and
        each probe is an authenticated call to the paid API."""
        if self.enabled and not self.config.api_key:
            return Health("no_api_key", "set CEREBRAS_API_KEY")
        now = time.monotonic()
        cached = self._health_cache
        if cached is not None and now - cached[0] < HEALTH_CACHE_S:
            return cached[1]
        health = await super().health()
        self._health_cache = (now, health)
        return health


def _reasoning_renamed(message: Any) -> Any:
    """`message` with `reasoning_content` sent as Cerebras' `reasoning` (a copy; the client's
    body is never changed)."""
    if not isinstance(message, dict) or "reasoning_content" not in message:
        return message
    renamed = {k: v for k, v in message.items() if k != "reasoning_content"}
    renamed.setdefault("reasoning", message["reasoning_content"])
    return renamed
