"""No source or test file is hidden from git by an ignore pattern meant for runtime output.

An unanchored `logs/` once ignored `tests/unit/logs/`, so its tests never reached a clone."""

from __future__ import annotations

from pathlib import Path

from paths import REPO_ROOT

SOURCE_TREES = ("gateway", "tests", "scripts", "bench", "conf", "docs")


def _unanchored_directories() -> list[str]:
    """Directory patterns (`name/`) that match at any depth, as git reads them."""
    names = []
    for line in (REPO_ROOT / ".gitignore").read_text().splitlines():
        pattern = line.strip()
        if pattern.endswith("/") and "/" not in pattern[:-1] and "*" not in pattern:
            names.append(pattern[:-1])
    return names


def _source_directories() -> list[Path]:
    found = []
    for tree in SOURCE_TREES:
        root = REPO_ROOT / tree
        if root.is_dir():
            found += [p for p in root.rglob("*") if p.is_dir() and "__pycache__" not in p.parts]
    return found


def test_no_source_directory_matches_an_unanchored_ignore_pattern() -> None:
    ignored = set(_unanchored_directories())
    caches = {name for name in ignored if name.startswith(".") or name.endswith("cache__")}
    hidden = [
        str(path.relative_to(REPO_ROOT))
        for path in _source_directories()
        if path.name in ignored - caches and any(path.glob("*.py"))
    ]
    assert hidden == [], f"ignored by .gitignore, so missing from every clone: {hidden}"
