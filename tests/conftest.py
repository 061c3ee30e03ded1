"""Fixtures: simulated upstreams and gateways, all real HTTP servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from llamacpp_support import SESSION_CTX, find_install, running_llama
from mocked_http import MockedHTTP
from redis_support import RedisServer, running_redis
from support import CEREBRAS_KEY, Gateway, GatewayFactory, gateway_config, start_gateway

from gateway.config import GatewayConfig
from gateway.dev.llama_server import LlamaServer
from gateway.dev.sim import SimOptions, SimServer, running_sim

pytest_plugins = ["tiers", "checkout_guard", "heap_hygiene"]


@pytest.fixture
async def local_sim() -> AsyncIterator[SimServer]:
    async with running_sim(SimOptions(profile="llamacpp", answer_tokens=12)) as sim:
        yield sim


@pytest.fixture
async def cerebras_sim() -> AsyncIterator[SimServer]:
    async with running_sim(
        SimOptions(profile="cerebras", answer_tokens=16, api_key=CEREBRAS_KEY)
    ) as sim:
        yield sim


@pytest.fixture
def make_gateway(
    aiohttp_server: Any, tmp_path: Path, local_sim: SimServer, cerebras_sim: SimServer
) -> GatewayFactory:
    """Start a gateway on 127.0.0.1 in front of the two simulators (config sections override)."""

    async def factory(
        strategy: str = "always_local",
        *,
        config: GatewayConfig | None = None,
        **sections: Any,
    ) -> Gateway:
        cfg = config or gateway_config(
            tmp_path, local_sim.url, cerebras_sim.url, strategy=strategy, **sections
        )
        return await start_gateway(aiohttp_server, cfg)

    return factory


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    """aioresponses in place of the network, for request-building and error-mapping tests."""
    with MockedHTTP() as m:
        yield m


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="session")
def llama_install() -> tuple[Path, Path]:
    """(binary, model) of the real llama.cpp, or a skip that says why there is none."""
    return find_install()


@pytest.fixture(scope="session")
def llama_server(
    llama_install: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    """The session's real llama-server: 2 threads, one slot, 2048-token context."""
    with running_llama(llama_install, tmp_path_factory.mktemp("llama"), ctx=SESSION_CTX) as server:
        yield server


@pytest.fixture(scope="session")
def redis_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's real redis-server on a free loopback port (skips when there is none)."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_server(redis_session: RedisServer) -> Iterator[RedisServer]:
    """The session's redis-server, emptied for this test (and revived if a test stopped it)."""
    if redis_session.process is None:
        redis_session.start()
    redis_session.flush()
    yield redis_session
    if redis_session.process is None:
        redis_session.start()
