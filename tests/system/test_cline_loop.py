"""THE Cline loop, with the real Cline CLI 3.0.65 on the simulators (issue 11).

The local simulator answers "say hello" with a call to a tool that does not exist; Cerebras
answers "Hello!" (Cline 3.0.65 ends a task on a turn without a tool call; it has no
attempt_completion tool). Under smart_routing the task must complete, and Cerebras must take
over after at most one failed local turn. Without the escalation, Cline sends the tool error
back three times, the gateway keeps asking local, and Cline aborts.

Skips with the reason when node/npm/cline are missing; GLM_REQUIRE_CLINE=1 makes that a failure.
Cline reaches only 127.0.0.1 (tests/cline_support.py says how).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_sandbox import require_agent
from cline_support import find_cline, run_cline
from integration.test_router_escalation import script_the_loop


@pytest.fixture(scope="module")
def cline_bin() -> Path:
    return require_agent(find_cline(), "the Cline CLI", "GLM_REQUIRE_CLINE")


async def test_real_cline_completes_after_one_failed_local_turn(
    cline_bin: Path, make_gateway, local_sim, cerebras_sim, tmp_path: Path
) -> None:
    gw = await make_gateway("smart_routing")
    script_the_loop(local_sim, cerebras_sim)
    run = await run_cline(cline_bin, gw.url, "say hello", tmp_path / "cline", timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Hello!" in run.stdout

    await gw.services.ledger.flush()
    rows = gw.services.ledger.rows()
    served = [(r.model_used, r.routing_reason) for r in rows]
    assert [m for m, _ in served] == ["local", "cerebras"], served
    assert served[1][1] == (
        "smart_routing: escalated: the local answer at turn 1 called an unknown tool -> cerebras"
    )
    assert len(local_sim.requests) == 1 and len(cerebras_sim.requests) == 1
    # What Cline sent back after the broken call is what the fixture recorded.
    tool = cerebras_sim.requests[0].body["messages"][-1]
    assert tool["role"] == "tool" and "AI_NoSuchToolError" in tool["content"]
    # Only loopback: anything else went to the refusing proxy stub (feature flags, in 3.0.65).
    assert all(line.startswith("CONNECT ") for line in run.blocked), run.blocked
    assert not any("127.0.0.1" in line for line in run.blocked)
