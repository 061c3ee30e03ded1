"""Injectable faults: names, default parameters and the FIFO queue requests draw from.

Streams: status faults (http_*) answer at once; `slow_first_token` delays headers and first chunk
by `delay` (instead of ttft); after `after_chunks` events (role chunk included) `stall` goes silent
for `seconds` then resumes, `cut` closes the socket, `malformed_event` writes a broken event and
continues, `garbage` writes 4 KiB of non-UTF-8 bytes and ends the response, `error_event` writes
`data: {"error": ...}` and ends without [DONE]; a stream shorter than `after_chunks` never sees
the fault. `huge_event` puts one `size`-character content chunk first; `drop` closes the
connection before any response; `slow_error_body` sends a 500's headers, then its body only after
`seconds`. Non-stream requests: stall delays the reply, cut closes without
reply, malformed_event/garbage send a broken body with status 200, error_event answers 500.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

# Parameter defaults per fault; `after_chunks` counts SSE events written, the role chunk included.
FAULTS: dict[str, dict[str, Any]] = {
    "http_500": {},
    "http_429": {"reset_seconds": 30.0, "kind": "tokens"},
    "http_429_bare": {},
    "http_503_loading": {},
    "slow_first_token": {"delay": 10.0},
    "stall": {"after_chunks": 3, "seconds": 3600.0},
    "cut": {"after_chunks": 3},
    "malformed_event": {"after_chunks": 2},
    "garbage": {"after_chunks": 2},
    "huge_event": {"size": 1_200_000},
    "error_event": {"after_chunks": 2},
    "drop": {},
    "slow_error_body": {"seconds": 3600.0},
}

# Faults answered with an error status before any generation starts.
STATUS_FAULTS = frozenset({"http_500", "http_429", "http_429_bare", "http_503_loading"})
# Faults that fire once `after_chunks` events of a stream were written.
MID_STREAM_FAULTS = frozenset({"stall", "cut", "malformed_event", "garbage", "error_event"})

MALFORMED_EVENT = b'data: {"choices": [{"delta": {"content": \n\n'


@dataclass(frozen=True, slots=True)
class Fault:
    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def param(self, key: str) -> Any:
        return self.params[key]


def make_fault(name: str, **params: Any) -> Fault:
    """A fault with defaults filled in; unknown names or parameters raise ValueError."""
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
    defaults = FAULTS[name]
    unknown = set(params) - set(defaults)
    if unknown:
        raise ValueError(f"fault {name!r} takes no parameter(s) {sorted(unknown)}")
    merged = dict(defaults)
    for key, value in params.items():
        default = defaults[key]
        merged[key] = value if isinstance(default, str) else type(default)(value)
    if name == "http_429" and merged["kind"] not in ("tokens", "requests"):
        raise ValueError("http_429 kind must be 'tokens' or 'requests'")
    return Fault(name, merged)


class FaultQueue:
    """Faults waiting for the next chat requests, first in first out."""

    def __init__(self) -> None:
        self._queue: deque[Fault] = deque()

    def push(self, fault: Fault, count: int = 1) -> None:
        if count < 1:
            raise ValueError("count must be >= 1")
        self._queue.extend([fault] * count)

    def pop(self) -> Fault | None:
        return self._queue.popleft() if self._queue else None

    def clear(self) -> None:
        self._queue.clear()

    def __len__(self) -> int:
        return len(self._queue)
