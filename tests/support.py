"""Shared helpers for the gateway tests: configs pointing at simulators, SSE reading."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from gateway.accounting.records import RequestRecord, UpstreamCall
from gateway.config import GatewayConfig, StorageConfig, parse_config
from gateway.dev.sim import ScriptedAnswer, SimServer
from gateway.http.app import create_app
from gateway.http.services import SERVICES_KEY, Services
from gateway.logs import remove_logging, setup_logging
from gateway.storage.writer import WriterThread

CEREBRAS_KEY = "csk-test-secret-4f9a1c2e7b"

if TYPE_CHECKING:
    from gateway.quota.gate import RateLimitGate


def gateway_config(
    tmp_path: Path,
    local_url: str,
    cerebras_url: str,
    *,
    strategy: str = "always_local",
    api_key: str = CEREBRAS_KEY,
    **sections: Any,
) -> GatewayConfig:
    """A config for tests: both upstreams on loopback, ledger and log under tmp_path."""
    data: dict[str, Any] = {
        "models": {
            "local": {"endpoint": local_url, "model": "test-local"},
            "cerebras": {"endpoint": cerebras_url, "api_key": api_key},
        },
        "routing": {"strategy": strategy},
        "timeouts": {"connect": 2, "first_token": 5, "idle": 5},
        "storage": {
            "ledger_path": str(tmp_path / "ledger.db"),
            "log_path": str(tmp_path / "logs" / "api_server.log"),
        },
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            merged = dict(data[key])
            for k, v in value.items():
                if isinstance(v, dict) and isinstance(merged.get(k), dict):
                    merged[k] = {**merged[k], **v}
                else:
                    merged[k] = v
            data[key] = merged
        else:
            data[key] = value
    return parse_config(data, source="<test>", env={})


@contextmanager
def refused_url() -> Iterator[str]:
    """A loopback upstream URL whose connects are refused while the context lasts: its port is
    bound and never listened on. A port only found free and released again can be handed to
    the next server started, such as the gateway under test, which would then call itself."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


@dataclass
class SSEReply:
    status: int
    headers: CIMultiDict[str]
    raw: bytes
    events: list[bytes] = field(default_factory=list)

    @property
    def data(self) -> list[Any]:
        """Parsed `data:` payloads; `[DONE]` stays the string "[DONE]"."""
        out: list[Any] = []
        for event in self.events:
            if event.startswith(b":"):
                continue
            assert event.startswith(b"data: "), event
            payload = event[len(b"data: ") :]
            out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
        return out

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [d for d in self.data if isinstance(d, dict)]

    @property
    def text(self) -> str:
        return "".join(
            c["choices"][0]["delta"].get("content") or ""
            for c in self.chunks
            if c.get("choices") and "delta" in c["choices"][0]
        )

    @property
    def reasoning(self) -> str:
        return "".join(
            c["choices"][0]["delta"].get("reasoning_content") or ""
            for c in self.chunks
            if c.get("choices") and "delta" in c["choices"][0]
        )


def split_events(raw: bytes) -> list[bytes]:
    """Split a raw SSE body into events (each must end with a blank line)."""
    assert raw.endswith(b"\n\n") or not raw, raw[-200:]
    return [e for e in raw.split(b"\n\n") if e]


async def post_stream(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> SSEReply:
    async with session.post(url + "/chat/completions", json=body, headers=headers) as resp:
        raw = await resp.read()
        reply = SSEReply(resp.status, CIMultiDict(resp.headers), raw)
        if resp.status == 200 and resp.content_type == "text/event-stream":
            reply.events = split_events(raw)
        return reply


def chat(content: str = "hello", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "glm-token-saver",
        "messages": [{"role": "user", "content": content}],
    }
    body.update(extra)
    return body


# The seven strategies of the original project; tests that sweep them compare this with the
# registry.
ALL_STRATEGIES = [
    "always_local",
    "always_cerebras",
    "smart_routing",
    "adaptive_cerebras",
    "speculative_decoding",
    "parallel_speculative",
    "smart_speculative",
]


async def read_then_leave(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], events: int
) -> float:
    """Stream a request, read `events` data events, close the connection; return when."""
    resp = await session.post(url + "/chat/completions", json=body)
    assert resp.status == 200
    seen = 0
    async for line in resp.content:
        if line.startswith(b"data: "):
            seen += 1
            if seen >= events:
                break
    resp.close()
    return time.monotonic()


