"""The docs stay short and connected: the README fits in five minutes' reading, and every relative
link, heading anchor and repository path that README.md and docs/*.md name exists.

No socket, no subprocess: it reads files only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from paths import REPO_ROOT as ROOT

README_LIMIT = 15_000  # bytes: what a newcomer reads in five minutes


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


# The journal records what was measured on a date, with the paths of that date.
JOURNAL = ROOT / "docs" / "benchmarks-journal.md"


_FENCE = re.compile(r"^(```|~~~)")


_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


_CODE = re.compile(r"`([^`\n]+)`")


# Paths inside the repository as the docs write them: `scripts/x.sh`, `gateway/wire/sinks.py`,
# `tests/test_x.py::test_y`. Runtime files (data/, logs/) are not in the repository.
_REPO_PATH = re.compile(r"^(?:gateway|scripts|tests|docs|conf|bench|\.ci)/[A-Za-z0-9_./-]*$")


def prose(text: str) -> list[str]:
    """The lines of a Markdown page outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose(page.read_text(encoding="utf-8")):
        match = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[str]:
    targets = []
    for line in prose(page.read_text(encoding="utf-8")):
        for match in _LINK.finditer(line):
            targets.append(match.group(1) or match.group(2))
    return targets


def test_readme_fits_in_five_minutes() -> None:
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size:,} bytes; move reference text to docs/"


def test_the_docs_index_lists_every_page() -> None:
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"}
    missing = sorted(name for name in pages if f"]({name})" not in index)
    assert not missing, f"docs/README.md does not link {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading with that anchor in {file.name}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize(
    "page", [p for p in PAGES if p != JOURNAL], ids=lambda p: str(p.relative_to(ROOT))
)
def test_named_repository_paths_exist(page: Path) -> None:
    missing = []
    for line in prose(page.read_text(encoding="utf-8")):
        for match in _CODE.finditer(line):
            token = match.group(1).split("::")[0]
            if _REPO_PATH.match(token) and not (ROOT / token).exists():
                missing.append(token)
    assert not missing, f"{page.relative_to(ROOT)} names paths that do not exist: {missing}"


def test_the_slug_matches_githubs() -> None:
    assert slug("Checking a setup: `glm-gateway doctor`") == "checking-a-setup-glm-gateway-doctor"
    assert slug("2. Rate limits (`bench_ratelimit.py`)") == "2-rate-limits-bench_ratelimitpy"
    assert slug("Costs and savings: how `/stats` counts") == "costs-and-savings-how-stats-counts"
