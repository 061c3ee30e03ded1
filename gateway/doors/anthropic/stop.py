"""Stop sequences matched by the door, so that `stop_reason: stop_sequence` can name the one
that matched (the upstreams stop on a sequence without saying which, or whether one did).

Text that may be the start of a sequence is held back until the next text decides; the
matched sequence and everything after it are never sent."""

from __future__ import annotations


class StopMatcher:
    __slots__ = ("sequences", "_held", "_keep", "matched")

    def __init__(self, sequences: tuple[str, ...]) -> None:
        self.sequences = sequences
        self._held = ""
        self._keep = max((len(s) for s in sequences), default=1) - 1
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        """The part of `text` that may be sent now. After a match, always ""."""
        if self.matched is not None:
            return ""
        buffer = self._held + text
        first: tuple[int, str] | None = None
        for sequence in self.sequences:
            at = buffer.find(sequence)
            if at >= 0 and (first is None or at < first[0]):
                first = (at, sequence)
        if first is not None:
            self.matched = first[1]
            self._held = ""
            return buffer[: first[0]]
        cut = max(len(buffer) - self._keep, 0)
        # Hold back only a tail that could still grow into a sequence.
        while cut < len(buffer) and not any(s.startswith(buffer[cut:]) for s in self.sequences):
            cut += 1
        self._held = buffer[cut:]
        return buffer[:cut]

    def flush(self) -> str:
        """What is still held back (at the end of the answer)."""
        held, self._held = self._held, ""
        return "" if self.matched is not None else held

    @property
    def holding(self) -> str:
        return self._held
