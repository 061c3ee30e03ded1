"""`--demo-traffic`: a slow, varied stream of requests to the demo gateway, so that a first look at
the dashboard shows a living page. It sends one request every `interval` seconds (randomised),
over several strategies, prompts (simple, code, complex), streamed or not, sometimes leaving
mid-stream, and now and then a short burst of Cerebras requests that can meet the simulated
rate limit. It runs until cancelled; failures are logged and never stop it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger("gateway.demo_traffic")

PROMPTS = (
    "What is 2+2?",
    "Write a binary search in Python.",
    "Explain the difference between TCP and UDP, with trade-offs",
    "Rename the variable x to count in this loop.",
    "Why does my recursive function hit the recursion limit? Think step by step.",
    "Summarise what a mutex is in one sentence.",
)
STRATEGIES = (
    "glm-token-saver",
    "glm-token-saver",
    "smart_routing",
    "always_local",
    "speculative_decoding",
    "smart_speculative",
    "adaptive_cerebras",
    "always_cerebras",
)
BURST_EVERY = 25  # requests between bursts
BURST_SIZE = 6


def dashboard_url(host: str, port: int) -> str:
    """The URL a browser on this machine opens (a wildcard bind is reached on loopback)."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/dashboard"


@dataclass(slots=True)
class DemoTraffic:
    """Sends the demo's requests to `base_url` (the gateway's `/v1`)."""

    base_url: str
    api_key: str | None = None
    interval: tuple[float, float] = (1.5, 4.0)
    seed: int | None = None
    sent: int = 0

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _body(self, rng: random.Random, model: str | None = None) -> dict[str, Any]:
        stream = rng.random() < 0.7
        body: dict[str, Any] = {
            "model": model or rng.choice(STRATEGIES),
            "messages": [{"role": "user", "content": rng.choice(PROMPTS)}],
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    async def _send(
        self, session: aiohttp.ClientSession, body: dict[str, Any], leave_early: bool
    ) -> None:
        url = self.base_url.rstrip("/") + "/chat/completions"
        try:
            async with session.post(url, json=body, headers=self._headers()) as resp:
                if leave_early and body.get("stream") and resp.status == 200:
                    async for _ in resp.content:
                        break  # the client goes away after its first event
                    return
                await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("demo traffic: request failed: %s", exc)
        finally:
            self.sent += 1

    async def run(self) -> None:
        """Send requests until cancelled."""
        rng = random.Random(self.seed)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            tasks: set[asyncio.Task[None]] = set()
            try:
                for turn in itertools.count(1):
                    if turn % BURST_EVERY == 0:
                        burst = [
                            self._send(session, self._body(rng, "always_cerebras"), False)
                            for _ in range(BURST_SIZE)
                        ]
                        await asyncio.gather(*burst)
                    task = asyncio.create_task(
                        self._send(session, self._body(rng), leave_early=rng.random() < 0.05)
                    )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    await asyncio.sleep(rng.uniform(*self.interval))
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
