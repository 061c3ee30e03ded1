"""`glm-gateway doctor` against the real-HTTP simulators on 127.0.0.1: a healthy setup, each way
an upstream can fail to serve, the warnings that name their fix, and no secret in any output."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web
from paths import REPO_ROOT as ROOT
from support import CEREBRAS_KEY

from gateway.dev.llama_server import free_port
from gateway.dev.sim import SimOptions, SimServer, running_sim
from gateway.doctor import amain

WRONG_KEY = "csk-wrong-key-9d8c7b6a5f"


LOCAL_CHECKS = [
    "local.health",
    "local.model",
    "local.stream",
    "local.tool_calls",
    "local.logprobs",
    "local.slots",
]


CEREBRAS_CHECKS = ["cerebras.key", "cerebras.models", "cerebras.stream", "cerebras.rate_limits"]


PROMPT_CHECKS = ["prompt.simple", "prompt.complex", "prompt.code"]


ALL_CHECKS = ["config", *LOCAL_CHECKS, *CEREBRAS_CHECKS, *PROMPT_CHECKS]


SECRETS = (CEREBRAS_KEY, WRONG_KEY)


def local_options(**changes: Any) -> SimOptions:
    """A llama.cpp simulator with slots for parallel_speculative's 3 drafts."""
    options: dict[str, Any] = {"answer_tokens": 12, "n_slots": 3}
    return SimOptions(profile="llamacpp", **{**options, **changes})


def cerebras_options(**changes: Any) -> SimOptions:
    """A Cerebras simulator with a quota, so it sends rate-limit headers."""
    options: dict[str, Any] = {
        "answer_tokens": 16,
        "api_key": CEREBRAS_KEY,
        "quota_requests_per_day": 14_400,
        "quota_tokens_per_minute": 100_000,
    }
    return SimOptions(profile="cerebras", **{**options, **changes})


def write_config(
    tmp_path: Path,
    local_url: str,
    cerebras_url: str,
    *,
    api_key: str = CEREBRAS_KEY,
    **sections: Any,
) -> Path:
    """A config file for the sims; its ledger path must never be created by the doctor."""
    data: dict[str, Any] = {
        "models": {
            "local": {"endpoint": local_url, "model": "test-local"},
            "cerebras": {"endpoint": cerebras_url, "api_key": api_key},
        },
        "timeouts": {"connect": 2, "first_token": 5, "idle": 5},
        "rate_limits": {"cerebras": {"requests_per_minute": 30}},
        "storage": {
            "ledger_path": str(tmp_path / "user_ledger.db"),
            "log_path": str(tmp_path / "logs" / "api_server.log"),
        },
    }
    data.update(sections)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@dataclass
class Run:
    status: int
    out: str
    err: str

    @property
    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = orjson.loads(self.out)
        return document

    def checks(self) -> dict[str, dict[str, Any]]:
        return {c["name"]: c for c in self.json["checks"]}


async def doctor(capsys: pytest.CaptureFixture[str], config: Path, *extra: str) -> Run:
    """Run the doctor in-process; every run also proves that no key was printed."""
    capsys.readouterr()
    status = await amain(["--config", str(config), "--wait", "0.3", "--timeout", "10", *extra])
    captured = capsys.readouterr()
    run = Run(status, captured.out, captured.err)
    assert_no_secret(run.out + run.err)
    return run


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, "an API key was printed"


@pytest.fixture
async def local() -> AsyncIterator[SimServer]:
    async with running_sim(local_options()) as sim:
        yield sim


@pytest.fixture
async def cerebras() -> AsyncIterator[SimServer]:
    async with running_sim(cerebras_options()) as sim:
        yield sim


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CEREBRAS_API_KEY", raising=False)
    monkeypatch.delenv("GATEWAY_API_KEYS", raising=False)


