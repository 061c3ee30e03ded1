"""The llama.cpp setup check: it proves a built llama-server generates tokens, names the signal
of one that crashes, and the integration tests skip (never error) when llama.cpp cannot run.

The broken servers here are small scripts, so these tests run everywhere; the two marked
`llamacpp` run the real build.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from llamacpp_support import launch_llama
from paths import REPO_ROOT as ROOT

from gateway.dev.llama_server import (
    LlamaServer,
    ask_for_tokens,
    smoke_check,
)

# What a binary built for a CPU feature the host refuses does: die by SIGILL at once.
SIGILL_SCRIPT = "#!/bin/sh\nkill -ILL $$\n"


# A server that is healthy but generates nothing.
SILENT_SERVER = """#!{python}
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

port = int(sys.argv[sys.argv.index("--port") + 1])

class Handler(BaseHTTPRequestHandler):
    def _reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._reply({{"status": "ok"}})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._reply({{"content": "", "tokens_predicted": 0}})

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def sigill_binary(tmp_path: Path) -> Path:
    return _executable(tmp_path / "llama-server", SIGILL_SCRIPT)


@pytest.fixture
def dummy_model(tmp_path: Path) -> Path:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    return model


def test_smoke_check_reports_a_crash_by_signal(sigill_binary: Path, dummy_model: Path) -> None:
    result = smoke_check(sigill_binary, dummy_model, ready_timeout=20)
    assert not result.ok
    assert "killed by SIGILL" in result.detail
    assert result.tokens == 0


def test_smoke_check_reports_a_server_that_generates_nothing(
    tmp_path: Path, dummy_model: Path
) -> None:
    binary = _executable(tmp_path / "silent", SILENT_SERVER.format(python=sys.executable))
    result = smoke_check(binary, dummy_model, ready_timeout=20)
    assert not result.ok
    assert result.detail == "llama-server answered with no tokens"


def test_check_command_fails_clearly_on_a_sigill_binary(
    sigill_binary: Path, dummy_model: Path
) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "gateway.dev.llama_server", "check"]
        + ["--binary", str(sigill_binary), "--model", str(dummy_model)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert run.returncode == 1
    assert run.stdout == ""
    assert "llama-server check: FAILED" in run.stderr
    assert "SIGILL" in run.stderr


def test_setup_script_refuses_a_sigill_binary(
    tmp_path: Path, sigill_binary: Path, dummy_model: Path
) -> None:
    """The whole setup script: a binary that crashes is a failure with the signal's name, and the
    reason is left where the integration tests read it. A virtualenv of its own keeps the
    project's real one untouched."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    env = {
        **os.environ,
        "GLM_VENV": str(venv),
        "GLM_LLAMA_SERVER": str(sigill_binary),
        "GLM_LOCAL_MODEL_GGUF": str(dummy_model),
    }
    env.pop("GLM_SKIP_LLAMACPP", None)
    run = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup_local_model.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 1, run.stderr
    assert "setup_local_model: FAILED" in run.stderr
    assert "SIGILL" in run.stderr
    note = (venv / ".llamacpp-unavailable").read_text()
    assert "SIGILL" in note and str(sigill_binary) in note
    assert run.stdout == ""  # no paths printed for a binary that does not work


def test_integration_tests_skip_when_llamacpp_crashes(
    tmp_path: Path, sigill_binary: Path, dummy_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GLM_REQUIRE_LLAMACPP", raising=False)
    with pytest.raises(pytest.skip.Exception, match="SIGILL"):
        launch_llama((sigill_binary, dummy_model), tmp_path, ctx=256)
    monkeypatch.setenv("GLM_REQUIRE_LLAMACPP", "1")
    with pytest.raises(pytest.fail.Exception, match="(?s)SIGILL.*GLM_REQUIRE_LLAMACPP"):
        launch_llama((sigill_binary, dummy_model), tmp_path, ctx=256)


@pytest.mark.llamacpp
def test_setup_check_passes_on_the_built_server(llama_install: tuple[Path, Path]) -> None:
    binary, model = llama_install
    result = smoke_check(binary, model)
    assert result.ok, result.detail
    assert result.tokens >= 1 and result.text


@pytest.mark.llamacpp
def test_built_server_generates_one_token(llama_server: LlamaServer) -> None:
    """The server as the setup built and started it computes a real token: the first matrix
    multiplication is where a build for the wrong CPU dies."""
    tokens, text = ask_for_tokens(llama_server.root, n_predict=1)
    assert tokens == 1
    assert text
    assert llama_server.process is not None and llama_server.process.poll() is None
