"""`glm-gateway doctor` against a real llama-server (marker `llamacpp`), Cerebras simulated.

Uses the session fixture `llama_server` (tests/conftest.py): Gemma 3 270M, one slot.
"""

from __future__ import annotations

import orjson
import pytest
from support import CEREBRAS_KEY

from gateway.dev.llama_server import LlamaServer
from gateway.dev.sim import running_sim
from gateway.doctor import amain
from system.test_doctor import cerebras_options, write_config

pytestmark = pytest.mark.llamacpp


async def test_doctor_passes_the_local_checks_of_a_real_llama_server(
    capsys: pytest.CaptureFixture[str], tmp_path, llama_server: LlamaServer
) -> None:
    async with running_sim(cerebras_options()) as cerebras:
        config = write_config(
            tmp_path,
            llama_server.url,
            cerebras.url,
            timeouts={"connect": 2, "first_token": 30, "idle": 15},
        )
        capsys.readouterr()
        status = await amain(["--config", str(config), "--json", "--timeout", "60"])
    out, err = capsys.readouterr()
    assert CEREBRAS_KEY not in out + err
    checks = {c["name"]: c for c in orjson.loads(out)["checks"]}
    for name in ("local.health", "local.model", "local.stream", "local.logprobs"):
        assert checks[name]["verdict"] == "ok", checks[name]
    assert checks["local.model"]["figures"]["model"]
    stream = checks["local.stream"]["figures"]
    assert stream["tokens"] > 0 and stream["ttft_ms"] > 0
    assert stream["rate_source"] == "llama.cpp timings" and stream["tokens_per_s"] > 0
    # One slot against 3 drafts is a warning; tool calls depend on the build's template support.
    assert checks["local.slots"]["verdict"] == "warn"
    assert checks["local.tool_calls"]["verdict"] in ("ok", "warn")
    assert status == 0, out
