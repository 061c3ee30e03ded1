"""The demo's wiring (`glm-gateway --demo`, `doctor --demo`, the demo fleet): simulated llama.cpp
and Cerebras servers on loopback with scripted answers, and the config pointing at them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from gateway.config import GatewayConfig
from gateway.dev.sim import ScriptedAnswer, SimOptions, running_sim

DEMO_API_KEY = "demo-key-not-secret"
DEMO_LEDGER = "data/demo_ledger.db"
DEMO_UPSTREAMS_FLAG = "--demo-upstreams"  # a demo worker: the parent runs the simulators


_DEMO_DRAFT_SEARCH = """def binary_search(items, target):
    lo, hi = 0, len(items)
    while lo <= hi:
        mid = (lo + hi) // 2
        if items[mid] == target:
            return mid
        lo, hi = (mid, hi) if items[mid] < target else (lo, mid)
    return -1"""
_DEMO_CEREBRAS_SEARCH = """Here is an iterative binary search:

```python
def binary_search(items: list[int], target: int) -> int:
    \"\"\"Index of target in the sorted list items, or -1.\"\"\"
    lo, hi = 0, len(items) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if items[mid] == target:
            return mid
        if items[mid] < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1
```

Each step halves the range: O(log n) time, O(1) space."""


def _demo_scripts() -> tuple[dict[str, ScriptedAnswer], dict[str, ScriptedAnswer]]:
    """Scripted demo answers (local, Cerebras): with `speculative_decoding`, the short local
    answer is accepted before Cerebras' first token, the faulty local binary search is not."""
    local = {
        "What is 2+2?": ScriptedAnswer("It's 4."),
        "Write a binary search in Python.": ScriptedAnswer(_DEMO_DRAFT_SEARCH),
    }
    cerebras = {
        "What is 2+2?": ScriptedAnswer("2 + 2 = 4."),
        "Write a binary search in Python.": ScriptedAnswer(_DEMO_CEREBRAS_SEARCH),
    }
    return local, cerebras


@asynccontextmanager
async def demo_upstreams_running() -> AsyncIterator[tuple[str, str]]:
    """Start simulated llama.cpp and Cerebras servers; yield their URLs (local, cerebras)."""
    local_script, cerebras_script = _demo_scripts()
    local_opts = SimOptions(
        profile="llamacpp", ttft=0.2, tps=40.0, answer_tokens=60, script=local_script
    )
    cerebras_opts = SimOptions(
        profile="cerebras",
        ttft=0.3,
        tps=600.0,
        answer_tokens=80,
        script=cerebras_script,
        api_key=DEMO_API_KEY,
        quota_requests_per_minute=30,
        quota_tokens_per_minute=200_000,
    )
    async with running_sim(local_opts) as local, running_sim(cerebras_opts) as cerebras:
        print(
            f"demo: simulated llama.cpp at {local.url}, simulated Cerebras at {cerebras.url}",
            flush=True,
        )
        yield local.url, cerebras.url


def with_demo_upstreams(config: GatewayConfig, local_url: str, cerebras_url: str) -> GatewayConfig:
    """`config` pointing at the demo's simulators."""
    models = dict(config.models)
    models["local"] = replace(models["local"], enabled=True, endpoint=local_url, model="sim-local")
    models["cerebras"] = replace(
        models["cerebras"], enabled=True, endpoint=cerebras_url, api_key=DEMO_API_KEY
    )
    return replace(config, models=models)


@asynccontextmanager
async def demo_upstreams(config: GatewayConfig) -> AsyncIterator[GatewayConfig]:
    """Start simulated llama.cpp and Cerebras servers; yield the config pointing at them."""
    async with demo_upstreams_running() as (local_url, cerebras_url):
        yield with_demo_upstreams(config, local_url, cerebras_url)
