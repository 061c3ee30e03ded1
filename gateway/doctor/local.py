"""Checks of the local upstream (llama.cpp `llama-server`): health, model, a streamed answer,
tool calls, logprobs and slots for parallel drafts."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.config import GatewayConfig
from gateway.doctor.options import DoctorOptions
from gateway.doctor.probes import StreamProbe, stream_probe
from gateway.doctor.report import Check, fail, ok, skip, warn
from gateway.errors import UpstreamError, UpstreamHTTPError, UpstreamTimeout
from gateway.upstreams import Upstream

NAMES = (
    "local.health",
    "local.model",
    "local.stream",
    "local.tool_calls",
    "local.logprobs",
    "local.slots",
)
PROMPT = "Reply with one word: hello."
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TOOL_PROMPT = "What is the weather in Paris? Use the tool."
JINJA_FIX = (
    "start llama-server with --jinja (and a model whose chat template supports tools): "
    "Cline works through tool calls"
)


def _messages(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _error_text(error: UpstreamError) -> str:
    if isinstance(error, UpstreamHTTPError):
        return f"HTTP {error.status}: {error.message}"
    return error.message


class LocalDoctor:
    """The local checks, in order; later checks are skipped when the server cannot serve."""

    def __init__(self, upstream: Upstream, config: GatewayConfig, options: DoctorOptions) -> None:
        self.upstream = upstream
        self.config = config
        self.options = options
        self.llamacpp = upstream.config.kind == "llamacpp"
        self.root = upstream.health_url().removesuffix("/health")
        self.props: dict[str, Any] | None = None
        self.serving = False

    async def run(self) -> list[Check]:
        """Every local check; `serving` is True afterwards when local answered a completion."""
        if not self.upstream.enabled:
            return [skip(name, "models.local.enabled is false") for name in NAMES]
        health = await self.health()
        if health.verdict == "fail":
            return [health, *(skip(n, "local is not serving") for n in NAMES[1:])]
        checks = [health, await self.model(), await self.stream()]
        if not self.serving:
            return [*checks, *(skip(n, "local did not answer") for n in NAMES[3:])]
        return [*checks, await self.tool_calls(), await self.logprobs(), await self.slots()]

    async def health(self) -> Check:
        """GET /health; a 503 (model loading) is polled for up to `loading_wait` seconds."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        url = self.upstream.health_url()
        state = await self.upstream.health()
        deadline = started + self.options.loading_wait
        while state.state == "loading" and loop.time() < deadline:
            await asyncio.sleep(min(0.5, max(0.05, deadline - loop.time())))
            state = await self.upstream.health()
        waited = loop.time() - started
        latency = f"{state.latency_ms:.0f} ms" if state.latency_ms is not None else "n/a"
        if state.state == "ok":
            loaded = f" (the model finished loading after {waited:.1f}s)" if waited > 0.5 else ""
            return ok("local.health", f"{url} answered 200 in {latency}{loaded}", state="ok")
        if state.state == "loading":
            return fail(
                "local.health",
                f"llama-server is still loading its model after {self.options.loading_wait:g}s "
                f"({state.detail})",
                f"wait until GET {url} answers 200, then run the doctor again "
                "(--wait SECONDS waits longer)",
                state="loading",
            )
        if state.state == "unauthorized":
            return fail(
                "local.health",
                f"the local server refused the probe ({state.detail})",
                "set models.local.api_key to the key llama-server was started with (--api-key)",
                state=state.state,
            )
        return fail(
            "local.health",
            f"cannot reach the local server at {url}: {state.detail}",
            "start llama-server (llama-server -m MODEL.gguf --port PORT --jinja --parallel N) "
            "or correct models.local.endpoint",
            state=state.state,
        )

    async def model(self) -> Check:
        """The model name from /v1/models, and context size from /props (llama.cpp)."""
        timeout = self.options.probe_timeout
        get_json = self.upstream.get_json
        reply = await get_json(self.upstream.config.endpoint + "/models", timeout)
        if self.llamacpp:
            props = await get_json(self.root + "/props", timeout)
            if props is not None and props.status == 200 and isinstance(props.payload, dict):
                self.props = props.payload
        served = _model_ids(reply.payload) if reply is not None and reply.status == 200 else []
        if not served:
            why = "no answer" if reply is None else f"HTTP {reply.status} or no model listed"
            return warn(
                "local.model",
                f"GET /v1/models told no model name ({why})",
                "update llama-server to a build with the OpenAI-compatible /v1/models",
            )
        name = served[0].rsplit("/", 1)[-1]
        configured = self.upstream.config.model
        detail = f"serves {name}"
        n_ctx = _n_ctx(self.props)
        if n_ctx is not None:
            detail += f", context {n_ctx:,} tokens"
        if configured and configured != name and configured != served[0]:
            detail += f" (models.local.model {configured!r} is only a label to llama-server)"
        return ok("local.model", detail, model=name, n_ctx=n_ctx, configured_model=configured)

    async def stream(self) -> Check:
        """A tiny streamed completion: time to first token and decode speed."""
        body = {"messages": _messages(PROMPT), "max_tokens": self.options.max_tokens}
        probe = await stream_probe(self.upstream, body, self.options.probe_timeout)
        if probe.error is not None:
            return fail(
                "local.stream",
                f"the local server did not answer a {self.options.max_tokens}-token completion: "
                f"{_error_text(probe.error)}",
                _stream_fix(probe.error),
                **probe.figures(),
            )
        self.serving = True
        if probe.tokens == 0:
            return warn(
                "local.stream",
                "the local server answered with no tokens",
                "check llama-server's log: the model or its chat template may be broken",
                **probe.figures(),
            )
        return ok("local.stream", probe.speed(), **probe.figures())

    async def tool_calls(self) -> Check:
        """One tiny tool, tool_choice "required" (then "auto" if refused): a tool_calls delta?"""
        probe: StreamProbe | None = None
        for choice in ("required", "auto"):
            body = {
                "messages": _messages(TOOL_PROMPT),
                "tools": [TOOL],
                "tool_choice": choice,
                "max_tokens": self.options.tool_max_tokens,
            }
            probe = await stream_probe(self.upstream, body, self.options.probe_timeout)
            if probe.error is None or not isinstance(probe.error, UpstreamHTTPError):
                break
        assert probe is not None
        figures = {"tool_choice": choice, "tool_calls": probe.tool_calls}
        if probe.tool_calls:
            return ok(
                "local.tool_calls",
                f"streamed a tool call to {probe.tool_calls[0]} (tool_choice {choice})",
                **figures,
            )
        if probe.error is not None:
            return warn(
                "local.tool_calls",
                f"the local server refused a request with tools: {_error_text(probe.error)}",
                JINJA_FIX,
                **figures,
            )
        return warn(
            "local.tool_calls",
            f"the local server ignored the tool and answered text (tool_choice {choice})",
            JINJA_FIX,
            **figures,
        )

    async def logprobs(self) -> Check:
        """logprobs: true, top_logprobs: 1: do token probabilities come back?"""
        body = {
            "messages": _messages(PROMPT),
            "max_tokens": self.options.max_tokens,
            "logprobs": True,
            "top_logprobs": 1,
        }
        probe = await stream_probe(self.upstream, body, self.options.probe_timeout)
        signal = self.config.speculative_decoding.logprob_signal
        figures = {"logprob_tokens": probe.logprob_tokens, "logprob_signal": signal}
        if probe.logprob_tokens:
            return ok(
                "local.logprobs", f"{probe.logprob_tokens} token(s) came with logprobs", **figures
            )
        consequence = (
            "speculative_decoding.logprob_signal is on and can never accept a draft"
            if signal
            else "the logprob signal (speculative_decoding.logprob_signal) cannot be used"
        )
        why = "streamed no logprobs" if probe.error is None else _error_text(probe.error)
        return warn(
            "local.logprobs",
            f"the local server {why}: {consequence}",
            "update llama-server to a recent llama.cpp build (logprobs in streamed chat "
            "completions), or keep speculative_decoding.logprob_signal: false",
            **figures,
        )

    async def slots(self) -> Check:
        """Slots (/props total_slots, else /slots) against parallel_speculative's drafts."""
        if not self.llamacpp:
            return skip("local.slots", f"models.local.kind is {self.upstream.config.kind}")
        slots = _total_slots(self.props)
        if slots is None:
            reply = await self.upstream.get_json(self.root + "/slots", self.options.probe_timeout)
            if reply is not None and reply.status == 200 and isinstance(reply.payload, list):
                slots = len(reply.payload)
        if slots is None:
            return skip("local.slots", "llama-server reports no slots in /props or /slots")
        drafts = _parallel_drafts(self.config)
        figures = {"slots": slots, "max_concurrent_drafts": drafts}
        if drafts <= 1:
            return ok("local.slots", f"{slots} slot(s); parallel drafts are not in use", **figures)
        if slots >= drafts:
            return ok(
                "local.slots",
                f"{slots} slots for parallel_speculative's {drafts} concurrent drafts",
                **figures,
            )
        started = (
            "was started without --parallel"
            if slots == 1
            else f"has {slots} slots, fewer than max_concurrent_drafts {drafts}"
        )
        return warn(
            "local.slots",
            f"llama-server {started}: parallel drafts will queue",
            f"start it with --parallel {drafts} (it may split --ctx-size among the slots, so "
            "raise that too)",
            **figures,
        )


