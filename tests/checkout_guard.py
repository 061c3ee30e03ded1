"""Pytest plugin: the session fails when a test created, changed or removed a file in the checkout.

Tests write only under their tmp_path. A ledger, log or token-ratio file left in the checkout is
read by the next `--demo` or gateway started there (a newcomer would see requests they never
made), so the plugin snapshots the checkout's untracked and ignored files when the session starts,
compares at the end and names every path that differs, with the test that was running when the
file was last written. Tracked files are left out (editing the sources while the tests run is
normal); so are tool and install caches: the virtualenv (with the Cline install that
scripts/setup_cline.sh puts in .venv/cline), git, bytecode and the linters' and pytest's caches.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from paths import REPO_ROOT

ROOT = REPO_ROOT
SKIP_DIRS = frozenset(
    {
        ".git",
        ".venv",
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".hypothesis",  # hypothesis' example database, a cache like pytest's
        "node_modules",
    }
)
SKIP_SUFFIXES = (".egg-info",)

Stamp = tuple[int, int]  # (mtime_ns, size)


def _skipped_dir(path: Path) -> bool:
    name = path.name
    if name in SKIP_DIRS or name.endswith(SKIP_SUFFIXES):
        return True
    # any virtualenv (GLM_VENV may put one under another name), and a Cline install moved here
    if (path / "pyvenv.cfg").exists():
        return True
    cline = os.environ.get("GLM_CLINE_DIR")
    return bool(cline) and path.resolve() == Path(cline).resolve()


def _tracked(root: Path) -> frozenset[str] | None:
    """The paths git tracks (relative, '/'-separated), or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return frozenset(p for p in out.decode(errors="surrogateescape").split("\0") if p)


def _files(root: Path) -> Iterator[Path]:
    for top, dirs, names in os.walk(root):
        here = Path(top)
        dirs[:] = [d for d in dirs if not _skipped_dir(here / d)]
        for name in names:
            yield here / name


def snapshot(root: Path, tracked: frozenset[str] | None) -> dict[str, Stamp]:
    """(mtime_ns, size) of each untracked or ignored file under `root`, outside the caches."""
    stamps: dict[str, Stamp] = {}
    for path in _files(root):
        rel = path.relative_to(root).as_posix()
        if tracked is not None and rel in tracked:
            continue
        try:
            st = path.lstat()
        except OSError:  # removed while walking
            continue
        stamps[rel] = (st.st_mtime_ns, st.st_size)
    return stamps


def changes(before: dict[str, Stamp], after: dict[str, Stamp]) -> list[tuple[str, str]]:
    """(what, path) for each file created, modified or removed between the two snapshots."""
    out: list[tuple[str, str]] = []
    for rel in sorted(before.keys() | after.keys()):
        if rel not in before:
            out.append(("created", rel))
        elif rel not in after:
            out.append(("removed", rel))
        elif before[rel] != after[rel]:
            out.append(("modified", rel))
    return out


@dataclass
class Guard:
    root: Path
    tracked: frozenset[str] | None = None
    before: dict[str, Stamp] = field(default_factory=dict)
    # (start, end, nodeid) of each test in wall-clock ns: the clock file mtimes are stamped in
    spans: list[tuple[int, int, str]] = field(default_factory=list)
    report: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.tracked = _tracked(self.root)
        self.before = snapshot(self.root, self.tracked)

    def culprit(self, mtime_ns: int) -> str:
        """The test that ran when a file was written (the nearest one when none did)."""
        if not self.spans:
            return "outside any test"
        slack = 50_000_000  # the kernel stamps mtimes with a coarse clock
        for start, end, nodeid in self.spans:
            if start - slack <= mtime_ns <= end + slack:
                return f"during {nodeid}"
        before = [s for s in self.spans if s[1] < mtime_ns]
        if before:
            return f"after {before[-1][2]} (a process it left running?)"
        return "before the first test"

    def finish(self) -> list[str]:
        after = snapshot(self.root, self.tracked)
        lines = []
        for what, rel in changes(self.before, after):
            where = self.culprit(after[rel][0]) if rel in after else ""
            lines.append(f"  {what}: {rel}" + (f"  [{where}]" if where else ""))
        return lines


_KEY = pytest.StashKey[Guard]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_KEY] = Guard(ROOT)


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_KEY].start()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    start = time.time_ns()
    yield
    item.config.stash[_KEY].spans.append((start, time.time_ns(), item.nodeid))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    guard = session.config.stash[_KEY]
    guard.report = guard.finish()
    if guard.report and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    guard = terminalreporter.config.stash[_KEY]
    if not guard.report:
        return
    terminalreporter.section("tests wrote into the checkout", sep="=", red=True, bold=True)
    terminalreporter.write_line(
        f"Tests must write only under tmp_path; these files under {ROOT} changed during the "
        "session (delete them, fix the test; if you made them yourself meanwhile, run again):"
    )
    for line in guard.report:
        terminalreporter.write_line(line)
