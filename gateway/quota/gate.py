"""The app's admission gate: the spend budget, 429 cool-downs and predictive admission.

`RateLimitGate` implements gateway.quota.admission.UpstreamGate. Before every upstream call it
checks, in this order:
1. the spend budget (gateway.quota.budget; Cerebras only);
2. a cool-down: after a 429 the upstream gets no call until its reset (the 429's `retry-after`,
   else the reset of its exhausted window; when the headers explain nothing, e.g. Cerebras'
   unreported requests-per-minute limit, `cool_down_duration`), whatever the strategy;
3. predictive admission: the call's reservation (gateway.quota.reservations) plus what calls
   already in flight reserved must leave at least `rate_limit_threshold` of every window the
   upstream reports (gateway.ratelimit reads them), and of every window of `rate_limits.cerebras`
   (the plan, gateway.quota.plan) that it does not report (Cerebras reports no
   requests-per-minute window). Before the first headers only the plan's windows are known; with
   no plan configured the first calls go unchecked, and an upstream with no known limit (no plan,
   no reported window) reserves one request and no tokens, without estimating the prompt.
A refused call is skipped by the relay, which serves the request from the next upstream of its
route. Check and reservation happen in one synchronous step, so concurrent requests see each
other's reservations; a reservation ends when the call's response headers arrive (they then
carry the upstream's own account) or the call ends. What the calls in flight reserved is kept as
a running total per upstream, so one admission costs the same however many calls are in flight.

Strategies named in `rate_limits.reactive_strategies` (default: always_cerebras, whose promise is
Cerebras for every request) get the gate without step 3 (`ReactiveGate`): they meet a rate limit
as a 429, then fall back (or fail, with `routing.fallback.to_local: false`) and respect the
cool-down.

Whoever must know of a 429 (adaptive_cerebras' switch, for one) adds a callback to
`rate_limit_listeners`; the gate calls each with the upstream, the reason and the wait it enforces.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Literal

from gateway.accounting.records import UpstreamName
from gateway.accounting.tokens import PromptEstimate
from gateway.config import GatewayConfig
from gateway.errors import UpstreamError, UpstreamRateLimited
from gateway.quota.admission import Refusal, Ticket
from gateway.quota.budget import Budget
from gateway.quota.plan import PlanWindow, plan_windows
from gateway.quota.reservations import GatedUpstream, InFlight, Reservation, estimate_reservation
from gateway.ratelimit import RateLimitWatcher, Unit, window_unit
from gateway.state import EMBEDDED, SharedVerdict, StateStore

log = logging.getLogger("gateway.quota.gate")

Clock = Callable[[], float]
# Called after a 429 with the upstream, why, and the seconds until the gate lets calls go again.
RateLimitListener = Callable[[UpstreamName, str, float], None]


class _GateTicket:
    __slots__ = ("gate", "upstream", "key")

    def __init__(self, gate: RateLimitGate, upstream: UpstreamName, key: int) -> None:
        self.gate = gate
        self.upstream = upstream
        self.key = key

    def release(self, headers: Mapping[str, str] | None = None) -> None:
        # The upstream's watcher has already read `headers`; only the reservation is given back.
        self.gate.in_flight[self.upstream].remove(self.key)


class _SharedTicket(_GateTicket):
    """A reservation held both here and in the shared store (until headers or the call's end)."""

    __slots__ = ("done",)

    def __init__(self, gate: RateLimitGate, upstream: UpstreamName, key: int) -> None:
        super().__init__(gate, upstream, key)
        self.done = False

    def release(self, headers: Mapping[str, str] | None = None) -> None:
        if self.done:
            return
        self.done = True
        super().release(headers)
        gate = self.gate
        windows = gate.wall_windows(self.upstream) if headers else None
        gate.state.release(self.upstream, gate.shared_key(self.key), windows)


RefusalKind = Literal["budget", "cool_down", "predicted", "unavailable"]


class RateLimitGate:
    """The app's admission gate: budget, 429 cool-downs, predictive admission (module doc)."""

    def __init__(
        self,
        config: GatewayConfig,
        upstreams: Mapping[UpstreamName, GatedUpstream],
        *,
        budget: Budget | None = None,
        clock: Clock = time.monotonic,
        state: StateStore = EMBEDDED,
    ) -> None:
        adaptive = config.routing.adaptive_cerebras
        self.state = state
        self.shared = state.shared
        self.fail_closed = config.state.on_unavailable == "fail_closed"
        self.threshold = adaptive.rate_limit_threshold
        self.cool_down = adaptive.cool_down_duration
        self.reactive_strategies = frozenset(config.rate_limits.reactive_strategies)
        self.upstreams = upstreams
        self.budget = budget
        self.clock = clock
        self.plans: dict[UpstreamName, tuple[PlanWindow, ...]] = {
            "cerebras": plan_windows(config.rate_limits.cerebras)
        }
        self.in_flight: dict[UpstreamName, InFlight] = {}
        self.cooling_until: dict[UpstreamName, float] = {}
        self.hits: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.rate_limit_listeners: list[RateLimitListener] = []
        self._reactive = ReactiveGate(self)
        self._keys = itertools.count()

    def for_strategy(self, name: str) -> ReactiveGate | RateLimitGate:
        """The gate a request of strategy `name` uses (reactive strategies skip prediction)."""
        return self._reactive if name in self.reactive_strategies else self

    # --- UpstreamGate ---------------------------------------------------------------------------

    async def admit(
        self,
        upstream: UpstreamName,
        body: Mapping[str, Any],
        prompt_tokens: PromptEstimate | None = None,
        *,
        predictive: bool = True,
    ) -> Ticket | Refusal:
        """A ticket holding the call's reservation, or why the call must not go now.

        The local check and reservation never suspend. With shared state a call to a
        quota-limited upstream is also checked and reserved in the store, fleet-wide."""
        kind, refusal, need = self._check(upstream, body, predictive, prompt_tokens)
        if refusal is not None:
            return self._refuse(kind, refusal)
        if self.shared and upstream in self.plans:
            return await self._admit_shared(upstream, need, predictive)
        return self._reserve(upstream, need, _GateTicket)

    def _refuse(self, kind: RefusalKind, refusal: Refusal) -> Refusal:
        self.refused[kind] += 1
        if kind == "budget" and self.budget is not None:
            self.budget.note_refused()
        return refusal

    def _reserve(
        self, upstream: UpstreamName, need: Reservation, ticket: type[_GateTicket]
    ) -> _GateTicket:
        now = self.clock()
        key = next(self._keys)
        calls = self.in_flight.get(upstream)
        if calls is None:
            calls = self.in_flight[upstream] = InFlight()
        calls.add(key, need)
        for plan in self.plans.get(upstream, ()):
            plan.add(now, need.of(plan.unit))
        return ticket(self, upstream, key)

    def shared_key(self, key: int) -> str:
        """A reservation's name in the shared store (unique across replicas)."""
        return f"{self.state.replica_id}:{key}"

    async def _admit_shared(
        self, upstream: UpstreamName, need: Reservation, predictive: bool
    ) -> Ticket | Refusal:
        """Check and reserve in the shared store, as one atomic step; the local state decides
        alone when the store cannot answer (`state.on_unavailable`)."""
        key = next(self._keys)
        plans = tuple((p.name, p.unit, p.limit, p.seconds) for p in self.plans.get(upstream, ()))
        budget = self.budget.shared_limits() if self.budget is not None else {}
        verdict = await self.state.reserve(
            upstream,
            self.shared_key(key),
            (need.requests, need.tokens),
            threshold=self.threshold,
            predictive=predictive,
            plans=plans,
            budget=budget,
        )
        if verdict is None:
            # A timed-out script may still have reserved: give that back (or let its TTL end it).
            self.state.release(upstream, self.shared_key(key), None)
            if self.fail_closed:
                reason = (
                    f"{upstream}: the shared quota and budget cannot be checked (Redis "
                    "unavailable; state.on_unavailable: fail_closed)"
                )
                return self._refuse("unavailable", Refusal(upstream, reason))
            return self._reserve(upstream, need, _GateTicket)
        if verdict.kind != "ok":
            return self._refuse(verdict.kind, self._shared_refusal(upstream, verdict))
        ticket = self._reserve(upstream, need, _SharedTicket)
        # The store knows the reservation under the key drawn before the await.
        self.in_flight[upstream].rekey(ticket.key, key)
        ticket.key = key
        return ticket

    def _shared_refusal(self, upstream: UpstreamName, verdict: SharedVerdict) -> Refusal:
        if verdict.kind == "cool_down":
            reason = (
                f"{upstream} is cooling down after a 429 (fleet-wide, {verdict.wait:.1f}s left)"
            )
        elif verdict.kind == "budget":
            reason = (
                f"{verdict.window} Cerebras budget exhausted fleet-wide (${verdict.left:.4f} of "
                f"${verdict.limit:.2f})"
            )
            if self.budget is not None:
                return self.budget.fleet_refusal(upstream, reason)
        else:
            pending = Reservation(verdict.pending, verdict.pending)
            unit: Unit = "tokens" if verdict.window.startswith("tokens") else "requests"
            reason = self._why(
                upstream, verdict.window, verdict.left, verdict.limit, pending, unit
            ).replace("by calls in flight", "by calls in flight fleet-wide")
        return Refusal(upstream, reason, retry_after=verdict.wait)

    def wall_windows(
        self, upstream: UpstreamName
    ) -> dict[str, tuple[float | None, float | None, float | None]]:
        """The upstream's latest windows with resets as unix seconds (for the shared store)."""
        gated = self.upstreams.get(upstream)
        if gated is None:
            return {}
        offset = time.time() - gated.watcher.clock()
        return {
            name: (w.limit, w.remaining, None if w.reset_at is None else w.reset_at + offset)
            for name, w in gated.watcher.windows.items()
        }

    def check(
        self,
        upstream: UpstreamName,
        body: Mapping[str, Any],
        prompt_tokens: PromptEstimate | None = None,
    ) -> Refusal | None:
        """What `admit` with the same estimate would refuse with right now, reserving nothing."""
        return self._check(upstream, body, True, prompt_tokens)[1]

    def observe_failure(self, upstream: UpstreamName, error: UpstreamError) -> None:
        """After a 429: no call to `upstream` until its reset (every strategy obeys).

        The reset is the one the headers state (`retry-after` or an exhausted window); when they
        state none, `cool_down_duration` (at least the 429's own retry delay). The error's
        `retry_after` is set to that wait."""
        if not isinstance(error, UpstreamRateLimited):
            return
        now = self.clock()
        self.hits[upstream] += 1
        gated = self.upstreams.get(upstream)
        wait = gated.watcher.explained_wait() if gated is not None else None
        source = "its reset"
        if wait is None:
            # The limit hit is one the headers do not report: wait a whole cool-down.
            wait = max(self.cool_down, error.retry_after or 0.0)
            source = "cool_down_duration (the headers do not say which limit was hit)"
        until = now + wait
        if self.shared:
            self.state.cool_down(upstream, time.time() + wait)
        # A client 429 built from this error then tells the wait the gate will enforce.
        error.retry_after = wait
        previous = self.cooling_until.get(upstream)
        if previous is None or until > previous:
            self.cooling_until[upstream] = until
            if previous is None or previous <= now:
                log.warning(
                    "%s answered 429 (%s): no calls to it for %.1fs, until %s",
                    upstream,
                    error.message,
                    wait,
                    source,
                )
        reason = f"{upstream} answered 429: {error.message}"
        for listener in self.rate_limit_listeners:
            listener(upstream, reason, wait)

    # --- checks ---------------------------------------------------------------------------------

    def _check(
        self,
        upstream: UpstreamName,
        body: Mapping[str, Any],
        predictive: bool,
        prompt_tokens: PromptEstimate | None = None,
    ) -> tuple[RefusalKind, Refusal | None, Reservation]:
        now = self.clock()
        if self.budget is not None:
            spent = self.budget.refusal(upstream)
            if spent is not None:
                return "budget", spent, Reservation()
        until = self.cooling_until.get(upstream)
        if until is not None:
            if now < until:
                left = until - now
                reason = f"{upstream} is cooling down after a 429 ({left:.1f}s left)"
                return "cool_down", Refusal(upstream, reason, retry_after=left), Reservation()
            del self.cooling_until[upstream]
        gated = self.upstreams.get(upstream)
        if gated is None:
            return "predicted", None, Reservation()
        if not self.plans.get(upstream) and not gated.watcher.knows_a_limit():
            # Nothing to check the tokens against: skip the prompt estimate (a JSON walk).
            return "predicted", None, Reservation(requests=1.0)
        need = estimate_reservation(gated, body, prompt_tokens)
        if predictive:
            refusal = self._predict(upstream, gated.watcher, need, now)
            if refusal is not None:
                return "predicted", refusal, need
        return "predicted", None, need

    def pending(self, upstream: UpstreamName) -> Reservation:
        """What the calls to `upstream` now in flight reserved (until their headers arrived)."""
        calls = self.in_flight.get(upstream)
        return calls.total if calls is not None else Reservation()

    def _predict(
        self, upstream: UpstreamName, watcher: RateLimitWatcher, need: Reservation, now: float
    ) -> Refusal | None:
        pending = self.pending(upstream)
        reported: set[str] = set()
        for name, window in sorted(watcher.windows.items()):
            unit = window_unit(name)
            if unit is None or window.limit is None or window.limit <= 0:
                continue
            reset_passed = window.reset_at is not None and now >= window.reset_at
            if reset_passed:
                remaining = window.limit
            elif window.remaining is None:
                continue
            else:
                remaining = window.remaining
            reported.add(name)
            left = remaining - pending.of(unit) - need.of(unit)
            if left < self.threshold * window.limit:
                wait = None if reset_passed or window.reset_at is None else window.reset_at - now
                return Refusal(
                    upstream, self._why(upstream, name, left, window.limit, pending, unit), wait
                )
        for plan in self.plans.get(upstream, ()):
            if plan.name in reported:
                continue
            floor = self.threshold * plan.limit
            left = plan.remaining(now) - need.of(plan.unit)
            if left < floor:
                wait = plan.wait(now, need.of(plan.unit), floor)
                why = self._why(upstream, f"{plan.name} (plan)", left, plan.limit, None, plan.unit)
                return Refusal(upstream, why, wait)
        return None

    def _why(
        self,
        upstream: UpstreamName,
        window: str,
        left: float,
        limit: float,
        pending: Reservation | None,
        unit: Unit,
    ) -> str:
        reason = (
            f"{upstream} rate limit: {window} would drop to {max(left, 0):.0f} of {limit:.0f} "
            f"(under the {self.threshold:.0%} threshold)"
        )
        if pending is not None and pending.of(unit):
            reason += f", {pending.of(unit):.0f} reserved by calls in flight"
        return reason

    # --- reporting ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The gate's part of `/stats` `rate_limits` (merged beside `total_hits`, the original
        `/stats` key)."""
        now = self.clock()
        by_reason = {
            "predicted": self.refused["predicted"],
            "cool_down": self.refused["cool_down"],
            "state_unavailable": self.refused["unavailable"],
            "http_429": sum(self.hits.values()),
        }
        headroom = {
            name: up.watcher.headroom() for name, up in self.upstreams.items() if up.watcher.windows
        }
        plans: dict[str, dict[str, float]] = {}
        for name, windows in self.plans.items():
            up = self.upstreams.get(name)
            reported = up.watcher.windows if up is not None else {}
            in_use = {p.name: round(p.remaining(now) / p.limit, 4) for p in windows}
            if in_use := {k: v for k, v in in_use.items() if k not in reported}:
                plans[name] = in_use
        in_flight = {}
        for name, calls in self.in_flight.items():
            if calls:
                in_flight[name] = {"calls": len(calls), "tokens": round(calls.total.tokens)}
        cooling = {
            name: round(until - now, 1) for name, until in self.cooling_until.items() if until > now
        }
        return {
            "hits": dict(self.hits),
            "fallbacks": sum(by_reason.values()),
            "fallbacks_by_reason": by_reason,
            "threshold": self.threshold,
            "headroom": headroom,
            "plan_headroom": plans,
            "in_flight": in_flight,
            "cooling_down_s": cooling,
        }


class ReactiveGate:
    """The gate without predictive admission: budget and 429 cool-downs still apply."""

    def __init__(self, gate: RateLimitGate) -> None:
        self.gate = gate

    async def admit(
        self,
        upstream: UpstreamName,
        body: Mapping[str, Any],
        prompt_tokens: PromptEstimate | None = None,
    ) -> Ticket | Refusal:
        return await self.gate.admit(upstream, body, prompt_tokens, predictive=False)

    def observe_failure(self, upstream: UpstreamName, error: UpstreamError) -> None:
        self.gate.observe_failure(upstream, error)
