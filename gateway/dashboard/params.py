"""Query-string parsing for the dashboard's JSON endpoints: every bad value is a BadRequest
(400 in the OpenAI error shape) naming the parameter."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from gateway.errors import BadRequest


def int_param(
    query: Mapping[str, str], name: str, *, default: int | None, low: int, high: int
) -> int | None:
    """`name` as an integer in [low, high]; `default` when absent or empty."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise BadRequest(
            f"{name} must be an integer, got {raw[:40]!r}", param=name, code="invalid_value"
        ) from None
    if not low <= value <= high:
        raise BadRequest(
            f"{name} must be between {low} and {high}, got {value}",
            param=name,
            code="invalid_value",
        )
    return value


def choice_param(
    query: Mapping[str, str], name: str, choices: Collection[str], *, default: str | None
) -> str | None:
    """`name` as one of `choices`; `default` when absent or empty."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise BadRequest(
            f"{name} must be one of {', '.join(sorted(choices))}, got {raw[:40]!r}",
            param=name,
            code="invalid_value",
        )
    return raw
