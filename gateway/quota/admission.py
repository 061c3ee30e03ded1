"""Admission: may a request be sent to an upstream right now?

Every upstream call of every strategy asks the app's gate first. A gate answers with a `Ticket`
(the call may go; what it reserved is held until `release`) or a `Refusal` (skip this upstream,
with the reason and, when known, how long until it could serve). Failures are reported back with
`observe_failure` so that a gate can cool an upstream down after a 429.

With shared state (gateway.state) `admit` may answer a coroutine instead, for the fleet-wide
check; callers await it (`if isinstance(admission, Coroutine): admission = await admission`), so
the embedded gate's path stays free of awaits.

`OpenGate` admits everything; the rate-limit-aware gate is gateway.quota.gate.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
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


Admission = Ticket | Refusal | Coroutine[Any, Any, Ticket | Refusal]


async def settled(admission: Admission) -> Ticket | Refusal:
    """The gate's answer: awaited when shared state made it a coroutine, else as it is."""
    if isinstance(admission, Coroutine):
        return await admission
    return admission


class UpstreamGate(Protocol):
    def admit(
        self,
        upstream: UpstreamName,
        body: Mapping[str, Any],
        prompt_tokens: PromptEstimate | None = None,
    ) -> Admission:
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

    def admit(
        self,
        upstream: UpstreamName,
        body: Mapping[str, Any],
        prompt_tokens: PromptEstimate | None = None,
    ) -> Ticket | Refusal:
        return NO_TICKET

    def observe_failure(self, upstream: UpstreamName, error: UpstreamError) -> None:
        return None
