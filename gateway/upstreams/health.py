"""Health probes: one GET against an upstream's health URL, read into a `Health` state; and
the JSON GET the doctor uses for other read-only endpoints."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from gateway.upstreams.errors import MAX_ERROR_BODY, reason

_MAX_JSON_BODY = 1024 * 1024


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


@dataclass(frozen=True, slots=True)
class Probed:
    """What a health URL answered, and how fast."""

    status: int
    raw: bytes
    latency_ms: float


async def probe(
    session: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str],
    *,
    timeout: float,
    request_timeout: aiohttp.ClientTimeout,
) -> Probed | Health:
    """GET `url` within `timeout` seconds: what it answered, or a `down` Health. Never raises."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            async with session.get(url, headers=dict(headers), timeout=request_timeout) as resp:
                raw = await resp.content.read(MAX_ERROR_BODY)
                status = resp.status
    except TimeoutError:
        return Health("down", "health probe timed out")
    except (aiohttp.ClientError, OSError) as exc:
        return Health("down", f"unreachable ({reason(exc)})")
    return Probed(status, raw, (time.perf_counter() - started) * 1000)


def health_from_status(probed: Probed) -> Health:
    """The state an OpenAI-compatible server's `/models` answer tells."""
    status, latency = probed.status, probed.latency_ms
    if status == 200:
        return Health("ok", latency_ms=latency)
    if status in (401, 403):
        return Health("unauthorized", f"HTTP {status}", latency)
    return Health("down", f"HTTP {status}", latency)


@dataclass(frozen=True, slots=True)
class JsonReply:
    """Status and parsed body of a GET; `payload` is None when the body is not JSON."""

    status: int
    payload: Any


async def get_json(
    session: aiohttp.ClientSession, url: str, headers: Mapping[str, str], timeout: float
) -> JsonReply | None:
    """GET `url`; None when nothing answers within `timeout` seconds. Never raises."""
    try:
        async with asyncio.timeout(timeout):
            async with session.get(url, headers=dict(headers)) as resp:
                raw = await resp.content.read(_MAX_JSON_BODY)
                status = resp.status
    except (TimeoutError, aiohttp.ClientError, OSError):
        return None
    try:
        payload: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        payload = None
    return JsonReply(status, payload)
