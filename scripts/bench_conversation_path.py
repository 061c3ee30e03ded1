#!/usr/bin/env python3
"""The per-request cost of what the gateway remembers about conversations, in microseconds.

Times, for distinct agent conversations (scripts/conversations.py), the work each request does on
the bounded structures: the conversation key (the fingerprint cache), the tracker's begin and
finish (conversations, answers, learning.db writes queued), and the router's decision (its
remembered features). Every body is parsed from JSON afresh, as a request's is. Run it against
another checkout to compare (`PYTHONPATH=<checkout> python scripts/bench_conversation_path.py`):
it uses only APIs both sides have.

Run: `.venv/bin/python scripts/bench_conversation_path.py` (about 20 seconds).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from conversations import first_messages, follow_up

import gateway
from gateway.config import parse_config
from gateway.router.conversation import conversation_key
from gateway.router.learning import Learning
from gateway.router.router import Router


def bodies(count: int, turns: int, prompt_bytes: int) -> list[bytes]:
    out = []
    for conversation in range(count):
        messages = first_messages(conversation, prompt_bytes)
        for turn in range(1, turns + 1):
            out.append(orjson.dumps({"model": "smart_routing", "messages": messages}))
            messages = follow_up(messages, f"answer {turn}", turn)
    return out


def run(args: argparse.Namespace, prompt_bytes: int) -> dict[str, float]:
    raw = bodies(args.conversations, args.turns, prompt_bytes)
    config = parse_config({"routing": {"strategy": "smart_routing"}}, env={})
    timings: dict[str, list[float]] = {"key": [], "tracker": [], "router": []}
    with tempfile.TemporaryDirectory(prefix="bench-path-") as tmp:
        router = Router(config, store_path=Path(tmp) / "router.db")
        learning = Learning(config, learner=router.learn, store_path=str(Path(tmp) / "l.db"))
        for i, data in enumerate(raw):
            body: dict[str, Any] = orjson.loads(data)
            request_id = f"req-{i:08d}"
            t0 = time.perf_counter()
            conversation_key(body)
            t1 = time.perf_counter()
            learning.tracker.begin(request_id, body)
            learning.tracker.finish(request_id, "local")
            t2 = time.perf_counter()
            router.route(request_id, body)
            t3 = time.perf_counter()
            timings["key"].append(t1 - t0)
            timings["tracker"].append(t2 - t1)
            timings["router"].append(t3 - t2)
        router.close()
        learning.close()
    return {name: statistics.median(values) * 1e6 for name, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=1500)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--prompt-bytes", type=int, nargs="+", default=[6000, 40000])
    args = parser.parse_args()
    print(f"gateway from {Path(gateway.__file__).parent}")
    for size in args.prompt_bytes:
        medians = run(args, size)
        print(
            f"{args.conversations} conversations x {args.turns} turns, ~{size} B system prompts: "
            + ", ".join(f"{name} {value:.1f} us" for name, value in medians.items())
            + " (medians per request)"
        )


if __name__ == "__main__":
    main()
