"""Admission: may a request be sent to an upstream right now?

Every upstream call of every strategy asks the app's gate first. A gate answers with a `Ticket`
(the call may go; what it reserved is held until `release`) or a `Refusal` (skip this upstream,
with the reason and, when known, how long until it could serve). Failures are reported back with
`observe_failure` so that a gate can cool an upstream down after a 429.

`admit` is always awaited. The embedded gate checks and reserves without suspending (concurrent
requests see each other's reservations); with shared state (gateway.state) it also awaits the
fleet-wide check in the store.

`OpenGate` admits everything; the rate-limit-aware gate is gateway.quota.gate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.accounting.records import UpstreamName
from gateway.accounting.tokens import PromptEstimate
from gateway.errors import UpstreamError


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
    async def admit(
        self,
        upstream: UpstreamName,
        body: Mapping[str, Any],
        prompt_tokens: PromptEstimate | None = None,
    ) -> Ticket | Refusal:
        """`prompt_tokens`, when given, is the request's own memo of its prompt estimate."""
        ...

    def observe_failure(self, upstream: UpstreamName, error: UpstreamError) -> None: ...


class _NoTicket:
    __slots__ = ()

    def release(self, headers: Mapping[str, str] | None = None) -> None:
        return None


NO_TICKET: Ticket = _NoTicket()


class OpenGate:
    """Admits every call and ignores failures."""

    async def admit(
        self,
        upstream: UpstreamName,
        body: Mapping[str, Any],
        prompt_tokens: PromptEstimate | None = None,
    ) -> Ticket | Refusal:
        return NO_TICKET

    def observe_failure(self, upstream: UpstreamName, error: UpstreamError) -> None:
        return None
