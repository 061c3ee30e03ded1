"""Rate limits: what each upstream's headers say, and the admission gate built on them.

`RateLimitWatcher` (one per upstream, fed by every response, success or error) understands two
header families:
- Cerebras: `x-ratelimit-{limit,remaining,reset}-{requests-day,tokens-minute}`, float values, resets
  in seconds from now;
- OpenAI style: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets like `6m0s`;
plus `retry-after` (seconds or an HTTP date). Deadlines are kept on the monotonic clock; a window
whose reset has passed is assumed full again. Malformed values are ignored with a debug log.

`RateLimitGate` is the app's admission gate (gateway.quota.admission.UpstreamGate). Before every
upstream
call it checks, in this order:
1. the spend budget (gateway.quota.budget; Cerebras only);
2. a cool-down: after a 429 the upstream gets no call until its reset (the 429's `retry-after`,
   else the reset of its exhausted window; when the headers explain nothing, e.g. Cerebras'
   unreported requests-per-minute limit, `cool_down_duration`), whatever the strategy;
3. predictive admission: the call's reservation (estimated prompt tokens plus the
   `max_completion_tokens` the upstream will be sent, i.e. after the cap; one request) plus what
   calls already in flight reserved must leave at least `rate_limit_threshold` of every window
   the upstream reports, and of every window of `rate_limits.cerebras` (the plan) that it does
   not report (Cerebras reports no requests-per-minute window). Before the first headers only the
   plan's windows are known; with no plan configured the first calls go unchecked, and an
   upstream with no known limit (no plan, no reported window) reserves one request and no
   tokens, without estimating the prompt.
A refused call is skipped by the relay, which serves the request from the next upstream of its
route. Check and reservation happen in one synchronous step, so concurrent requests see each
other's reservations; a reservation ends when the call's response headers arrive (they then
carry the upstream's own account) or the call ends.

Strategies named in `rate_limits.reactive_strategies` (default: always_cerebras, whose promise is
Cerebras for every request) get the gate without step 3: they meet a rate limit as a 429, then
fall back (or fail, with `routing.fallback.to_local: false`) and respect the cool-down.

`AdaptiveSwitch` is adaptive_cerebras' state machine: Cerebras by default; when the gate would
refuse Cerebras (or Cerebras answers 429) it switches to local for `cool_down_duration`, then goes
back only once fresh headers (newer than the switch) or an elapsed reset show capacity.
"""

from __future__ import annotations

import email.utils
import itertools
import logging
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from gateway.accounting.records import UpstreamName
from gateway.accounting.tokens import PromptEstimate, estimate_prompt_tokens
from gateway.config import AdaptiveConfig, GatewayConfig, PlanLimits
from gateway.errors import UpstreamError, UpstreamRateLimited
from gateway.quota.admission import Refusal, Ticket
from gateway.quota.budget import Budget
from gateway.state import EMBEDDED, SharedVerdict, StateStore

log = logging.getLogger("gateway.ratelimit")