async def test_healthy_setup_every_check_ok(capsys, tmp_path, local, cerebras) -> None:
    config = write_config(tmp_path, local.url, cerebras.url)
    run = await doctor(capsys, config, "--json")
    assert run.status == 0, run.out
    document = run.json
    assert document["exit_status"] == 0
    checks = run.checks()
    assert list(checks) == ALL_CHECKS
    assert {name: c["verdict"] for name, c in checks.items()} == dict.fromkeys(ALL_CHECKS, "ok")
    assert all(set(c) == {"name", "verdict", "detail", "fix", "figures"} for c in checks.values())
    assert checks["local.model"]["figures"]["model"] == "sim-local"
    assert checks["local.tool_calls"]["figures"]["tool_calls"] == ["get_weather"]
    assert checks["local.logprobs"]["figures"]["logprob_tokens"] > 0
    assert checks["local.slots"]["figures"] == {"slots": 3, "max_concurrent_drafts": 3}
    for name in ("local.stream", "cerebras.stream"):
        figures = checks[name]["figures"]
        assert figures["ttft_ms"] is not None and figures["tokens"] > 0
    limits = checks["cerebras.rate_limits"]["figures"]
    assert limits["windows"]["tokens-minute"]["limit"] == 100_000
    assert limits["windows"]["requests-day"]["limit"] == 14_400
    assert limits["plan"]["requests_per_minute"] == 30
    for name in PROMPT_CHECKS:
        figures = checks[name]["figures"]
        assert figures["model_used"] in ("local", "cerebras")
        assert figures["decided_by"]
        assert isinstance(figures["draft_tokens"], int)
        assert isinstance(figures["verified_tokens"], int)
        assert isinstance(figures["similarity"], float)
    assert checks["prompt.simple"]["figures"]["prompt"] == "What is 2+2?"
    # Every probe spent only a few tokens, and the key went to Cerebras only.
    for request in local.requests + cerebras.requests:
        limit = request.body.get("max_tokens", request.body.get("max_completion_tokens"))
        assert isinstance(limit, int) and limit <= 48
    assert all(CEREBRAS_KEY not in str(r.headers) for r in local.requests)
    # The doctor's gateway kept its ledger to itself.
    assert not (tmp_path / "user_ledger.db").exists()


async def test_healthy_setup_human_report(capsys, tmp_path, local, cerebras) -> None:
    run = await doctor(capsys, write_config(tmp_path, local.url, cerebras.url))
    assert run.status == 0
    lines = run.out.splitlines()
    assert lines[0] == f"GLM Token Saver doctor: {tmp_path / 'gateway.yaml'}"
    for name in ALL_CHECKS:
        line = next(line for line in lines if line.split()[1:2] == [name])
        assert line.startswith("ok "), line
    assert "decided_by" in run.out and "model_used" in run.out
    assert lines[-1] == f"{len(ALL_CHECKS)} ok, 0 warn, 0 fail, 0 skip: exit status 0"


async def test_local_refused(capsys, tmp_path, cerebras) -> None:
    config = write_config(tmp_path, f"http://127.0.0.1:{free_port()}/v1", cerebras.url)
    run = await doctor(capsys, config, "--json")
    assert run.status == 1
    checks = run.checks()
    health = checks["local.health"]
    assert health["verdict"] == "fail"
    assert "cannot reach the local server" in health["detail"]
    assert "start llama-server" in health["fix"]
    assert all(checks[name]["verdict"] == "skip" for name in LOCAL_CHECKS[1:])
    assert checks["cerebras.stream"]["verdict"] == "ok"
    # Cerebras still serves the prompts: the draft failed, the gateway says so.
    for name in PROMPT_CHECKS:
        assert checks[name]["figures"]["model_used"] == "cerebras"
        assert checks[name]["verdict"] in ("ok", "warn")


async def test_cerebras_rejects_the_key(capsys, tmp_path, local, cerebras) -> None:
    config = write_config(tmp_path, local.url, cerebras.url, api_key=WRONG_KEY)
    run = await doctor(capsys, config)
    assert run.status == 1
    assert "Cerebras rejected the key: set CEREBRAS_API_KEY" in run.out
    json_run = await doctor(capsys, config, "--json")
    assert json_run.status == 1
    checks = json_run.checks()
    assert checks["cerebras.key"]["verdict"] == "fail"
    assert "CEREBRAS_API_KEY" in checks["cerebras.key"]["fix"]
    assert all(checks[name]["verdict"] == "skip" for name in CEREBRAS_CHECKS[1:])
    assert checks["local.stream"]["verdict"] == "ok"


