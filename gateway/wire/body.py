"""The client's body, parsed once, and the upstream body written from it without a second walk.

`parse_members` runs the check every parsed body needs anyway (orjson reads JSON 1024 levels deep
but writes only 254, so a body must serialise with levels to spare) one top-level member at a
time, and keeps what it wrote: each member's JSON text. A body built for an upstream from such a
body (`derived`) is then written by `encode` with that text spliced in (orjson.Fragment) for every
member whose value is still the very object parsed; only the members the gateway set (model,
stream, stream_options, thinking, token limits ...) are serialised again. The bytes are exactly
those `orjson.dumps` writes for the same dict: the spliced text is orjson's own for that value.

Contract, shared with the prompt memo (gateway.accounting.tokens.once): the gateway never
changes a client body's values in place; it replaces a member at the top level (a new object,
written afresh) or builds a new body (a plain dict, written in full).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

# The parsed value of a member, kept to tell it from a replacement by identity, and its JSON.
Member = tuple[Any, bytes]


class ParsedBody(dict[str, Any]):
    """A client's JSON object as parsed, with `members`: key -> (value as parsed, its JSON)."""

    __slots__ = ("members",)

    def __init__(self, parsed: dict[str, Any], members: dict[str, Member]) -> None:
        super().__init__(parsed)
        self.members = members


class Derived(dict[str, Any]):
    """An upstream body built from a ParsedBody: `members` are the parsed body's."""

    __slots__ = ("members",)

    def __init__(self, body: dict[str, Any], members: dict[str, Member]) -> None:
        super().__init__(body)
        self.members = members


class TooDeep(ValueError):
    """A member nests deeper than can be written back with `spare` levels to spare."""


def parse_members(body: dict[str, Any], spare: int) -> ParsedBody:
    """`body` with each member's JSON; raise TooDeep when a member cannot be serialised inside
    `spare` more levels (the body itself is one level)."""
    members: dict[str, Member] = {}
    depth = spare + 1
    for key, value in body.items():
        if isinstance(value, dict | list) and value:
            wrapped: Any = value
            for _ in range(depth):
                wrapped = [wrapped]
            try:
                members[key] = (value, orjson.dumps(wrapped)[depth:-depth])
            except TypeError:
                raise TooDeep(key) from None
        else:
            try:
                members[key] = (value, orjson.dumps(value))
            except TypeError:  # a str orjson cannot write (a lone surrogate)
                raise TooDeep(key) from None
    return ParsedBody(body, members)


def derived(origin: Mapping[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """`body`, built from `origin`, keeping `origin`'s member text when it was parsed."""
    if isinstance(origin, ParsedBody | Derived):
        return Derived(body, origin.members)
    return body


def encode(body: Mapping[str, Any]) -> bytes:
    """`orjson.dumps(body)`, with the JSON of members unchanged since parsing spliced in."""
    if not isinstance(body, Derived):
        return orjson.dumps(body)
    members = body.members
    out: dict[str, Any] = {}
    for key, value in body.items():
        member = members.get(key)
        out[key] = orjson.Fragment(member[1]) if member and member[0] is value else value
    return orjson.dumps(out)
