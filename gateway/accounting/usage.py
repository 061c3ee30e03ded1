"""The usage object a client gets for a finished answer."""

from __future__ import annotations

from typing import Any

from gateway.accounting.records import UpstreamCall


def client_usage(reported: dict[str, Any] | None, call: UpstreamCall) -> dict[str, Any]:
    """The usage object for the client: the upstream's own when it sent one, else the estimate."""
    if reported is not None:
        usage = dict(reported)
        usage.setdefault("total_tokens", call.prompt_tokens + call.completion_tokens)
        return usage
    return {
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens,
        "total_tokens": call.prompt_tokens + call.completion_tokens,
        "estimated": True,
    }
