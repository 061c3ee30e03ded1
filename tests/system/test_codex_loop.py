"""The real Codex CLI 0.171.0 through the gateway's Responses door (issue 19).

On the simulators, under always_local, smart_routing and speculative_decoding: `codex exec` asks
for a command to be run, the upstream (scripted by gateway.dev.sim.agents) answers with Codex's
own `exec_command` call, Codex runs it (the command leaves a file behind as proof), sends the
function_call_output back, gets the final text and exits 0.

Skips with the reason when node/npm/codex are missing (GLM_REQUIRE_CODEX=1 makes that a
failure), and while the gateway has no /v1/responses door (it answers 404). Codex reaches only
127.0.0.1 (tests/codex_support.py says how); each run is bounded in time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agent_sandbox import check_agent_loop, loop_gateway, require_agent
from codex_support import find_codex, run_codex

from gateway.dev.sim import AgentLoop, SimServer

DOOR = "/v1/responses"


STRATEGIES = ["always_local", "smart_routing", "speculative_decoding"]


RUN_TIMEOUT = 120.0


COMMAND = "echo codex-was-here > proof.txt && echo done"


@pytest.fixture(scope="module")
def codex_bin() -> Path:
    return require_agent(find_codex(), "the Codex CLI", "GLM_REQUIRE_CODEX")


@pytest.mark.timeout(RUN_TIMEOUT + 60)
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_codex_runs_a_command_through_the_gateway(
    strategy: str,
    codex_bin: Path,
    make_gateway: Any,
    local_sim: SimServer,
    cerebras_sim: SimServer,
    client: Any,
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "codex"
    loop = AgentLoop(command=COMMAND, final_text="The command ran.")
    sims = (local_sim, cerebras_sim)
    gw = await loop_gateway(make_gateway, client, sims, strategy, DOOR, loop)

    run = await run_codex(
        codex_bin, gw.url, "Leave a proof file by running a command.", run_dir,
        timeout=RUN_TIMEOUT,
    )  # fmt: skip

    # The exec_command output came back through the door as a tool message.
    await check_agent_loop(run, gw, sims, strategy, "done")
    assert (run_dir / "work" / "proof.txt").read_text() == "codex-was-here\n"
    assert "The command ran." in run.stdout