_PREFIX = "x-ratelimit-"
_FIELDS = ("limit", "remaining", "reset")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_FULL = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|h|m|s))+")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(value: str) -> float | None:
    """Seconds from `12.5`, `6m0s`, `1h2m3.5s` or `250ms`; None when malformed or negative."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        if not _DURATION_FULL.fullmatch(text):
            return None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(text))
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return None
    return seconds


def parse_retry_after(value: str, now_wall: float | None = None) -> float | None:
    """Seconds from a `retry-after` value: delta seconds or an HTTP date."""
    seconds = parse_duration(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    wall = time.time() if now_wall is None else now_wall
    return max(0.0, when.timestamp() - wall)


@dataclass(slots=True)
class Window:
    """One quota window (e.g. `tokens-minute`): capacity, what is left, when it is full again."""

    limit: float | None = None
    remaining: float | None = None
    reset_at: float | None = None

    def headroom(self, now: float) -> float | None:
        """Fraction of the window left (1.0 once its reset passed); None when unknown."""
        if self.reset_at is not None and now >= self.reset_at:
            return 1.0
        if self.limit is None or self.remaining is None or self.limit <= 0:
            return None
        return max(0.0, min(1.0, self.remaining / self.limit))


class RateLimitWatcher:
    """Per-upstream rate-limit state fed by `observe(headers)` on every response."""

    def __init__(self, upstream: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.upstream = upstream
        self.clock = clock
        self.windows: dict[str, Window] = {}
        self.retry_at: float | None = None
        self.updated_at: float | None = None

    def knows_a_limit(self) -> bool:
        """Whether any response reported the size of one of this upstream's windows."""
        return any(window.limit for window in self.windows.values())

    def observe(self, headers: Mapping[str, str]) -> bool:
        """Update from response headers; True when any rate-limit header was understood."""
        now = self.clock()
        seen = False
        for raw_name, raw_value in headers.items():
            name = raw_name.lower()
            if name == "retry-after":
                seconds = parse_retry_after(raw_value)
                if seconds is None:
                    log.debug("%s: ignoring malformed retry-after", self.upstream)
                    continue
                self.retry_at = now + seconds
                seen = True
                continue
            if not name.startswith(_PREFIX):
                continue
            field, _, window_name = name[len(_PREFIX) :].partition("-")
            if field not in _FIELDS or not window_name:
                continue
            value = parse_duration(raw_value) if field == "reset" else _parse_number(raw_value)
            if value is None:
                log.debug("%s: ignoring malformed %s", self.upstream, name)
                continue
            window = self.windows.setdefault(window_name, Window())
            if field == "limit":
                window.limit = value
            elif field == "remaining":
                window.remaining = value
            else:
                window.reset_at = now + value
            seen = True
        if seen:
            self.updated_at = now
        return seen

    def retry_after(self) -> float | None:
        """Seconds until the upstream should be tried again after a 429, from what is known.

        `retry-after` when sent; else the reset of the most exhausted window (an empty daily
        request window wins over the minute token window); else the minute token window's reset.
        """
        explained = self.explained_wait()
        if explained is not None:
            return explained
        now = self.clock()
        minute = self.windows.get("tokens-minute") or self.windows.get("tokens")
        if minute and minute.reset_at is not None and minute.reset_at > now:
            return minute.reset_at - now
        return None

    def explained_wait(self) -> float | None:
        """The wait the headers state for certain: a pending `retry-after`, else the longest
        reset among exhausted windows. None when they do not say which limit was hit (Cerebras
        reports no requests-per-minute window, for one)."""
        now = self.clock()
        if self.retry_at is not None and self.retry_at > now:
            return self.retry_at - now
        best: float | None = None
        for window in self.windows.values():
            if window.reset_at is None or window.reset_at <= now:
                continue
            exhausted = window.remaining is not None and window.remaining <= 0
            wait = window.reset_at - now
            if exhausted and (best is None or wait > best):
                best = wait
        return best

    def headroom(self) -> dict[str, float | None]:
        now = self.clock()
        return {name: w.headroom(now) for name, w in sorted(self.windows.items())}


def _parse_number(value: str) -> float | None:
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if number != number or number < 0 or number == float("inf"):
        return None
    return number


# --- admission --------------------------------------------------------------------------------

Unit = Literal["requests", "tokens"]
Clock = Callable[[], float]
# What Cerebras reserves for zai-glm-4.7 when a request sets no limit (its maximum output); only
# used when `max_completion_tokens_cap` is off and the client sent no limit either.
UNCAPPED_COMPLETION_RESERVATION = 40_000
_MINUTE = 60.0
_DAY = 86_400.0
_RECENT_SWITCHES = 10


def window_unit(name: str) -> Unit | None:
    """What a window counts, from its header name (`tokens-minute` -> tokens)."""
    if name.startswith("tokens"):
        return "tokens"
    if name.startswith("requests"):
        return "requests"
    return None


@dataclass(frozen=True, slots=True)
class Reservation:
    """What one call takes from an upstream's quota before it runs."""

    requests: float = 0.0
    tokens: float = 0.0

    def of(self, unit: Unit) -> float:
        return self.tokens if unit == "tokens" else self.requests

    def __add__(self, other: Reservation) -> Reservation:
        return Reservation(self.requests + other.requests, self.tokens + other.tokens)


