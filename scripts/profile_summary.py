#!/usr/bin/env python3
"""Summarise a py-spy raw (collapsed-stack) profile as text: the top frames by self and by
inclusive share of the samples, with line numbers dropped so a function counts once.

Record: `py-spy record -p PID -r 500 --format raw -o prof.raw`, then
`python scripts/profile_summary.py prof.raw [--top 25] [--filter gateway/] [--loop-busy]`.

`--loop-busy` keeps only the event loop's busy samples: stacks through `Runner.run` whose leaf
is not the loop itself waiting for events (uvloop shows idle time as `Runner.run` at the top),
so other threads (ledger writer, log listener) and idle time do not dilute the shares.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def frames(stack: str) -> list[str]:
    """Frames of one collapsed stack, root first, each as `function (file)`."""
    return [_LINE.sub(")", frame) for frame in stack.split(";")]


_LOOP = "Runner.run (asyncio/runners.py)"


def loop_busy(stack_frames: list[str]) -> bool:
    """True for a sample of the event loop's thread doing work (not waiting for events)."""
    return _LOOP in stack_frames and stack_frames[-1] != _LOOP


def summarise(path: Path, top: int, only: str, busy: bool = False) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        stack_frames = frames(stack)
        if busy and not loop_busy(stack_frames):
            continue
        total += count
        own[stack_frames[-1]] += count
        for frame in set(stack_frames):
            inclusive[frame] += count
    lines = [f"{total} samples"]
    for title, counter in (("self", own), ("inclusive", inclusive)):
        lines.append(f"\ntop {top} by {title} share")
        picked = [(f, c) for f, c in counter.most_common() if only in f][:top]
        lines += [f"{100 * c / total:5.1f}%  {f}" for f, c in picked]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--filter", default="", help="keep frames whose text contains this")
    parser.add_argument(
        "--loop-busy", action="store_true", help="only the event loop's busy samples"
    )
    args = parser.parse_args()
    print(summarise(args.raw, args.top, args.filter, args.loop_busy))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