async def eventually(
    condition: Callable[[], object], what: str | Callable[[], str], timeout: float = 10.0
) -> None:
    """Wait until `condition()` is true; fail saying `what` (called then, if callable: the state
    at the deadline) did not happen within `timeout` s.

    For events another task brings about: the deadline only bounds a failure (it is far above
    the time the event takes, also on a loaded machine), the test never measures it.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"not within {timeout:g} s: {said}")
        await asyncio.sleep(0.01)


def script(sim: SimServer, prompt: str, content: str = "", **answer: Any) -> None:
    """Make `sim` answer `prompt` with `content` (ScriptedAnswer's other fields in `answer`),
    keeping the answers scripted before."""
    table = dict(sim.options.script or {})
    table[prompt] = ScriptedAnswer(content, **answer)
    sim.options.script = table


def calibrate_drafts(router: Any) -> None:
    """Give the router's draft calibrator a full window of scores (0.1, 0.5, 0.9 alike)."""
    for score in (0.1, 0.5, 0.9) * 10:
        router.calibrators["draft"].observe(score)


def door_record(rid: str, door: str) -> RequestRecord:
    """A finished always_local request that came through `door` (3 prompt, 4 completion tokens)."""
    return RequestRecord(
        request_id=rid,
        started_at=1_700_000_000.0,
        strategy="always_local",
        stream=False,
        door=door,
        model_used="local",
        calls=[UpstreamCall("local", prompt_tokens=3, completion_tokens=4)],
    )


@contextmanager
def gateway_log(storage: StorageConfig, secrets: Iterable[str]) -> Iterator[Callable[[], str]]:
    """The gateway's logging installed (file only) for the block, which gets `read()`: the log
    file's text once every handler has flushed. The handlers are removed on exit."""
    path = setup_logging(storage, secrets, to_stderr=False)

    def read() -> str:
        for handler in logging.getLogger().handlers:
            handler.flush()
        return path.read_text()

    try:
        yield read
    finally:
        remove_logging()


def use_clock(gate: RateLimitGate, clock: Callable[[], float]) -> None:
    """Run `gate` and every upstream's rate-limit watcher on `clock` (they must share one)."""
    gate.clock = clock
    for upstream in gate.upstreams.values():
        upstream.watcher.clock = clock


@dataclass
class Gateway:
    server: TestServer
    app: web.Application
    config: GatewayConfig

    @property
    def url(self) -> str:
        return str(self.server.make_url("/v1"))

    @property
    def root(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def services(self) -> Services:
        return self.app[SERVICES_KEY]


# A fixture's `make(...)`: a started Gateway.
GatewayFactory = Callable[..., Awaitable["Gateway"]]


async def start_gateway(aiohttp_server: Any, config: GatewayConfig) -> Gateway:
    """The gateway app for `config`, served on 127.0.0.1 by the `aiohttp_server` fixture."""
    app = create_app(config)
    return Gateway(await aiohttp_server(app), app, config)


def recorded_puts(monkeypatch: pytest.MonkeyPatch, thread: WriterThread) -> list[list[Any]]:
    """What leaves for `thread` from now on: each list of writes sent on together (a write put,
    or a hand-off's held writes), before they are kept, queued or written inline."""
    puts: list[list[Any]] = []
    real_route = thread._route

    def counted(writes: list[Any]) -> list[Any]:
        puts.append(list(writes))
        return real_route(writes)

    monkeypatch.setattr(thread, "_route", counted)
    return puts
