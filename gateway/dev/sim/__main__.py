"""`python -m gateway.dev.sim --profile llamacpp --port 8081`: run a simulated upstream until
killed."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import orjson

from gateway.dev.sim.options import PROFILES, SimOptions, script_from_json
from gateway.dev.sim.server import start_sim


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gateway.dev.sim", description=__doc__)
    parser.add_argument("--profile", choices=PROFILES, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--model")
    parser.add_argument("--ttft", type=float, default=0.0, help="seconds before the first chunk")
    parser.add_argument("--tps", type=float, default=0.0, help="tokens per second, 0 = no delay")
    parser.add_argument("--answer-tokens", type=int, default=40)
    parser.add_argument("--script", type=Path, help='JSON file {"prompt": {"content": ...}}')
    parser.add_argument("--api-key")
    parser.add_argument("--loading-seconds", type=float, default=0.0)
    parser.add_argument("--n-ctx", type=int, default=1_000_000)
    parser.add_argument("--quota-rpm", type=float)
    parser.add_argument("--quota-tpm", type=float)
    parser.add_argument("--quota-rpd", type=float)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reasoning-tokens", type=int, default=0, help="reasoning tokens before each answer"
    )
    parser.add_argument(
        "--reject-thinking-param",
        action="store_true",
        help="answer 400 to the no-thinking parameter (chat_template_kwargs / reasoning_effort)",
    )
    return parser.parse_args(argv)


def options_from_args(args: argparse.Namespace) -> SimOptions:
    script = None
    if args.script is not None:
        script = script_from_json(orjson.loads(args.script.read_bytes()))
    return SimOptions(
        profile=args.profile,
        model=args.model,
        ttft=args.ttft,
        tps=args.tps,
        answer_tokens=args.answer_tokens,
        script=script,
        api_key=args.api_key,
        loading_seconds=args.loading_seconds,
        n_ctx=args.n_ctx,
        quota_requests_per_minute=args.quota_rpm,
        quota_tokens_per_minute=args.quota_tpm,
        quota_requests_per_day=args.quota_rpd,
        seed=args.seed,
        reasoning_tokens=args.reasoning_tokens,
        reject_thinking_param=args.reject_thinking_param,
    )


async def serve(options: SimOptions, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sim = await start_sim(options, host, port)
    print(f"sim {options.profile} listening on {sim.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        options = options_from_args(args)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(options, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
