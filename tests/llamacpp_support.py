"""Helpers for the llamacpp integration tests: direct llama-server calls and a recording tap.

The tap is a transparent HTTP proxy on 127.0.0.1 put between the gateway and llama-server: it
forwards every request unchanged, streams every response back as it arrives, and keeps both, so a
test can compare what the client got with what llama.cpp itself sent (its `timings`, its logprobs),
which the gateway deliberately does not pass on.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.dev.llama_server import (
    LlamaServer,
    LocalModelError,
    find_binary,
    find_model,
    free_port,
    setup_note,
)

STARTUP_TIMEOUT_S = 90.0
SESSION_CTX = 2048


def skip_or_fail(reason: str) -> None:
    """Skip with `reason`; fail instead when GLM_REQUIRE_LLAMACPP is set."""
    if os.environ.get("GLM_REQUIRE_LLAMACPP"):
        pytest.fail(reason + " (GLM_REQUIRE_LLAMACPP is set)")
    pytest.skip(reason)


def launch_llama(install: tuple[Path, Path], log_dir: Path, *, ctx: int) -> LlamaServer:
    """A ready llama-server on a free port (the command line `LlamaServer` builds for all).

    Retries twice if the port got taken meanwhile. A server that cannot run here (it exits or is
    killed by a signal, such as SIGILL from a CPU feature the host refuses) skips the test with
    the reason, or fails it under GLM_REQUIRE_LLAMACPP: a broken build is not a gateway bug.
    """
    binary, model = install
    failure = ""
    for attempt in range(3):
        server = LlamaServer(
            binary,
            model,
            port=free_port(),
            ctx=ctx,
            threads=2,
            slots=1,
            log_path=log_dir / f"llama-server-{ctx}-{attempt}.log",
        )
        server.start()
        try:
            server.wait_ready(STARTUP_TIMEOUT_S)
            return server
        except LocalModelError as exc:
            server.stop()
            failure = str(exc)
            if server.process is not None and server.process.returncode not in (None, 0):
                break  # it died: another port will not help
    skip_or_fail(f"llama-server cannot run on this host: {failure}")
    raise AssertionError("unreachable")


@contextmanager
def running_llama(install: tuple[Path, Path], log_dir: Path, *, ctx: int) -> Iterator[LlamaServer]:
    """`launch_llama`, stopped on exit."""
    server = launch_llama(install, log_dir, ctx=ctx)
    try:
        yield server
    finally:
        server.stop()


def find_install() -> tuple[Path, Path]:
    """(binary, model) as the setup script left them, or a skip (a failure when required)."""
    if os.environ.get("GLM_SKIP_LLAMACPP"):
        pytest.skip("GLM_SKIP_LLAMACPP is set: llama.cpp integration tests skipped on purpose")
    note = setup_note()
    if note:
        skip_or_fail(f"scripts/setup_local_model.sh found no working llama-server: {note}")
    try:
        return find_binary(), find_model()
    except LocalModelError as exc:
        skip_or_fail(f"no llama-server to test against: {exc}")
    raise AssertionError("unreachable")


# Sampling that makes llama.cpp's answer a function of the prompt (temperature 0, fixed seed).
GREEDY: dict[str, Any] = {"temperature": 0, "seed": 42}
_HOP_HEADERS = {"content-type", "accept"}


def sse_payloads(raw: bytes) -> list[Any]:
    """The parsed `data:` payloads of an SSE body; `[DONE]` stays the string "[DONE]"."""
    out: list[Any] = []
    for event in raw.split(b"\n\n"):
        for line in event.split(b"\n"):
            if line.startswith(b"data: "):
                payload = line[len(b"data: ") :]
                out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return out


def stream_text(payloads: list[Any]) -> str:
    """The answer text of a streamed chat completion."""
    return "".join(
        p["choices"][0]["delta"].get("content") or ""
        for p in payloads
        if isinstance(p, dict) and p.get("choices") and "delta" in p["choices"][0]
    )


def timings_of(payloads: list[Any]) -> dict[str, Any]:
    """llama.cpp's own `timings` object (on its last chunk)."""
    found = [p["timings"] for p in payloads if isinstance(p, dict) and "timings" in p]
    assert len(found) == 1, f"expected one timings object, got {len(found)}"
    timings: dict[str, Any] = found[0]
    return timings