async def test_cerebras_key_missing(capsys, tmp_path, local, cerebras) -> None:
    config = write_config(tmp_path, local.url, cerebras.url, api_key="")
    run = await doctor(capsys, config, "--json")
    assert run.status == 1
    key = run.checks()["cerebras.key"]
    assert key["verdict"] == "fail"
    assert "no Cerebras API key" in key["detail"]
    assert "export CEREBRAS_API_KEY" in key["fix"]
    assert not cerebras.requests  # no call without a key


async def test_local_still_loading(capsys, tmp_path, cerebras) -> None:
    async with running_sim(local_options(loading_seconds=60)) as loading:
        run = await doctor(capsys, write_config(tmp_path, loading.url, cerebras.url), "--json")
    assert run.status == 1
    health = run.checks()["local.health"]
    assert health["verdict"] == "fail"
    assert "still loading its model after 0.3s" in health["detail"]
    assert "--wait" in health["fix"]


async def test_local_done_loading_within_the_wait(capsys, tmp_path, cerebras) -> None:
    async with running_sim(local_options(loading_seconds=0.4)) as loading:
        config = write_config(tmp_path, loading.url, cerebras.url)
        capsys.readouterr()
        status = await amain(["--config", str(config), "--json", "--wait", "10"])
    run = Run(status, *capsys.readouterr())
    assert run.status == 0, run.out
    health = run.checks()["local.health"]
    assert health["verdict"] == "ok" and "finished loading" in health["detail"]


async def test_local_without_tool_calls(capsys, tmp_path, cerebras) -> None:
    async with running_sim(local_options(tool_calls_supported=False)) as plain:
        run = await doctor(capsys, write_config(tmp_path, plain.url, cerebras.url), "--json")
    assert run.status == 0
    tools = run.checks()["local.tool_calls"]
    assert tools["verdict"] == "warn"
    assert "ignored the tool" in tools["detail"]
    assert "start llama-server with --jinja" in tools["fix"]
    sent = [r.body for r in plain.requests if r.body.get("tools")]
    assert sent and sent[0]["tool_choice"] == "required"


@pytest.fixture
async def refuses_tools(aiohttp_server: Any, local: SimServer) -> AsyncIterator[str]:
    """A llama-server without --jinja in front of the local sim: tools get its 500, the rest
    is passed through. Yields its /v1 base URL."""
    refusal = {"error": {"code": 500, "message": "tools param requires --jinja flag"}}

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path.endswith("/chat/completions") and orjson.loads(body).get("tools"):
            return web.json_response(refusal, status=500)
        async with aiohttp.ClientSession() as session:
            async with session.request(
                request.method, local.base_url + request.path_qs, data=body
            ) as upstream:
                raw = await upstream.read()
                return web.Response(
                    status=upstream.status, body=raw, content_type=upstream.content_type
                )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = await aiohttp_server(app)
    yield str(server.make_url("/v1"))


async def test_local_refusing_tools(capsys, tmp_path, refuses_tools, cerebras) -> None:
    run = await doctor(capsys, write_config(tmp_path, refuses_tools, cerebras.url), "--json")
    assert run.status == 0
    tools = run.checks()["local.tool_calls"]
    assert tools["verdict"] == "warn"
    assert "refused a request with tools: HTTP 500: tools param requires --jinja" in tools["detail"]
    assert tools["figures"]["tool_choice"] == "auto"  # "required" refused, then "auto" tried
    assert "start llama-server with --jinja" in tools["fix"]
    assert run.checks()["local.stream"]["verdict"] == "ok"


async def test_parallel_drafts_without_slots(capsys, tmp_path, cerebras) -> None:
    async with running_sim(local_options(n_slots=1)) as one_slot:
        config = write_config(
            tmp_path,
            one_slot.url,
            cerebras.url,
            routing={"strategy": "parallel_speculative"},
            speculative_decoding={"max_concurrent_drafts": 3},
        )
        run = await doctor(capsys, config, "--json")
        text_run = await doctor(capsys, config)
    assert run.status == 0 and text_run.status == 0
    slots = run.checks()["local.slots"]
    assert slots["verdict"] == "warn"
    assert slots["detail"] == (
        "llama-server was started without --parallel: parallel drafts will queue"
    )
    assert slots["fix"].startswith("start it with --parallel 3")
    assert slots["figures"] == {"slots": 1, "max_concurrent_drafts": 3}
    text = " ".join(text_run.out.split())  # undo the wrapping
    assert "llama-server was started without --parallel: parallel drafts will queue" in text
    assert "fix: start it with --parallel 3" in text
    assert text_run.out.splitlines()[-1].startswith(f"{len(ALL_CHECKS) - 1} ok, 1 warn, 0 fail")


