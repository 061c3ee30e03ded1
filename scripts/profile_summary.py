#!/usr/bin/env python3
"""Summarise a py-spy raw (collapsed-stack) profile as text: the top frames by self and by
inclusive share of the samples, with line numbers dropped so a function counts once.

Record: `py-spy record -p PID -r 500 --format raw -o prof.raw`, then
`python scripts/profile_summary.py prof.raw [--top 25] [--filter gateway/]`.
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


def summarise(path: Path, top: int, only: str) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        stack_frames = frames(stack)
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
    args = parser.parse_args()
    print(summarise(args.raw, args.top, args.filter))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