class GatedUpstream(Protocol):
    """What the gate needs of an upstream: its watcher and the body it would send."""

    watcher: RateLimitWatcher

    def build_body(self, client_body: Mapping[str, Any]) -> dict[str, Any]: ...


def estimate_reservation(
    upstream: GatedUpstream, body: Mapping[str, Any], prompt_tokens: PromptEstimate | None = None
) -> Reservation:
    """One request, the prompt's estimated tokens and the completion limit the upstream is sent."""
    sent = upstream.build_body(body)
    limit = sent.get("max_completion_tokens", sent.get("max_tokens"))
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        limit = UNCAPPED_COMPLETION_RESERVATION
    prompt = prompt_tokens() if prompt_tokens is not None else estimate_prompt_tokens(body)
    return Reservation(requests=1.0, tokens=float(prompt + limit))


class PlanWindow:
    """A window of the configured plan, kept as a sliding log of what the gate admitted.

    A sliding log of limit L over W seconds never admits more than a token bucket of the same
    capacity refilling at L/W would, so it is a safe stand-in for Cerebras' buckets.
    """

    def __init__(self, name: str, unit: Unit, limit: float, seconds: float) -> None:
        self.name = name
        self.unit = unit
        self.limit = limit
        self.seconds = seconds
        self._log: deque[tuple[float, float]] = deque()
        self._used = 0.0

    def _expire(self, now: float) -> None:
        while self._log and self._log[0][0] + self.seconds <= now:
            self._used -= self._log.popleft()[1]
        if not self._log:
            self._used = 0.0

    def remaining(self, now: float) -> float:
        self._expire(now)
        return max(0.0, self.limit - self._used)

    def add(self, now: float, amount: float) -> None:
        if amount > 0:
            self._expire(now)
            self._log.append((now, amount))
            self._used += amount

    def wait(self, now: float, need: float, floor: float) -> float | None:
        """Seconds until `need` fits above `floor`; None if it never will."""
        self._expire(now)
        used = self._used
        if self.limit - used - need >= floor:
            return 0.0
        for at, amount in self._log:
            used -= amount
            if self.limit - used - need >= floor:
                return at + self.seconds - now
        return None


def plan_windows(plan: PlanLimits) -> tuple[PlanWindow, ...]:
    """The plan's windows, named like the headers that would report them."""
    windows = []
    if plan.requests_per_minute is not None:
        windows.append(PlanWindow("requests-minute", "requests", plan.requests_per_minute, _MINUTE))
    if plan.tokens_per_minute is not None:
        windows.append(PlanWindow("tokens-minute", "tokens", plan.tokens_per_minute, _MINUTE))
    if plan.requests_per_day is not None:
        windows.append(PlanWindow("requests-day", "requests", plan.requests_per_day, _DAY))
    return tuple(windows)


