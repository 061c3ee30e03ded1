"""The verdict window of one upstream call: what it streamed before the verdict.

`chunks` keeps every chunk received (reasoning included) so the committed one can be replayed to
the client in order; the answer window (`assembly`, `logprobs`) holds only the first `limit`
answer tokens, which is what the verdict compares. Answer tokens are estimated the way billing
estimates are (gateway.accounting.tokens), from answer text and tool-call fragments, never
reasoning.
"""

from __future__ import annotations

from gateway.accounting.tokens import estimate_completion_tokens
from gateway.errors import UpstreamError
from gateway.speculation.verdict import Answer, ToolCall
from gateway.wire.assembly import Assembly, ChoiceParts
from gateway.wire.chunk import Chunk


def answer_of(parts: ChoiceParts, *, complete: bool) -> Answer:
    calls = tuple(
        ToolCall(call.name, "".join(call.arguments)) for _, call in sorted(parts.tool_calls.items())
    )
    return Answer(parts.text, calls, complete)


class Window:
    """Chunks of one call before the verdict; `limit` None: the window is the whole answer."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.chunks: list[Chunk] = []
        self.assembly = Assembly()
        self.logprobs: list[float] = []
        self.error: UpstreamError | None = None
        self.finished = False
        self._chars = 0
        self._events = 0
        self._cut = False  # answer content arrived after the window was full
        self.reasoning = False  # reasoning arrived: the client would be shown something
        self._marks: list[int] = []  # answer tokens before each chunk

    @property
    def tokens(self) -> int:
        """Answer tokens in the window (estimated; at most `limit` plus one chunk's worth)."""
        return estimate_completion_tokens(self._chars, self._events)

    @property
    def full(self) -> bool:
        return self.limit is not None and self.tokens >= self.limit

    @property
    def complete(self) -> bool:
        """The window holds the whole answer."""
        return self.finished and not self._cut

    @property
    def ready(self) -> bool:
        """The verdict may read this window: full, finished or failed."""
        return self.full or self.finished or self.error is not None

    @property
    def has_answer(self) -> bool:
        return self.assembly.has_answer()

    @property
    def has_content(self) -> bool:
        """Something the client would be shown arrived: answer text, a tool call or reasoning."""
        return self.reasoning or self.has_answer

    @property
    def usable(self) -> bool:
        """Not failed and not an empty finished answer."""
        return self.error is None and not (self.finished and not self.has_answer)

    def add(self, chunk: Chunk, logprobs: list[float]) -> None:
        self._marks.append(self.tokens)
        self.chunks.append(chunk)
        size = chunk.answer_chars
        if not size and not self.reasoning:
            self.reasoning = chunk.reasoning_events > 0
        if self.full:
            self._cut = self._cut or size > 0
            return
        self.assembly.add_chunk(chunk.data)
        if size:
            self._chars += size
            self._events += 1
            self.logprobs.extend(logprobs)

    def answer(self, tokens: int | None = None) -> Answer:
        """The window's answer, or only its first `tokens` answer tokens."""
        if tokens is None or tokens >= self.tokens:
            return answer_of(self.assembly.first(), complete=self.complete)
        head = Assembly()
        for before, chunk in zip(self._marks, self.chunks, strict=True):
            if before >= tokens:
                break
            head.add_chunk(chunk.data)
        return answer_of(head.first(), complete=False)
