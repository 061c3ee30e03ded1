"""Upstreams by config `kind`: one module per provider, all behind OpenAICompatibleUpstream."""

from __future__ import annotations

import aiohttp

from gateway.accounting.records import UpstreamName
from gateway.config import ModelConfig
from gateway.upstreams.base import Health, OpenAICompatibleUpstream, UpstreamStream
from gateway.upstreams.cerebras import CerebrasUpstream
from gateway.upstreams.llamacpp import LlamaCppUpstream

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
) -> OpenAICompatibleUpstream:
    return UPSTREAM_KINDS[config.kind](name, config, session, max_event_bytes=max_event_bytes)


__all__ = [
    "CerebrasUpstream",
    "Health",
    "LlamaCppUpstream",
    "OpenAICompatibleUpstream",
    "UPSTREAM_KINDS",
    "UpstreamStream",
    "build_upstream",
]
