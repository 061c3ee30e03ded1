"""How hard the doctor probes: waits, timeouts and the few tokens each probe may spend."""

from __future__ import annotations

from dataclasses import dataclass

LOADING_WAIT_S = 15.0
PROBE_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class DoctorOptions:
    """`loading_wait`: seconds to wait for a llama-server still loading its model (503).
    `probe_timeout`: seconds any one call may take. Token limits are per request."""

    loading_wait: float = LOADING_WAIT_S
    probe_timeout: float = PROBE_TIMEOUT_S
    max_tokens: int = 8
    # A tool call's JSON (name, then arguments) needs more than 8 tokens before the name streams;
    # local tokens cost nothing.
    tool_max_tokens: int = 48
    prompt_max_tokens: int = 16
