"""The floor of the stack: a bare aiohttp relay on uvloop, and the gateway measured beside it.

Used by `bench_overhead.py`. The relay copies the upstream's bytes to the client as they are read,
with no parsing, so anything the gateway costs beyond it is the gateway's own work. CPU is read from
the kernel's per-thread run time (`/proc/PID/task/*/schedstat`, nanoseconds), so threads such as a
log listener count too.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from benchlib import HOST, Proc, free_port, spawn


def serve_bare_relay(port: int, upstream: str, close: bool = False) -> None:
    """Run the bare relay: every request is forwarded to `upstream` and its bytes copied back.

    `close`: ask for `Connection: close` upstream, as the gateway does for llama.cpp (whose server
    drops kept-alive connections), so that both pay a fresh connection per call."""
    import uvloop

    async def main() -> None:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

        async def relay(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
            if close:
                headers["Connection"] = "close"
            async with session.request(
                request.method, upstream + request.path_qs, data=body, headers=headers
            ) as up:
                resp = web.StreamResponse(status=up.status)
                resp.content_type = up.content_type
                await resp.prepare(request)
                async for data in up.content.iter_any():
                    await resp.write(data)
                await resp.write_eof()
                return resp

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", relay)
        # As the gateway: a client that leaves cancels the handler, which closes the upstream.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, HOST, port).start()
        await asyncio.Event().wait()

    uvloop.run(main())


def spawn_bare_relay(
    upstream: str,
    *,
    cpus: set[int] | None = None,
    close: bool = False,
    prefix: tuple[str, ...] = (),
) -> Proc:
    port = free_port()
    args = [*prefix, sys.executable, str(Path(__file__).resolve()), str(port), upstream]
    if close:
        args.append("close")
    return spawn(args, f"http://{HOST}:{port}", cpus=cpus)


def cpu_ns(pid: int) -> int:
    """Nanoseconds on CPU so far, summed over the process's live threads."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


_PASTED = (
    "The import fails when the totals are computed for more than a hundred rows, and the "
    "report shows the wrong average per customer. Here is the function and the error:\n"
    "def total(rows: list[dict[str, float]]) -> float:\n"
    "    return sum(row['amount'] * row.get('rate', 1.0) for row in rows) / len(rows)\n"
    "Traceback (most recent call last): ZeroDivisionError: division by zero\n"
)


def pasted_text(size: int) -> str:
    """`size` characters of what a user pastes into an ask: prose, code and an error, repeated."""
    return (_PASTED * (size // len(_PASTED) + 1))[:size]


def cline_body(tools: int = 25, size: int = 40_000) -> dict[str, Any]:
    """A Cline-shaped streamed request: `tools` tool schemas and about `size` bytes of JSON."""
    schema = [
        {
            "type": "function",
            "function": {
                "name": f"tool_{i}",
                "description": "Reads or changes files in the workspace. " * 6,
                "parameters": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "A path in the workspace."},
                        "content": {"type": "string", "description": "The new file content."},
                    },
                    "required": ["path"],
                },
            },
        }
        for i in range(tools)
    ]
    body: dict[str, Any] = {
        "model": "bench",
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": schema,
        "tool_choice": "auto",
        "messages": [],
    }
    import orjson

    line = "You are Cline, a software engineer. Use the tools to read and edit files.\n"
    system = ""
    while len(orjson.dumps({**body, "messages": [{"role": "system", "content": system}]})) < size:
        system += line
    body["messages"] = [
        {"role": "system", "content": system},
        {"role": "user", "content": "Rename the function load to read in src/io.py."},
    ]
    return body


async def stream_to_end(session: aiohttp.ClientSession, base: str, body: dict[str, Any]) -> int:
    """Stream a request to its end; return how many data events carried a chunk."""
    count = 0
    async with session.post(base + "/v1/chat/completions", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.content:
            if line.startswith(b"data: {"):
                count += 1
    return count


Body = dict[str, Any] | Callable[[], dict[str, Any]]
"""A request body, or what makes a new one for each request (e.g. an ask that never repeats)."""


def _made(body: Body) -> dict[str, Any]:
    return body() if callable(body) else body


async def first_content(session: aiohttp.ClientSession, base: str, body: Body) -> float:
    """Seconds to the first event carrying answer content; the rest of the stream is dropped."""
    started = time.perf_counter()
    async with session.post(base + "/v1/chat/completions", json=_made(body)) as resp:
        resp.raise_for_status()
        async for line in resp.content:
            if line.startswith(b"data: {") and b'"content":"' in line:
                if b'"content":""' not in line:
                    elapsed = time.perf_counter() - started
                    resp.close()
                    return elapsed
    raise RuntimeError("the stream ended without content")


async def cpu_per_request(
    session: aiohttp.ClientSession, base: str, pid: int, body: Body, n: int
) -> float:
    """Seconds of the process's CPU per request, over `n` sequential streamed requests."""
    before = cpu_ns(pid)
    for _ in range(n):
        await stream_to_end(session, base, _made(body))
    return (cpu_ns(pid) - before) / 1e9 / n


async def cpu_per_chunk(
    session: aiohttp.ClientSession, base: str, pid: int, body: dict[str, Any]
) -> float:
    """Seconds of the process's CPU per relayed chunk, over one long stream."""
    before = cpu_ns(pid)
    chunks = await stream_to_end(session, base, body)
    return (cpu_ns(pid) - before) / 1e9 / max(1, chunks)


@contextlib.asynccontextmanager
async def background_streams(
    session: aiohttp.ClientSession, base: str, count: int, body: dict[str, Any]
) -> AsyncIterator[None]:
    """Keep `count` long streams flowing (read to the end) while the block runs."""
    tasks = [asyncio.create_task(stream_to_end(session, base, body)) for _ in range(count)]
    try:
        await asyncio.sleep(1.0)  # let them all start
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def ratio_row(name: str, gateway: float, relay: float, scale: float, unit: str) -> str:
    return (
        f"{name:<44} {gateway * scale:9.3f} {relay * scale:9.3f} {unit:<3} "
        f"{gateway / relay if relay else float('nan'):6.2f}x"
    )


if __name__ == "__main__":
    serve_bare_relay(int(sys.argv[1]), sys.argv[2], close=sys.argv[3:] == ["close"])
