"""Real gateway processes sharing state through a real redis-server: `--workers 2` on one port,
and the reservations of a replica killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from redis_support import RedisServer, find_redis_server
from support import CEREBRAS_KEY, chat, post_stream

from gateway.dev.sim import SimServer
from gateway.dev.sim.server import update_options
from system.test_process import ROOT, free_port, wait_healthy


def shared_config(
    tmp_path: Path, local: SimServer, cerebras: SimServer, port: int, redis_url: str, **state: Any
) -> Path:
    config = {
        "models": {
            "local": {"endpoint": local.url},
            "cerebras": {"endpoint": cerebras.url, "api_key": CEREBRAS_KEY},
        },
        "routing": {"strategy": "always_cerebras"},
        "server": {"host": "127.0.0.1", "port": port, "shutdown_grace_seconds": 1},
        "storage": {
            "ledger_path": str(tmp_path / "ledger.db"),
            "log_path": str(tmp_path / "gateway.log"),
        },
        "state": {"redis_url": redis_url, **state},
    }
    path = tmp_path / "gateway.yaml"
    path.write_bytes(orjson.dumps(config))
    return path


async def start(config: Path, *extra: str) -> asyncio.subprocess.Process:
    """`python -m gateway` run in the config's folder: any relative path lands there."""
    env = {k: v for k, v in os.environ.items() if k != "CEREBRAS_API_KEY"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "--config", str(config), *extra,
        cwd=config.parent, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # the workers are its children: one group to stop
    )  # fmt: skip


async def stop(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> None:
    if proc.returncode is None:
        os.killpg(proc.pid, sig)
    try:
        await asyncio.wait_for(proc.wait(), 20)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def print_output(proc: asyncio.subprocess.Process) -> None:
    """Stop the gateway, then print its output, for a failure's report
    (pytest shows what a failed test printed)."""
    await stop(proc)
    output = await proc.stdout.read() if proc.stdout else b""
    print(output.decode(errors="replace")[-8000:])


async def fleet_stats_from_both_workers(url: str, *, total: int) -> dict[str, Any]:
    """/stats once both workers have answered it and the fleet counts `total` requests.

    Each GET opens a fresh connection, so SO_REUSEPORT spreads them over the workers; the
    publications land just after the answers, hence the short polling."""
    answered_by: set[str] = set()
    stats: dict[str, Any] = {}
    for _ in range(200):
        async with aiohttp.ClientSession() as fresh, fresh.get(url + "/stats") as resp:
            stats = await resp.json()
        answered_by.add(stats["ledger"]["path"])
        if stats["requests"]["total"] == total and len(answered_by) == 2:
            break
        await asyncio.sleep(0.02)
    assert len(answered_by) == 2, "both workers serve the port"
    return stats


async def test_two_workers_serve_one_port_with_shared_state(
    tmp_path, client, local_sim, cerebras_sim, redis_server: RedisServer
) -> None:
    port = free_port()
    config = shared_config(tmp_path, local_sim, cerebras_sim, port, redis_server.url)
    proc = await start(config, "--workers", "2")
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, proc)
        for _ in range(6):
            async with aiohttp.ClientSession() as fresh:  # new connections: spread over workers
                reply = await post_stream(fresh, url + "/v1", chat("hi", stream=True))
                assert reply.status == 200
        try:
            stats = await fleet_stats_from_both_workers(url, total=6)
        except AssertionError:
            await print_output(proc)
            raise
        assert stats["fleet"]["replicas_reported"] == 2
        assert stats["requests"]["total"] == 6 == len(cerebras_sim.requests)
        assert (tmp_path / "ledger.worker1.db").exists()
    finally:
        await stop(proc)
    assert proc.returncode == 0


async def test_workers_without_redis_are_refused(tmp_path, local_sim, cerebras_sim) -> None:
    config = shared_config(tmp_path, local_sim, cerebras_sim, free_port(), "")
    proc = await start(config, "--workers", "2")
    output, _ = await proc.communicate()
    assert proc.returncode == 2
    assert b"server.workers" in output and b"state.redis_url" in output


async def test_reservations_of_a_killed_replica_expire(
    tmp_path, client, local_sim, cerebras_sim, redis_server: RedisServer
) -> None:
    update_options(cerebras_sim.state, {"ttft": 30})  # the call is in flight when it dies
    port = free_port()
    config = shared_config(
        tmp_path, local_sim, cerebras_sim, port, redis_server.url, reservation_ttl_s=1
    )
    proc = await start(config)
    root = f"http://127.0.0.1:{port}"
    url = root + "/v1"
    store = aioredis.Redis.from_url(redis_server.url)
    try:
        await wait_healthy(root, proc)
        request = asyncio.create_task(post_stream(client, url, chat("hi", stream=True)))
        for _ in range(200):
            if await store.zcard("glm:cerebras:reserved"):
                break
            await asyncio.sleep(0.02)
        assert await store.zcard("glm:cerebras:reserved") == 1
        await stop(proc, signal.SIGKILL)
        request.cancel()
        await asyncio.gather(request, return_exceptions=True)
        assert await store.zcard("glm:cerebras:reserved") == 1  # nobody gave it back
        expiry = await store.zscore("glm:cerebras:reserved", (await store.zrange(
            "glm:cerebras:reserved", 0, -1))[0])  # fmt: skip
        # Another replica's next admission drops every reservation past its TTL.
        update_options(cerebras_sim.state, {"ttft": 0})
        port2 = free_port()
        other = tmp_path / "other"
        other.mkdir()
        proc = await start(shared_config(other, local_sim, cerebras_sim, port2, redis_server.url))
        await wait_healthy(f"http://127.0.0.1:{port2}", proc)
        url2 = f"http://127.0.0.1:{port2}/v1"
        while (await store.time())[0] <= expiry:
            await asyncio.sleep(0.1)
        reply = await post_stream(client, url2, chat("hi", stream=True))
        assert reply.status == 200
        assert await store.zcard("glm:cerebras:reserved") == 0
    finally:
        await stop(proc)
        await store.aclose()


async def test_demo_with_two_workers_brings_its_own_redis(tmp_path) -> None:
    find_redis_server()  # skips (or fails under GLM_REQUIRE_REDIS=1) without one
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in ("CEREBRAS_API_KEY", "GATEWAY_REDIS_URL")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "--demo", "--workers", "2", "--port", str(port),
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        found = re.search(rb"redis-server \(pid \d+\) at redis://127\.0\.0\.1:(\d+)/0", line)
        assert found, line
        redis_port = int(found[1])
        await wait_healthy(url, proc)
        for _ in range(6):
            async with aiohttp.ClientSession() as fresh:  # new connections: spread over workers
                reply = await post_stream(fresh, url + "/v1", chat("What is 2+2?"))
                assert reply.status == 200
        stats = await fleet_stats_from_both_workers(url, total=6)
        assert stats["fleet"]["replicas_reported"] == 2
        assert stats["requests"]["total"] == 6
        os.kill(proc.pid, signal.SIGTERM)  # the parent alone: it stops workers, then Redis
        output, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, output.decode()[-2000:]
        assert b"redis-server stopped" in output
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", redis_port), timeout=1).close()
    except BaseException:
        await print_output(proc)
        raise
    finally:
        await stop(proc)


async def test_workers_with_local_model_are_refused_saying_why(tmp_path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "--local-model", "--workers", "2",
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await proc.communicate()
    assert proc.returncode == 2
    assert b"--local-model" in output and b"llama-server" in output