class _GateTicket:
    __slots__ = ("gate", "upstream", "key")

    def __init__(self, gate: RateLimitGate, upstream: UpstreamName, key: int) -> None:
        self.gate = gate
        self.upstream = upstream
        self.key = key

    def release(self, headers: Mapping[str, str] | None = None) -> None:
        # The upstream's watcher has already read `headers`; only the reservation is given back.
        self.gate.in_flight.get(self.upstream, {}).pop(self.key, None)


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
        self.in_flight: dict[UpstreamName, dict[int, Reservation]] = {}
        self.cooling_until: dict[UpstreamName, float] = {}
        self.hits: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.adaptive = AdaptiveSwitch(self, adaptive)
        self._reactive = ReactiveGate(self)
        self._keys = itertools.count()

    def set_clock(self, clock: Clock) -> None:
        """Use `clock` here and in every upstream's watcher (they must share one clock)."""
        self.clock = clock
        for upstream in self.upstreams.values():
            upstream.watcher.clock = clock

    def for_strategy(self, name: str) -> ReactiveGate | RateLimitGate:
        """The gate a request of strategy `name` uses (reactive strategies skip prediction)."""
        return self._reactive if name in self.reactive_strategies else self

    # --- UpstreamGate ---------------------------------------------------------------------------

    def admit(
        self,
        upstream: UpstreamName,
        body: Mapping[str, Any],
        prompt_tokens: PromptEstimate | None = None,
        *,
        predictive: bool = True,
    ) -> Ticket | Refusal | Coroutine[Any, Any, Ticket | Refusal]:
        """A ticket holding the call's reservation, or why the call must not go now.

        With shared state a call to a quota-limited upstream is also checked and reserved in the
        store, fleet-wide: the answer is then a coroutine (the caller awaits it)."""
        kind, refusal, need = self._check(upstream, body, predictive, prompt_tokens)
        if refusal is not None:
            return self._refuse(kind, refusal)
        if self.shared and upstream in self.plans:
            return self._admit_shared(upstream, need, predictive)
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
        self.in_flight.setdefault(upstream, {})[key] = need
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
        self.in_flight[upstream][key] = self.in_flight[upstream].pop(ticket.key)
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

    def check(self, upstream: UpstreamName, body: Mapping[str, Any]) -> Refusal | None:
        """What `admit` would refuse with right now, reserving nothing."""
        return self._check(upstream, body, True)[1]

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
        self.adaptive.on_rate_limited(upstream, f"{upstream} answered 429: {error.message}", wait)

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
        total = Reservation()
        for reservation in self.in_flight.get(upstream, {}).values():
            total = total + reservation
        return total

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
        """The gate's part of `/stats` `rate_limits` (merged beside the spec's `total_hits`)."""
        now = self.clock()
        by_reason = {
            "predicted": self.refused["predicted"],
            "cool_down": self.refused["cool_down"],
            "state_unavailable": self.refused["unavailable"],
            "http_429": sum(self.hits.values()),
            "adaptive_local": self.adaptive.routed_local,
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
                total = self.pending(name)
                in_flight[name] = {"calls": len(calls), "tokens": round(total.tokens)}
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
            **self.adaptive.snapshot(now),
        }


class ReactiveGate:
    """The gate without predictive admission: budget and 429 cool-downs still apply."""

    def __init__(self, gate: RateLimitGate) -> None:
        self.gate = gate

    def admit(
        self,
        upstream: UpstreamName,
        body: Mapping[str, Any],
        prompt_tokens: PromptEstimate | None = None,
    ) -> Ticket | Refusal | Coroutine[Any, Any, Ticket | Refusal]:
        return self.gate.admit(upstream, body, prompt_tokens, predictive=False)

    def observe_failure(self, upstream: UpstreamName, error: UpstreamError) -> None:
        self.gate.observe_failure(upstream, error)


Mode = Literal["cerebras", "local"]


