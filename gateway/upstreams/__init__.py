"""Upstreams by config `kind`: callers use the `Upstream` protocol; each provider's quirks live
in its own module on top of the shared OpenAI-compatible base.

- protocol: what callers see (`Upstream`, `Stream`); fake: an in-process Upstream for unit tests
- base: one call's request and settlement; cerebras, llamacpp: the providers' quirks
- stream: SSE reading into normalised chunks; errors: statuses and bodies to gateway errors
- billing: what a call is billed for (`Opening`: the call as its caller receives it); health:
  probes; client: the aiohttp session; lean: the plain-http client of streamed calls;
  response: what both clients' responses offer
"""

from __future__ import annotations

import aiohttp

from gateway.accounting.records import UpstreamName
from gateway.config import ModelConfig
from gateway.upstreams.base import OpenAICompatibleUpstream
from gateway.upstreams.billing import Opening
from gateway.upstreams.cerebras import CerebrasUpstream
from gateway.upstreams.health import Health
from gateway.upstreams.lean import LeanPool
from gateway.upstreams.llamacpp import LlamaCppUpstream
from gateway.upstreams.protocol import Stream, Upstream
from gateway.upstreams.stream import UpstreamStream

UPSTREAM_KINDS: dict[str, type[OpenAICompatibleUpstream]] = {
    "llamacpp": LlamaCppUpstream,
    "cerebras": CerebrasUpstream,
    "openai": OpenAICompatibleUpstream,
}


def build_upstream(
    name: UpstreamName,
    config: ModelConfig,
    session: aiohttp.ClientSession,
    *,
    max_event_bytes: int,
    pool: LeanPool | None = None,
) -> OpenAICompatibleUpstream:
    """`pool`: streamed calls to a plain-http endpoint use the lean client (else `session`)."""
    return UPSTREAM_KINDS[config.kind](
        name, config, session, max_event_bytes=max_event_bytes, pool=pool
    )


__all__ = [
    "CerebrasUpstream",
    "Health",
    "LeanPool",
    "LlamaCppUpstream",
    "OpenAICompatibleUpstream",
    "Opening",
    "Stream",
    "UPSTREAM_KINDS",
    "Upstream",
    "UpstreamStream",
    "build_upstream",
]
