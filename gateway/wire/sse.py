"""Incremental decoder for the server-sent events an upstream streams.

Follows the SSE rules that matter for chat completions: lines end in LF or CRLF, `data:` lines of
one event are joined with LF, a blank line ends the event, lines starting with `:` are comments,
other fields (`event:`, `id:`, `retry:`) are ignored. A lone CR as line end is not supported (no
OpenAI-compatible server sends it).
"""

from __future__ import annotations

DONE = b"[DONE]"


class EventTooLarge(ValueError):
    """One event grew past the configured limit."""


class SSEDecoder:
    """Feed raw bytes, get the data payload of each completed event, in order."""

    __slots__ = ("_pending", "_data", "_size", "_max_event_bytes")

    def __init__(self, max_event_bytes: int = 8 * 1024 * 1024) -> None:
        self._pending = b""
        self._data: list[bytes] = []
        self._size = 0
        self._max_event_bytes = max_event_bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        """Return the payloads of the events completed by `chunk`; raise EventTooLarge."""
        buf = self._pending + chunk if self._pending else chunk
        lines = buf.split(b"\n")
        self._pending = lines.pop()
        if self._pending_data_len() + self._size > self._max_event_bytes:
            raise EventTooLarge(f"event larger than {self._max_event_bytes} bytes")
        out: list[bytes] = []
        data = self._data
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if data:
                    out.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data.clear()
                    self._size = 0
                continue
            if line.startswith(b"data:"):
                value = line[6:] if line.startswith(b"data: ") else line[5:]
                self._size += len(value)
                if self._size > self._max_event_bytes:
                    raise EventTooLarge(f"event larger than {self._max_event_bytes} bytes")
                data.append(value)
        return out

    def _pending_data_len(self) -> int:
        """Data bytes of the unfinished line, so the limit does not depend on chunk boundaries."""
        pending = self._pending
        if pending.startswith(b"data: "):
            return len(pending) - 6
        if pending.startswith(b"data:"):
            return len(pending) - 5
        return len(pending) if not b"data:".startswith(pending) else 0

    def close(self) -> list[bytes]:
        """At end of stream: an event not closed by a blank line is still delivered."""
        out = self.feed(b"\n\n") if (self._pending or self._data) else []
        return out
