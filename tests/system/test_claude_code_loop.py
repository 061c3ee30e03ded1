"""The real Claude Code CLI 2.1.332 through the gateway's Anthropic Messages door (issue 19).

On the simulators, under always_local, smart_routing and speculative_decoding: `claude -p` asks
for a file, the upstream (scripted by gateway.dev.sim.agents) answers with Claude Code's own
`Write` tool call, Claude Code writes the file, sends the tool result back, gets the final text
and exits 0. Once more against the real llama-server (marker `llamacpp`): a text answer.

Skips with the reason when node/npm/claude are missing (GLM_REQUIRE_CLAUDE_CODE=1 makes that a
failure), and while the gateway has no /v1/messages door (it answers 404). Claude Code reaches
only 127.0.0.1 (tests/claude_code_support.py says how); each run is bounded in time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_sandbox import check_agent_loop, loop_gateway, require_agent, require_door
from claude_code_support import find_claude_code, run_claude_code
from llamacpp_support import running_llama
from support import gateway_config, start_gateway

from gateway.dev.llama_server import LlamaServer
from gateway.dev.sim import AgentLoop, SimServer

DOOR = "/v1/messages"


STRATEGIES = ["always_local", "smart_routing", "speculative_decoding"]


RUN_TIMEOUT = 120.0


CONTENT = "hello from claude code through the gateway\n"


# The real-model run drops Claude Code's tools, 7 KB system prompt and environment notes (`--bare
# --tools "" --system-prompt`): with them its first request is ~12k tokens (minutes of prompt
# processing on 2 cores), and a 270M model given the environment notes last rambles on about them.
LLAMA_CTX = 4096


SHORT_SYSTEM = "You are a terse assistant. Reply with exactly one word and nothing else."


MAX_OUTPUT_TOKENS = 12  # per answer; Claude Code resumes a cut answer ~3 times


@pytest.fixture(scope="module")
def claude_bin() -> Path:
    return require_agent(find_claude_code(), "the Claude Code CLI", "GLM_REQUIRE_CLAUDE_CODE")


@pytest.mark.timeout(RUN_TIMEOUT + 60)
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_claude_code_writes_a_file_through_the_gateway(
    strategy: str,
    claude_bin: Path,
    make_gateway: Any,
    local_sim: SimServer,
    cerebras_sim: SimServer,
    client: Any,
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "claude"
    target = run_dir / "work" / "hello.txt"
    loop = AgentLoop(write_path=str(target), write_content=CONTENT, final_text="Wrote hello.txt.")
    sims = (local_sim, cerebras_sim)
    gw = await loop_gateway(make_gateway, client, sims, strategy, DOOR, loop)

    run = await run_claude_code(
        claude_bin, gw.root, "Create hello.txt with a greeting.", run_dir, timeout=RUN_TIMEOUT
    )

    # The Write call's result came back through the door as a tool message.
    await check_agent_loop(run, gw, sims, strategy, "hello.txt")
    assert target.read_text() == CONTENT
    assert "Wrote hello.txt." in run.stdout


@pytest.fixture(scope="module")
def big_llama(
    llama_install: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    with running_llama(llama_install, tmp_path_factory.mktemp("llama-cc"), ctx=LLAMA_CTX) as srv:
        yield srv


@pytest.mark.llamacpp
@pytest.mark.timeout(420)
async def test_claude_code_gets_a_text_answer_from_the_real_llama_server(
    claude_bin: Path,
    big_llama: LlamaServer,
    cerebras_sim: SimServer,
    aiohttp_server: Any,
    client: Any,
    tmp_path: Path,
) -> None:
    """The project's Gemma 3 270M is a base model: its GGUF has no chat template that ends a
    turn, so every answer stops at max_tokens. Claude Code then asks to resume ("Output token
    limit hit") a few times and ends with exit 1 and "exceeded the N output token maximum".
    So the check is the text of its assistant messages (stream-json), all from llama-server,
    and an exit that is 0 or that error."""
    config = gateway_config(
        tmp_path,
        big_llama.url,
        cerebras_sim.url,
        strategy="always_local",
        timeouts={"connect": 2, "first_token": 300, "idle": 60},
    )
    gw = await start_gateway(aiohttp_server, config)
    await require_door(client, gw.root, DOOR)

    run = await run_claude_code(
        claude_bin,
        gw.root,
        "Reply with the single word: hello",
        tmp_path / "claude",
        allowed_tools=(),
        max_turns=1,
        timeout=300,
        extra_env={"CLAUDE_CODE_MAX_OUTPUT_TOKENS": str(MAX_OUTPUT_TOKENS)},
        extra_args=(
            "--bare", "--tools", "", "--system-prompt", SHORT_SYSTEM,
            "--output-format", "stream-json", "--verbose",
        ),
    )  # fmt: skip

    assert not run.timed_out, run.stderr[-2000:]
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    texts = [
        block.get("text", "")
        for event in events
        if event.get("type") == "assistant"
        for block in event["message"]["content"]
        if block.get("type") == "text"
    ]
    assert any(text.strip() for text in texts), run.stdout[-3000:]
    if run.returncode != 0:
        assert run.returncode == 1 and "output token maximum" in run.stdout, run.stdout[-3000:]
    assert cerebras_sim.requests == []  # every answer came from llama-server
    await gw.services.ledger.flush()
    # (The door probe's refused request is a row without a model.)
    assert {r.model_used for r in gw.services.ledger.rows()} - {None} == {"local"}
    assert run.blocked == []