def token_logprobs(payloads: list[Any]) -> list[float]:
    """The logprob of every generated token, as llama.cpp streamed them."""
    out: list[float] = []
    for p in payloads:
        if not isinstance(p, dict) or not p.get("choices"):
            continue
        logprobs = p["choices"][0].get("logprobs") or {}
        out += [float(entry["logprob"]) for entry in logprobs.get("content") or []]
    return out


@dataclass(slots=True)
class DirectReply:
    status: int
    raw: bytes
    seconds: float

    @property
    def payloads(self) -> list[Any]:
        return sse_payloads(self.raw)

    @property
    def text(self) -> str:
        return stream_text(self.payloads)

    @property
    def json(self) -> Any:
        return orjson.loads(self.raw)


async def llama_direct(root: str, body: dict[str, Any]) -> DirectReply:
    """POST a chat request straight to llama-server (no gateway); streamed unless body says not."""
    body = {"stream": True, **body}
    if body["stream"]:
        body.setdefault("stream_options", {"include_usage": True})
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        async with session.post(root + "/v1/chat/completions", json=body) as resp:
            raw = await resp.read()
            return DirectReply(resp.status, raw, time.monotonic() - started)


@dataclass(frozen=True, slots=True)
class SlotState:
    """Slot 0 of a one-slot llama-server (GET /slots): busy, and tokens decoded and left to
    decode for its current task (an idle slot reports 0 and -1)."""

    busy: bool
    n_decoded: int
    n_remain: int


async def slot_state(root: str) -> SlotState:
    async with aiohttp.ClientSession() as session:
        async with session.get(root + "/slots") as resp:
            slots = await resp.json()
    slot = slots[0]
    progress = slot.get("next_token") or {}
    if isinstance(progress, list):  # newer builds: one entry per sequence
        progress = progress[0] if progress else {}
    return SlotState(
        bool(slot.get("is_processing")),
        int(progress.get("n_decoded", 0)),
        int(progress.get("n_remain", 0)),
    )


async def slots_busy(root: str) -> bool:
    """Whether any llama-server slot is processing a task (GET /slots)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(root + "/slots") as resp:
            slots = await resp.json()
    return any(slot.get("is_processing") for slot in slots)


async def wait_slots_idle(root: str, timeout: float) -> float:
    """Seconds until no slot is processing; raises AssertionError after `timeout`."""
    started = time.monotonic()
    while await slots_busy(root):
        if time.monotonic() - started > timeout:
            raise AssertionError(f"a llama-server slot is still busy after {timeout:g}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@dataclass(slots=True)
class TapRecord:
    """One proxied exchange: what went to the upstream and what came back."""

    method: str
    path: str
    request: bytes
    status: int = 0
    response: bytes = b""
    complete: bool = False

    @property
    def request_json(self) -> Any:
        return orjson.loads(self.request) if self.request else None

    @property
    def payloads(self) -> list[Any]:
        return sse_payloads(self.response)


@dataclass
class UpstreamTap:
    """A recording proxy in front of `target` (a root URL); `url` is its /v1 base for a config."""

    target: str
    records: list[TapRecord] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def chat_records(self) -> list[TapRecord]:
        return [r for r in self.records if r.path.endswith("/chat/completions")]

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        record = TapRecord(request.method, request.path, body)
        self.records.append(record)
        headers = {k: v for k, v in request.headers.items() if k.lower() in _HOP_HEADERS}
        async with self._session.request(
            request.method, self.target + request.path_qs, data=body, headers=headers
        ) as upstream:
            record.status = upstream.status
            response = web.StreamResponse(status=upstream.status)
            response.content_type = upstream.content_type
            await response.prepare(request)
            async for data in upstream.content.iter_any():
                record.response += data
                await response.write(data)
            record.complete = True
            await response.write_eof()
            return response
