"""Admission: may a request be sent to an upstream right now?

Every upstream call of every strategy asks the app's gate first. A gate answers with a `Ticket`
(the call may go; what it reserved is held until `release`) or a `Refusal` (skip this upstream,
with the reason and, when known, how long until it could serve). Failures are reported back with
`observe_failure` so that a gate can cool an upstream down after a 429.

`OpenGate` admits everything; the rate-limit-aware gate lives in gateway.ratelimit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import UpstreamError
from .records import UpstreamName


@dataclass(frozen=True, slots=True)
class Refusal:
    upstream: UpstreamName
    reason: str
    retry_after: float | None = None


class Ticket(Protocol):
    def release(self, headers: Mapping[str, str] | None = None) -> None:
        """Give back what admission reserved; `headers` are the call's response headers, if any.

        Idempotent: only the first call counts."""
        ...


class UpstreamGate(Protocol):
    def admit(self, upstream: UpstreamName, body: Mapping[str, Any]) -> Ticket | Refusal: ...

    def observe_failure(self, upstream: UpstreamName, error: UpstreamError) -> None: ...


class _NoTicket:
    __slots__ = ()

    def release(self, headers: Mapping[str, str] | None = None) -> None:
        return None


NO_TICKET: Ticket = _NoTicket()


class OpenGate:
    """Admits every call and ignores failures."""

    def admit(self, upstream: UpstreamName, body: Mapping[str, Any]) -> Ticket | Refusal:
        return NO_TICKET

    def observe_failure(self, upstream: UpstreamName, error: UpstreamError) -> None:
        return None