async def test_rate_limit_plan_above_what_cerebras_reports(capsys, tmp_path, local, cerebras):
    config = write_config(
        tmp_path,
        local.url,
        cerebras.url,
        rate_limits={"cerebras": {"tokens_per_minute": 1_000_000}},
    )
    run = await doctor(capsys, config, "--json")
    assert run.status == 0
    limits = run.checks()["cerebras.rate_limits"]
    assert limits["verdict"] == "warn"
    assert "Cerebras reports 100000" in limits["detail"]
    assert limits["fix"] == "set rate_limits.cerebras.tokens_per_minute: 100000"


async def test_cerebras_without_rate_limit_headers(capsys, tmp_path, local) -> None:
    options = cerebras_options(quota_requests_per_day=None, quota_tokens_per_minute=None)
    async with running_sim(options) as bare:
        run = await doctor(capsys, write_config(tmp_path, local.url, bare.url), "--json")
    assert run.status == 0
    limits = run.checks()["cerebras.rate_limits"]
    assert limits["verdict"] == "warn" and "no rate-limit headers" in limits["detail"]
    assert "rate_limits.cerebras" in limits["fix"]


async def test_invalid_config_is_one_failed_check_naming_the_key(capsys, tmp_path) -> None:
    config = write_config(
        tmp_path,
        "http://127.0.0.1:1/v1",
        "http://127.0.0.1:1/v1",
        speculative_decoding={"max_concurrent_drafts": "three"},
    )
    run = await doctor(capsys, config, "--json")
    assert run.status == 2
    [check] = run.json["checks"]
    assert check["name"] == "config" and check["verdict"] == "fail"
    assert "speculative_decoding.max_concurrent_drafts" in check["detail"]
    assert check["fix"] == f"correct speculative_decoding.max_concurrent_drafts in {config}"


async def test_unknown_strategy_fails_like_start_up(capsys, tmp_path) -> None:
    config = write_config(
        tmp_path, "http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1", routing={"strategy": "nope"}
    )
    run = await doctor(capsys, config)
    assert run.status == 2
    assert "routing.strategy: unknown strategy 'nope'" in run.out


async def test_no_secret_in_any_output(capsys, tmp_path, monkeypatch, local, cerebras) -> None:
    """Neither the key in use (here from the environment) nor the one a server expects appears in
    text or JSON, whether Cerebras accepts the key or rejects it."""
    cerebras.options.api_key = None  # Cerebras accepts anything: the key must still stay hidden
    monkeypatch.setenv("CEREBRAS_API_KEY", CEREBRAS_KEY)
    config = write_config(tmp_path, local.url, cerebras.url, api_key="${CEREBRAS_API_KEY}")
    for extra in ((), ("--json",)):
        run = await doctor(capsys, config, *extra)
        assert run.status == 0
    cerebras.options.api_key = WRONG_KEY[::-1]
    for extra in ((), ("--json",)):
        run = await doctor(capsys, config, *extra)
        assert run.status == 1
        assert_no_secret(run.out + run.err)


def test_scrub_redacts_quoted_keys() -> None:
    from gateway.doctor.render import scrub

    quoted = {"detail": f"Invalid key {CEREBRAS_KEY}", "figures": [f"x{CEREBRAS_KEY}y"]}
    assert CEREBRAS_KEY not in str(scrub(quoted, [CEREBRAS_KEY]))


async def _cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CEREBRAS_API_KEY", "GATEWAY_API_KEYS")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_wiring_through_a_subprocess(tmp_path, local, cerebras) -> None:
    config = str(write_config(tmp_path, local.url, cerebras.url))
    status, out, err = await _cli("doctor", "--config", config, "--json")
    assert status == 0, err
    document = orjson.loads(out)
    assert [c["name"] for c in document["checks"]] == ALL_CHECKS
    assert_no_secret(out + err)
    status, out, err = await _cli("--doctor", "--config", config, "--wait", "0")
    assert status == 0, err
    assert out.startswith("GLM Token Saver doctor:") and "exit status 0" in out
    assert_no_secret(out + err)
