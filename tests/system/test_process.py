"""The gateway as a real process: kill -9 loses nothing completed; SIGTERM drains; --demo."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import orjson
from paths import REPO_ROOT as ROOT
from support import CEREBRAS_KEY, chat, eventually, post_stream

from gateway.accounting.ledger import Ledger
from gateway.dev.sim import SimServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(
    tmp_path: Path, local: SimServer, cerebras: SimServer, port: int, **server: object
) -> Path:
    config = {
        "models": {
            "local": {"endpoint": local.url},
            "cerebras": {"endpoint": cerebras.url, "api_key": CEREBRAS_KEY},
        },
        "routing": {"strategy": "always_local"},
        "server": {"host": "127.0.0.1", "port": port, **server},
        "storage": {
            "ledger_path": str(tmp_path / "ledger.db"),
            "log_path": str(tmp_path / "gateway.log"),
        },
    }
    path = tmp_path / "gateway.yaml"
    path.write_bytes(orjson.dumps(config))
    return path


@asynccontextmanager
async def gateway_process(config: Path, *extra: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m gateway` run in the config's folder, where relative paths (--demo's) land."""
    env = dict(os.environ)
    env.pop("CEREBRAS_API_KEY", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "--config",
        str(config),
        *extra,
        cwd=config.parent,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def wait_for_output(proc: asyncio.subprocess.Process, text: bytes) -> None:
    """Read the process's output until a line holds `text`."""
    assert proc.stdout is not None
    seen: list[bytes] = []
    while not seen or text not in seen[-1]:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line, f"the process ended before printing {text!r}: {b''.join(seen)!r}"
        seen.append(line)


async def wait_healthy(url: str, proc: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            if proc.returncode is not None:
                output = await proc.stdout.read() if proc.stdout else b""
                raise AssertionError(f"gateway exited: {output.decode()[-2000:]}")
            try:
                async with session.get(url + "/health") as resp:
                    if resp.status in (200, 503):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("gateway did not come up")


async def stats(session: aiohttp.ClientSession, root: str) -> dict:
    async with session.get(root + "/stats") as resp:
        body = await resp.json()
    body.pop("uptime")
    body.pop("memory")  # what this process holds in memory, not what it recorded
    return body


# The /stats blocks read back from the learned state (router.db, learning.db), which the writer
# keeps back for up to SOFT_STATE_DEFER_S to commit many requests' writes together.
LEARNED_STATE = ("learning", "router")


def without_learned_state(stats_body: dict) -> dict:
    return {key: value for key, value in stats_body.items() if key not in LEARNED_STATE}


def committed_conversations(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM conversations").fetchone()[0])


async def test_kill_9_loses_no_completed_request(tmp_path, local_sim, cerebras_sim, client) -> None:
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, local_sim, cerebras_sim, port)

    async def serve(n: int, first: int = 0) -> None:
        for i in range(first, first + n):
            body = chat(
                f"question {i}",
                stream=i % 2 == 0,
                model=("always_local", "always_cerebras")[i % 3 == 0],
            )
            async with client.post(root + "/v1/chat/completions", json=body) as resp:
                assert resp.status == 200
                await resp.read()

    # Killed right after the last answer: every completed request is in the ledger and in
    # /stats; of the learned state, at most the last writes can be missing.
    async with gateway_process(config) as proc:
        await wait_healthy(root, proc)
        await serve(12)
        before = await stats(client, root)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert before["requests"]["total"] == 12
    ledger = Ledger(tmp_path / "ledger.db")
    ledger.open()
    assert len(ledger.rows()) == 12
    async with gateway_process(config) as proc:
        await wait_healthy(root, proc)
        after = await stats(client, root)
        assert without_learned_state(after) == without_learned_state(before)
        kept = after["learning"]["conversations"]
        assert kept <= before["learning"]["conversations"] == 12
        # Killed once the learned state was committed (SOFT_STATE_DEFER_S after its writes):
        # then nothing at all is lost.
        await serve(6, first=12)
        before = await stats(client, root)
        assert before["learning"]["conversations"] == kept + 6
        await eventually(
            lambda: committed_conversations(tmp_path / "learning.db") == kept + 6,
            "the learned state committed",
        )
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    async with gateway_process(config) as proc:
        await wait_healthy(root, proc)
        after = await stats(client, root)
    assert after == before and after["requests"]["total"] == 18


async def test_sigterm_drains_in_flight_and_refuses_new(
    tmp_path, local_sim, cerebras_sim, client
) -> None:
    release = local_sim.hold()  # the in-flight request stays in flight until released
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, local_sim, cerebras_sim, port, shutdown_grace_seconds=10)
    async with gateway_process(config) as proc:
        await wait_healthy(root, proc)
        in_flight = asyncio.create_task(post_stream(client, root + "/v1", chat(stream=True)))
        await eventually(lambda: local_sim.requests, "the request reaches the upstream")
        proc.send_signal(signal.SIGTERM)
        await wait_for_output(proc, b"draining: 1 request(s) in flight")
        async with (
            asyncio.timeout(10),
            client.post(  # admitted, it would wait at the upstream
                root + "/v1/chat/completions", json=chat()
            ) as resp,
        ):
            assert resp.status == 503
            assert int(resp.headers["retry-after"]) >= 1
            assert set((await resp.json())["error"]) == {"message", "type", "param", "code"}
        release.set()
        reply = await in_flight
        assert reply.data[-1] == "[DONE]", "the in-flight stream was allowed to finish"
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    ledger = Ledger(tmp_path / "ledger.db")
    ledger.open()
    rows = ledger.rows()  # the served request, and the one refused while draining
    assert sorted((r.outcome, r.http_status) for r in rows) == [("ok", 200), ("rejected", 503)]


async def test_demo_serves_a_stream(tmp_path, client) -> None:
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    env_config = tmp_path / "empty.yaml"
    env_config.write_text(f"storage: {{log_path: '{tmp_path}/demo.log'}}\n")
    async with gateway_process(
        env_config, "--demo", "--port", str(port), "--strategy", "always_local"
    ) as proc:
        await wait_healthy(root, proc)
        reply = await post_stream(
            client, root + "/v1", chat(stream=True, stream_options={"include_usage": True})
        )
        assert reply.status == 200
        assert reply.data[-1] == "[DONE]"
        assert reply.text
        assert reply.chunks[-1]["usage"]["completion_tokens"] > 0
    # the demo's ledger is relative to the working directory: here, not the checkout
    assert (tmp_path / "data" / "demo_ledger.db").exists()


async def test_the_start_up_banner_shows_no_key_written_into_an_endpoint(
    tmp_path, local_sim, cerebras_sim
) -> None:
    """A key written as an endpoint's user name is no URL password, but still a secret: the
    banner on stdout masks it as every other place that shows the config does."""
    port = free_port()
    config = write_config(tmp_path, local_sim, cerebras_sim, port)
    data = orjson.loads(config.read_bytes())
    data["models"]["local"]["endpoint"] = local_sim.url.replace(
        "http://", f"http://{CEREBRAS_KEY}@"
    )
    config.write_bytes(orjson.dumps(data))
    async with gateway_process(config) as proc:
        assert proc.stdout is not None
        banner = b""
        while b"listening on" not in banner:
            banner = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert banner, "the process ended before its banner"
    assert CEREBRAS_KEY.encode() not in banner
    assert b"local=http://***@127.0.0.1:" in banner
