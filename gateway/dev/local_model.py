"""`--local-model`: a real llama-server with a small model in front of the gateway.

`local_model_upstreams()` starts llama-server on 127.0.0.1:41447 (see `gateway.dev.llama_server`),
keeps Cerebras real when it has a key and simulates it otherwise.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from gateway.config import GatewayConfig, mask_url
from gateway.dev.llama_server import (
    DEFAULT_CTX,
    DEFAULT_THREADS,
    HOST,
    LlamaServer,
    LocalModelError,
    find_binary,
    find_model,
    port_in_use,
)

DEFAULT_PORT = 41447
SIM_CEREBRAS_KEY = "local-model-sim-key-not-secret"
SIM_LEDGER = "data/local_model_sim_ledger.db"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise LocalModelError(f"{name}={value!r} is not an integer") from None


@asynccontextmanager
async def local_model_upstreams(config: GatewayConfig) -> AsyncIterator[GatewayConfig]:
    """`--local-model`: start llama-server, wait for /health, yield the config pointing at it.

    The server listens on 127.0.0.1:$GLM_LLAMA_PORT (default 41447) with $GLM_LLAMA_CTX (4096)
    context and $GLM_LLAMA_THREADS (2) threads, and is stopped on exit. Cerebras stays the real
    API when it has a key (CEREBRAS_API_KEY); otherwise a simulated Cerebras runs on loopback and
    the ledger moves to SIM_LEDGER so simulated costs never mix with real ones.
    """
    port = _env_int("GLM_LLAMA_PORT", DEFAULT_PORT)
    if port_in_use(port):
        raise LocalModelError(
            f"{HOST}:{port} is already in use; if that is your own llama-server, run without "
            "--local-model (conf/gateway.yaml points at it), else stop it or set GLM_LLAMA_PORT"
        )
    binary = find_binary()
    model = await asyncio.to_thread(find_model)
    log_path = Path(config.storage.log_path).parent / "llama-server.log"
    server = LlamaServer(
        binary,
        model,
        port=port,
        ctx=_env_int("GLM_LLAMA_CTX", DEFAULT_CTX),
        threads=_env_int("GLM_LLAMA_THREADS", DEFAULT_THREADS),
        log_path=log_path,
    )
    server.start()
    assert server.process is not None
    try:
        print(
            f"local-model: llama-server (pid {server.process.pid}, own process group) "
            f"loading {model.name} on {server.root}; log {log_path}",
            flush=True,
        )
        await server.wait_ready_async()
        print(f"local-model: llama-server healthy at {server.root}/health", flush=True)
        models = dict(config.models)
        models["local"] = replace(
            models["local"], enabled=True, endpoint=server.url, model=server.model_name
        )
        config = replace(config, models=models)
        async with _cerebras(config) as config:
            yield config
    finally:
        server.stop()
        print("local-model: llama-server stopped", flush=True)


@asynccontextmanager
async def _cerebras(config: GatewayConfig) -> AsyncIterator[GatewayConfig]:
    """The real Cerebras when a key is configured, else a simulated one (said at start-up)."""
    cerebras = config.cerebras
    if cerebras.api_key:
        print(
            f"local-model: Cerebras is the REAL API at {mask_url(cerebras.endpoint)} (key set)",
            flush=True,
        )
        yield config
        return
    from gateway.dev.sim import SimOptions, running_sim

    options = SimOptions(
        profile="cerebras", ttft=0.3, tps=600.0, answer_tokens=80, api_key=SIM_CEREBRAS_KEY
    )
    async with running_sim(options) as sim:
        models = dict(config.models)
        models["cerebras"] = replace(
            models["cerebras"], enabled=True, endpoint=sim.url, api_key=SIM_CEREBRAS_KEY
        )
        storage = replace(config.storage, ledger_path=SIM_LEDGER)
        print(
            f"local-model: CEREBRAS_API_KEY is not set: Cerebras is SIMULATED at {sim.url} "
            f"(canned answers, no cost; ledger {SIM_LEDGER})",
            flush=True,
        )
        yield replace(config, models=models, storage=storage)
