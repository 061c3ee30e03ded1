"""Simulated llama.cpp and Cerebras upstreams: real aiohttp servers for tests, demo and benchmarks.

async with running_sim(SimOptions(profile="cerebras", tps=50)) as sim:
    ...  # point a client at sim.url; sim.inject("cut"); inspect sim.requests
"""

from .faults import FAULTS
from .options import Profile, ScriptedAnswer, SimOptions, SimRequestLog, ToolCallSpec
from .quota import Quota, TokenBucket
from .server import SimServer, create_sim_app, running_sim, start_sim
from .state import SimState

__all__ = [
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
