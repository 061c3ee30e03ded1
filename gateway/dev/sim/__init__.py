"""Simulated llama.cpp and Cerebras upstreams: real aiohttp servers for tests, demo and benchmarks.

async with running_sim(SimOptions(profile="cerebras", tps=50)) as sim:
    ...  # point a client at sim.url; sim.inject("cut"); inspect sim.requests
"""

from gateway.dev.sim.faults import FAULTS
from gateway.dev.sim.options import (
    AgentLoop,
    Profile,
    ScriptedAnswer,
    SimOptions,
    SimRequestLog,
    ToolCallSpec,
)
from gateway.dev.sim.quota import Quota, TokenBucket
from gateway.dev.sim.server import SimServer, create_sim_app, running_sim, start_sim
from gateway.dev.sim.state import SimState

__all__ = [
    "AgentLoop",
    "FAULTS",
    "Profile",
    "Quota",
    "ScriptedAnswer",
    "SimOptions",
    "SimRequestLog",
    "SimServer",
    "SimState",
    "TokenBucket",
    "ToolCallSpec",
    "create_sim_app",
    "running_sim",
    "start_sim",
]