def _model_ids(payload: Any) -> list[str]:
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        return []
    return [str(m["id"]) for m in data if isinstance(m, dict) and m.get("id")]


def _n_ctx(props: dict[str, Any] | None) -> int | None:
    settings = props.get("default_generation_settings") if props else None
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    return n_ctx if isinstance(n_ctx, int) else None


def _total_slots(props: dict[str, Any] | None) -> int | None:
    slots = props.get("total_slots") if props else None
    return slots if isinstance(slots, int) and slots > 0 else None


def _parallel_drafts(config: GatewayConfig) -> int:
    """Drafts parallel_speculative runs at once; 1 when no request can reach that strategy."""
    spec = config.speculative_decoding
    routing = config.routing
    reachable = routing.strategy == "parallel_speculative" or (
        routing.client_strategies is None or "parallel_speculative" in routing.client_strategies
    )
    return spec.max_concurrent_drafts if reachable and spec.parallel_enabled else 1


def _stream_fix(error: UpstreamError) -> str:
    if isinstance(error, UpstreamTimeout):
        return "the server is stuck or far too slow: check llama-server's log and --threads"
    if isinstance(error, UpstreamHTTPError) and error.status == 503:
        return "wait for llama-server to finish loading, then run the doctor again"
    return "check llama-server's log; the error above is its own"