class AdaptiveSwitch:
    """adaptive_cerebras' state, shared by all its requests (one per gate).

    `cerebras` (the default): each request first asks the gate whether Cerebras would be admitted;
    a refusal (threshold, cool-down, budget) or a Cerebras 429 switches to `local` with the reason.
    `local`: requests go local for `cool_down_duration`; after it the switch goes back to Cerebras
    only if headers newer than the switch arrived or the reset known at the switch has passed (with
    no reset known, the cool-down's end counts as one), and the gate would admit Cerebras; otherwise
    it stays local for another cool-down.
    """

    upstream: UpstreamName = "cerebras"

    def __init__(self, gate: RateLimitGate, config: AdaptiveConfig) -> None:
        self.gate = gate
        self.cool_down = config.cool_down_duration
        self.state: Mode = "cerebras"
        self.reason = "Cerebras by default"
        self.switched_at: float | None = None
        self.local_until = 0.0
        self.reset_at: float | None = None
        self.switches = 0
        self.routed_local = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=_RECENT_SWITCHES)
        self.shared = gate.shared
        self._adopted_at = 0.0  # wall time of the latest switch read from the shared store

    async def pull(self) -> None:
        """Adopt a switch another replica made since the last one seen (shared state only)."""
        remote = await self.gate.state.adaptive()
        if remote is None or remote.get("by") == self.gate.state.replica_id:
            return
        at = float(remote.get("at", 0.0))
        if at <= self._adopted_at:
            return
        self._adopted_at = at
        offset = self.gate.clock() - time.time()
        self.state = "local" if remote.get("state") == "local" else "cerebras"
        self.reason = f"{remote.get('reason', '')} (switched by another replica)"
        self.switched_at = at + offset
        self.local_until = float(remote.get("local_until", 0.0)) + offset
        reset = remote.get("reset_at")
        self.reset_at = None if reset is None else float(reset) + offset

    def decide(self, body: Mapping[str, Any]) -> tuple[UpstreamName, str]:
        """The upstream to try first for this request and the reason (for metadata and log)."""
        now = self.gate.clock()
        if self.state == "cerebras":
            refusal = self.gate.check(self.upstream, body)
            if refusal is None:
                return self.upstream, f"adaptive_cerebras: cerebras ({self._headroom()})"
            self._to_local(now, refusal.reason, refusal.retry_after)
            return self._local(f"switched to local for {self.cool_down:g}s ({self.reason})")
        if now < self.local_until:
            left = self.local_until - now
            return self._local(f"local, cool-down {left:.1f}s left ({self.reason})")
        watcher = self.gate.upstreams[self.upstream].watcher if self._known() else None
        fresh = (
            watcher is not None
            and watcher.updated_at is not None
            and self.switched_at is not None
            and watcher.updated_at > self.switched_at
        )
        reset_passed = self.reset_at is None or now >= self.reset_at
        if not (fresh or reset_passed):
            wait = (self.reset_at or now) - now
            return self._local(
                f"local, cool-down over; waiting for fresh rate-limit headers or the reset "
                f"in {wait:.1f}s"
            )
        refusal = self.gate.check(self.upstream, body)
        if refusal is not None:
            self._to_local(now, f"still limited: {refusal.reason}", refusal.retry_after)
            return self._local(f"stays local for {self.cool_down:g}s ({self.reason})")
        evidence = "fresh headers show capacity" if fresh else "the reset has passed"
        self._switch(now, "cerebras", f"back to Cerebras: {evidence} ({self._headroom()})")
        return self.upstream, f"adaptive_cerebras: cerebras ({self.reason})"

    def on_rate_limited(self, upstream: UpstreamName, reason: str, reset_in: float) -> None:
        """A 429 from Cerebras, whichever strategy's call it was."""
        if upstream != self.upstream:
            return
        now = self.gate.clock()
        if self.state == "cerebras":
            self._to_local(now, reason, reset_in)
        else:
            self.reset_at = max(self.reset_at or now, now + reset_in)

    def _known(self) -> bool:
        return self.upstream in self.gate.upstreams

    def _local(self, reason: str) -> tuple[UpstreamName, str]:
        self.routed_local += 1
        return "local", f"adaptive_cerebras: {reason}"

    def _to_local(self, now: float, reason: str, reset_in: float | None) -> None:
        self.local_until = now + self.cool_down
        self.reset_at = None if reset_in is None else now + reset_in
        self._switch(now, "local", reason)

    def _switch(self, now: float, state: Mode, reason: str) -> None:
        changed = state != self.state
        self.state = state
        self.reason = reason
        self.switched_at = now
        if changed:
            self.switches += 1
        self.recent.append({"at": round(time.time(), 3), "to": state, "reason": reason})
        if self.shared:
            offset = time.time() - now
            self.gate.state.publish_adaptive(
                {
                    "by": self.gate.state.replica_id,
                    "at": time.time(),
                    "state": state,
                    "reason": reason,
                    "local_until": self.local_until + offset,
                    "reset_at": None if self.reset_at is None else self.reset_at + offset,
                }
            )
        level = logging.WARNING if state == "local" else logging.INFO
        verb = "switch to" if changed else "stay on"
        log.log(level, "adaptive_cerebras: %s %s: %s", verb, state, reason)

    def _headroom(self) -> str:
        if not self._known():
            return "no rate-limit data"
        headroom = self.gate.upstreams[self.upstream].watcher.headroom()
        known = {k: v for k, v in headroom.items() if v is not None}
        if not known:
            return "no rate-limit headers yet"
        return "headroom " + ", ".join(f"{k} {v:.0%}" for k, v in known.items())

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "state": self.state,
            "reason": self.reason,
            "cool_down_remaining_s": round(max(0.0, self.local_until - now), 1)
            if self.state == "local"
            else 0.0,
            "switches": self.switches,
            "recent_switches": list(self.recent),
        }
