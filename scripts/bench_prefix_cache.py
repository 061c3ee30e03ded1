"""What dropping Claude Code's billing line does to llama.cpp's prompt cache, measured.

For each setting of `doors.anthropic.strip_billing_header` (false, then true) the script starts a
fresh real llama-server (one slot, the project's Gemma 3 270M), a recording tap in front of it, and
the gateway (always_local) in front of the tap, then sends `--requests` consecutive Claude Code
requests through /v1/messages that differ only in the billing line's `cc_version` suffix, as two
prompts of one real session do (tests/prefix_cache_support.py builds them from the recorded
request in tests/fixtures/claude_code_2.1.332.json, trimmed to a size the 270M model processes in
seconds on a shared core). Printed per request:

- cached prompt tokens as the gateway recorded them: the `/stats` `tokens.cached.local` delta
  over the request and the ledger's `local_cached_tokens` of its row (both from llama.cpp's
  `timings.cache_n`);
- llama.cpp's own figures from the tap: `prompt_n` (tokens it had to process), `cache_n`, and
  `prompt_ms` (prompt-processing time); the ledger's `ttft_s`.

The Cerebras simulator does not model a prefix cache (its `cached_prompt_share` reports a fixed
share of every prompt whatever came before), so no Cerebras figure is printed.

Usage: .venv/bin/python scripts/bench_prefix_cache.py [--requests 2] [--system-chars 4000]
       [--tools 2] [--message-chars 1500] [--ctx 8192]
Needs scripts/setup_local_model.sh to have installed llama-server and the model.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from benchlib import ROOT, spawn_gateway, wait_ready

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from llamacpp_support import UpstreamTap, timings_of  # noqa: E402
from prefix_cache_support import session_requests  # noqa: E402

from gateway.dev.llama_server import LlamaServer, find_binary, find_model, free_port  # noqa: E402

HEADERS = {"anthropic-version": "2023-06-01", "content-type": "application/json"}


async def cached_local(session: aiohttp.ClientSession, root: str) -> int:
    async with session.get(root + "/stats") as resp:
        stats = await resp.json()
    return int(stats["tokens"]["cached"]["local"])


def ledger_rows(path: Path, want: int, timeout: float = 10.0) -> list[tuple[Any, ...]]:
    """(local_prompt_tokens, local_cached_tokens, ttft_s, door) of each row, oldest first."""
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(path) as db:
            rows = db.execute(
                "SELECT local_prompt_tokens, local_cached_tokens, ttft_s, door "
                "FROM requests ORDER BY id"
            ).fetchall()
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


async def run_setting(strip: bool, args: argparse.Namespace, workdir: Path) -> list[dict]:
    server = LlamaServer(
        find_binary(),
        find_model(),
        port=free_port(),
        ctx=args.ctx,
        threads=2,
        slots=1,
        log_path=workdir / "llama-server.log",
    )
    server.start()
    tap = UpstreamTap(server.root)
    gateway = None
    try:
        server.wait_ready(120)
        await tap.start()
        config = {
            "models": {
                "local": {"endpoint": tap.url, "model": server.model_name},
                "cerebras": {"enabled": False, "api_key": ""},
            },
            "routing": {"strategy": "always_local"},
            "timeouts": {"connect": 5, "first_token": 600, "idle": 600},
            "doors": {"anthropic": {"strip_billing_header": strip}},
        }
        gateway = spawn_gateway(config, workdir)
        await wait_ready(gateway.url + "/health")
        bodies = session_requests(
            args.requests,
            system_chars=args.system_chars,
            tools=args.tools,
            message_chars=args.message_chars,
            max_tokens=args.max_tokens,
        )
        results: list[dict] = []
        timeout = aiohttp.ClientTimeout(total=1200)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for body in bodies:
                before = await cached_local(session, gateway.url)
                started = time.monotonic()
                async with session.post(
                    gateway.url + "/v1/messages", json=body, headers=HEADERS
                ) as resp:
                    raw = await resp.read()
                    if resp.status != 200 or b"message_stop" not in raw:
                        raise RuntimeError(f"request failed: {resp.status} {raw[:300]!r}")
                seconds = time.monotonic() - started
                await asyncio.sleep(0.2)  # the record lands after the last byte
                after = await cached_local(session, gateway.url)
                results.append({"stats_cached": after - before, "seconds": seconds})
        chats = tap.chat_records()
        rows = ledger_rows(workdir / "ledger.db", len(bodies))
        for result, record, row in zip(results, chats, rows, strict=True):
            timings = timings_of(record.payloads)
            result.update(
                prompt_n=timings.get("prompt_n"),
                cache_n=timings.get("cache_n"),
                prompt_ms=timings.get("prompt_ms"),
                ledger_prompt=row[0],
                ledger_cached=row[1],
                ttft_s=row[2],
                door=row[3],
            )
        return results
    finally:
        if gateway is not None:
            gateway.stop()
        await tap.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2)
    parser.add_argument("--system-chars", type=int, default=4000)
    parser.add_argument("--tools", type=int, default=2)
    parser.add_argument("--message-chars", type=int, default=1500)
    parser.add_argument("--max-tokens", type=int, default=4)
    parser.add_argument("--ctx", type=int, default=8192)
    parser.add_argument(
        "--keep", type=Path, help="keep each setting's llama-server log, gateway log, ledger"
    )
    args = parser.parse_args()
    print(
        f"requests per setting: {args.requests}; trimmed Claude Code prompt: main system block "
        f"{args.system_chars} chars, {args.tools} tools, user text blocks {args.message_chars} "
        f"chars; max_tokens {args.max_tokens}; llama-server ctx {args.ctx}, 1 slot, 2 threads"
    )
    header = (
        f"{'strip':>5} {'req':>3} {'prompt_n':>8} {'cache_n':>7} {'prompt_ms':>9} "
        f"{'ledger prompt':>13} {'ledger cached':>13} {'/stats cached':>13} {'ttft_s':>7}"
    )
    summary: dict[bool, dict] = {}
    for strip in (False, True):
        if args.keep:
            workdir = args.keep / f"strip-{str(strip).lower()}"
            workdir.mkdir(parents=True, exist_ok=True)
            (workdir / "ledger.db").unlink(missing_ok=True)
            results = asyncio.run(run_setting(strip, args, workdir))
        else:
            with tempfile.TemporaryDirectory(prefix="bench-prefix-") as tmp:
                results = asyncio.run(run_setting(strip, args, Path(tmp)))
        print(header if not summary else "")
        for i, r in enumerate(results, 1):
            print(
                f"{str(strip).lower():>5} {i:>3} {r['prompt_n']:>8} {r['cache_n']:>7} "
                f"{r['prompt_ms']:>9.0f} {r['ledger_prompt']:>13} {r['ledger_cached']:>13} "
                f"{r['stats_cached']:>13} {r['ttft_s']:>7.2f}"
            )
        summary[strip] = results[1]
    off, on = summary[False], summary[True]
    print()
    print(
        f"second request: cached {off['ledger_cached']} -> {on['ledger_cached']} tokens "
        f"(of {off['ledger_prompt']} / {on['ledger_prompt']}); prompt processing "
        f"{off['prompt_ms']:.0f} ms -> {on['prompt_ms']:.0f} ms "
        f"({off['prompt_ms'] / max(on['prompt_ms'], 1e-9):.1f}x less time with the strip)"
    )


if __name__ == "__main__":
    main()
