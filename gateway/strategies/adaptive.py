"""`adaptive_cerebras`: Cerebras while its rate limits leave headroom, local while they do not.

`AdaptiveSwitch` is the state machine: Cerebras by default; when the gate would refuse Cerebras
(or Cerebras answers 429, which the gate reports to its `rate_limit_listeners`) it switches to
local for `cool_down_duration`, then goes back only once fresh headers (newer than the switch) or
an elapsed reset show capacity. The app makes one switch (`StrategyContext.adaptive`, shown in
`/stats` `rate_limits`); with shared state its switches are published to the other replicas.
The strategy asks it where each request goes first and keeps the other upstream as the fallback,
so a refusal or a 429 that arrives anyway is still served transparently.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from gateway.accounting.records import UpstreamName
from gateway.accounting.tokens import PromptEstimate
from gateway.config import AdaptiveConfig
from gateway.quota.gate import RateLimitGate
from gateway.serving.exchange import Exchange
from gateway.serving.relay import serve
from gateway.strategies.base import StrategyContext
from gateway.strategies.registry import register

log = logging.getLogger("gateway.strategies.adaptive")

_RECENT_SWITCHES = 10


Mode = Literal["cerebras", "local"]


class AdaptiveSwitch:
    """adaptive_cerebras' state, shared by all its requests (one per app, over the app's gate).

    `cerebras` (the default): each request first asks the gate whether Cerebras would be admitted;
    a refusal (threshold, cool-down, budget) or a Cerebras 429 switches to `local` with the reason.
    `local`: requests go local for `cool_down_duration`; after it the switch goes back to Cerebras
    only if headers newer than the switch arrived or the reset known at the switch has passed (with
    no reset known, the cool-down's end counts as one), and the gate would admit Cerebras; otherwise
    it stays local for another cool-down.
    """

    upstream: UpstreamName = "cerebras"

    def __init__(self, gate: RateLimitGate, config: AdaptiveConfig) -> None:
        """A switch over `gate`'s view of Cerebras; it hears of every 429 the gate observes."""
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
        gate.rate_limit_listeners.append(self.on_rate_limited)

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

    def decide(
        self, body: Mapping[str, Any], prompt_tokens: PromptEstimate | None = None
    ) -> tuple[UpstreamName, str]:
        """The upstream to try first for this request and the reason (for metadata and log);
        `prompt_tokens` is the estimate the request's admission will use."""
        now = self.gate.clock()
        if self.state == "cerebras":
            refusal = self.gate.check(self.upstream, body, prompt_tokens)
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
        refusal = self.gate.check(self.upstream, body, prompt_tokens)
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


@register
class AdaptiveCerebras:
    name: ClassVar[str] = "adaptive_cerebras"
    description: ClassVar[str] = (
        "Cerebras while its rate-limit headers show headroom, local during a cool-down"
    )

    def __init__(self, ctx: StrategyContext) -> None:
        self.switch = ctx.adaptive

    async def run(self, ex: Exchange) -> None:
        if self.switch.shared:  # another replica may have switched meanwhile
            await self.switch.pull()
        estimate = ex.prompt_estimate(self.switch.upstream)
        first, reason = self.switch.decide(ex.body, estimate)
        route: tuple[UpstreamName, ...] = (
            ("cerebras", "local") if first == "cerebras" else ("local", "cerebras")
        )
        await serve(ex, route, reason=reason)
