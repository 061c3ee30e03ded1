"""Which conversation a request belongs to, recognised without the client's help.

An agent such as Cline resends the whole history on every turn, so the system prompt and the
first user message stay the same for the whole task. Their hash is the conversation's key. A
client that sends `x-conversation-id` is trusted instead (hashed, so nothing it sends is stored
verbatim). The key is only an identity: two tasks with the same system prompt and the same first
message share it, which is why a request that carries no assistant turn yet (the start of a task)
resets what was known about the key (gateway.router.escalation).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import xxhash

from gateway.bounded import BoundedLRU
from gateway.router.classifier import message_text

HEADER = "x-conversation-id"
_HEADER_VALUE = re.compile(r"[\x21-\x7e]{1,256}")


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()[:32]


class FingerprintCache:
    """The sha256 state after each recent system prompt: an agent resends the same ~40 KB
    prompt on every turn, so it is hashed once.

    Keyed by a digest of the prompt, never the prompt: its length and its 128-bit XXH3 under a
    seed drawn per process, which costs about a tenth of Python's own str hash (siphash) for a
    27 KB prompt. A collision is a 2**-128 accident; one crafted would only give a client the
    key it gets by sending the other prompt itself, so the digest need not be cryptographic. At
    most `routing.escalation.fingerprint_cache` entries of a few hundred bytes each."""

    def __init__(self, max_items: int) -> None:
        self.entries: BoundedLRU[tuple[int, int], hashlib._Hash] = BoundedLRU(
            max_items, sizeof=_state_bytes
        )

    def state(self, system: str) -> hashlib._Hash:
        encoded = system.encode("utf-8", "surrogatepass")
        key = (len(encoded), xxhash.xxh3_128_intdigest(encoded, _SEED))
        state = self.entries.get(key)
        if state is None:
            state = hashlib.sha256(encoded)
            state.update(b"\x00")
            self.entries.put(key, state)
        return state

    def resize(self, max_items: int) -> None:
        """Take a new bound (the app's config); entries over it go, oldest first."""
        if max_items != self.entries.max_items:
            self.entries.max_items = max_items
            self.entries.clear()


_SEED = secrets.randbits(64)


def _state_bytes(key: tuple[int, int], state: hashlib._Hash) -> int:
    return sys.getsizeof(key) + sys.getsizeof(2**62) + sys.getsizeof(2**126) + sys.getsizeof(state)


CACHE = FingerprintCache(1024)
"""The process's cache (a pure function's memo: apps in one process may share it)."""


def fingerprint(messages: Sequence[Any]) -> str:
    """A stable hash of the system prompt(s) before the first user message and that message."""
    system: list[str] = []
    first_user = ""
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(message_text(message.get("content")))
        elif role == "user":
            first_user = message_text(message.get("content"))
            break
    h = CACHE.state("\n".join(system)).copy()
    h.update(first_user.encode("utf-8", "surrogatepass"))
    h.update(b"\x00")
    return "fp:" + h.hexdigest()[:32]


def conversation_key(body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> str:
    """`id:<hash>` of a well-formed `x-conversation-id` header, else `fp:<hash>` of the history."""
    given = (headers or {}).get(HEADER, "").strip()
    if given and _HEADER_VALUE.fullmatch(given):
        return "id:" + _digest(given)
    messages = body.get("messages")
    return fingerprint(messages if isinstance(messages, list) else [])


def assistant_turns(messages: Sequence[Any]) -> int:
    """How many assistant answers the history holds (0 at the start of a task)."""
    return sum(1 for m in messages if isinstance(m, Mapping) and m.get("role") == "assistant")


@dataclass(frozen=True, slots=True)
class TurnView:
    """One request seen as a turn: its conversation and how many answers came before it.

    `turn` is the number the answer to this request will have (1 for the first answer)."""

    key: str
    answers_before: int

    @property
    def turn(self) -> int:
        return self.answers_before + 1

    @property
    def starts_task(self) -> bool:
        return self.answers_before == 0


def view(body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> TurnView:
    messages = body.get("messages")
    history = messages if isinstance(messages, list) else []
    return TurnView(conversation_key(body, headers), assistant_turns(history))
