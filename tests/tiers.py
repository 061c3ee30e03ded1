"""Test tiers, checked rather than promised (a pytest plugin loaded by conftest.py).

- `tests/unit/`: no network socket and no subprocess. A test there that binds or connects an
  internet socket (a server on 127.0.0.1 included) or starts a process fails, naming what it did.
  Unix socket pairs stay allowed: the event loop wakes itself through one.
- `tests/integration/`: the simulators and gateways on loopback, in-process.
- `tests/system/`: real processes: llama-server, redis-server, Chromium, the agents' CLIs, the
  gateway's own process.

Each test gets the marker of its folder (`unit`, `integration`, `system`), so `pytest -m unit`
and `scripts/test.sh --unit` select a tier. `GLM_TIER_REPORT=<file>` writes, for every test that
ran, what it used (`socket`, `process`), to place tests in the right folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TIERS = ("unit", "integration", "system")
_INET = (socket.AF_INET, socket.AF_INET6)
# Fixtures that hold a real process for the whole session: the test that starts it is the only
# one the probe sees starting it, but every test that uses one depends on a process.
PROCESS_FIXTURES = frozenset({"llama_install", "llama_server", "redis_session", "redis_server"})
_HERE = Path(__file__).resolve().parent


class TierViolation(AssertionError):
    """A unit test reached for the network or a process."""


def tier_of(path: Path) -> str | None:
    """The tier a test file's folder names, or None for a file outside the tier folders."""
    try:
        parts = path.resolve().relative_to(_HERE).parts
    except ValueError:
        return None
    return parts[0] if parts and parts[0] in TIERS else None


class _Probe:
    """Counts (and in the unit tier forbids) internet sockets and subprocesses while active."""

    def __init__(self) -> None:
        self.used: set[str] = set()
        self.forbid = False
        self.test = ""

    def note(self, what: str, detail: str) -> None:
        self.used.add(what)
        if self.forbid:
            raise TierViolation(
                f"{self.test}: a unit test may not {detail}; move it to tests/integration/ or "
                "tests/system/, or use the in-process FakeUpstream"
            )

    @contextlib.contextmanager
    def watching(self, test: str, forbid: bool) -> Iterator[None]:
        self.used, self.forbid, self.test = set(), forbid, test
        connect, connect_ex, bind = (
            socket.socket.connect,
            socket.socket.connect_ex,
            socket.socket.bind,
        )
        popen_init = subprocess.Popen.__init__
        probe = self

        def guarded(original: Any, verb: str) -> Any:
            def call(sock: socket.socket, address: Any, *args: Any) -> Any:
                if sock.family in _INET:
                    probe.note("socket", f"{verb} an internet socket ({address!r})")
                return original(sock, address, *args)

            return call

        def popen(self_: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
            probe.note("process", f"start a process ({args!r})"[:200])
            popen_init(self_, args, *rest, **kwargs)

        socket.socket.connect = guarded(connect, "connect")  # type: ignore[method-assign]
        socket.socket.connect_ex = guarded(connect_ex, "connect")  # type: ignore[method-assign]
        socket.socket.bind = guarded(bind, "bind")  # type: ignore[method-assign]
        subprocess.Popen.__init__ = popen  # type: ignore[method-assign]
        try:
            yield
        finally:
            socket.socket.connect = connect  # type: ignore[method-assign]
            socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
            socket.socket.bind = bind  # type: ignore[method-assign]
            subprocess.Popen.__init__ = popen_init  # type: ignore[method-assign]


_probe = _Probe()
_report: dict[str, list[str]] = {}


def pytest_configure(config: pytest.Config) -> None:
    for tier, text in (
        ("unit", "no network socket, no subprocess (tests/unit/)"),
        ("integration", "simulators and gateways on loopback, in-process (tests/integration/)"),
        ("system", "real processes: llama-server, redis, chromium, agent CLIs (tests/system/)"),
    ):
        config.addinivalue_line("markers", f"{tier}: {text}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(Path(str(item.fspath)))
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))
        if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            _report.setdefault(item.nodeid, ["process"])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    forbid = tier_of(Path(str(item.fspath))) == "unit"
    with _probe.watching(item.nodeid, forbid):
        yield
    if _probe.used:
        _report[item.nodeid] = sorted(_probe.used | set(_report.get(item.nodeid, ())))


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("GLM_TIER_REPORT")
    if target:
        Path(target).write_text(json.dumps(_report, indent=1, sort_keys=True))
