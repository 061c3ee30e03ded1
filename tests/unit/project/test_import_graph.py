"""Layers only point down: no import cycle between the gateway's packages, and `gateway.config`
and `gateway.errors` import nothing from the gateway.

Every import counts: top level, inside functions, under `TYPE_CHECKING`. A package is a folder
under `gateway/` (`gateway/router/...` is `router`); a top-level module (`gateway/cli.py`) is its
own node; `gateway/__init__.py` is the node `gateway`.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from paths import REPO_ROOT as ROOT

GROUND = ("config", "errors")


@dataclass(frozen=True, slots=True)
class Import:
    """`module` (dotted) imports `target` (dotted) at `line` of `path`."""

    module: str
    target: str
    path: str
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> list[Import]:
    """Every import statement anywhere in the file, resolved to absolute dotted names."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    where = str(path.relative_to(root))
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=where)):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, where, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from a import b` may import the module a.b: count both a and a.b.
            found.append(Import(module, source, where, node.lineno))
            found += [
                Import(module, f"{source}.{alias.name}", where, node.lineno) for alias in node.names
            ]
    return found


def node_of(dotted: str, root: Path, top: str) -> str | None:
    """The graph node of a module inside `top`, else None (outside, or not a module/package)."""
    parts = dotted.split(".")
    if parts[0] != top:
        return None
    if len(parts) == 1:
        return top
    name = parts[1]
    if (root / top / name).is_dir() or (root / top / f"{name}.py").is_file():
        return name
    return top if len(parts) == 2 else None  # `from gateway import __version__`


def package_graph(root: Path, top: str = "gateway") -> dict[tuple[str, str], list[Import]]:
    """(from node, to node) -> the imports that make the edge."""
    edges: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for path in sorted((root / top).rglob("*.py")):
        for imp in imports_of(path, root):
            source = node_of(imp.module, root, top)
            target = node_of(imp.target, root, top)
            if source is not None and target is not None and source != target:
                edges[(source, target)].append(imp)
    return edges


def find_cycle(edges: dict[tuple[str, str], list[Import]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None."""
    after: dict[str, list[str]] = defaultdict(list)
    for source, target in sorted(edges):
        after[source].append(target)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in after[node]:
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle is not None:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(after):
        if start not in state:
            cycle = visit(start)
            if cycle is not None:
                return cycle
    return None


def statements(imports: list[Import]) -> list[str]:
    """One line per import statement (`from a import b` names its module a)."""
    seen: dict[tuple[str, int], str] = {}
    for imp in imports:
        seen.setdefault((imp.path, imp.line), f"{imp.path}:{imp.line} imports {imp.target}")
    return list(seen.values())


def describe_cycle(cycle: list[str], edges: dict[tuple[str, str], list[Import]]) -> str:
    lines = ["import cycle between packages: " + " -> ".join(cycle)]
    for source, target in zip(cycle, cycle[1:], strict=False):
        lines.append(f"  {source} -> {target}:")
        lines += [f"    {line}" for line in statements(edges[(source, target)])]
    return "\n".join(lines)


def ground_violations(root: Path, top: str = "gateway") -> list[str]:
    """Imports of anything from `top` in the ground, a module or a package (whose modules may
    import each other)."""
    found = []
    for name in GROUND:
        package = root / top / name
        paths = sorted(package.rglob("*.py")) if package.is_dir() else [package.with_suffix(".py")]
        own = f"{top}.{name}"
        imports = [imp for path in paths for imp in imports_of(path, root)]
        found += statements(
            [
                imp
                for imp in imports
                if (imp.target == top or imp.target.startswith(top + "."))
                and imp.target != own
                and not imp.target.startswith(own + ".")
            ]
        )
    return found


def test_no_import_cycle_between_packages() -> None:
    edges = package_graph(ROOT)
    assert ("cli", "config") in edges  # the graph was read at all
    cycle = find_cycle(edges)
    if cycle is not None:
        message = describe_cycle(cycle, edges)
        print(message)
        pytest.fail(message)


def test_config_and_errors_import_nothing_from_the_gateway() -> None:
    found = ground_violations(ROOT)
    if found:
        message = "the ground imports from the gateway:\n  " + "\n  ".join(found)
        print(message)
        pytest.fail(message)


def test_nothing_imports_the_cli() -> None:
    edges = package_graph(ROOT)
    users = sorted(source for source, target in edges if target == "cli" and source != "__main__")
    assert users == [], f"the CLI is a leaf, but {users} import it"


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checker_finds_a_cycle_hidden_in_a_function_and_under_type_checking(
    tmp_path: Path,
) -> None:
    _write(
        tmp_path,
        {
            "gateway/__init__.py": "",
            "gateway/config.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from gateway.a.x import X\n",
            "gateway/errors.py": "",
            "gateway/a/__init__.py": "",
            "gateway/a/x.py": "def f():\n    from ..b import y\n",
            "gateway/b/__init__.py": "",
            "gateway/b/y.py": "from gateway.c import z\n",
            "gateway/c.py": "import gateway.a.x\n",
        },
    )
    edges = package_graph(tmp_path)
    cycle = find_cycle(edges)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    message = describe_cycle(cycle, edges)
    assert "gateway/a/x.py:2 imports gateway.b" in message
    assert "gateway/c.py:1 imports gateway.a.x" in message
    assert ground_violations(tmp_path) == ["gateway/config.py:3 imports gateway.a.x"]


def test_the_checker_accepts_layers_that_point_down(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "gateway/__init__.py": "",
            "gateway/config.py": "import os\n",
            "gateway/errors.py": "from typing import Any\n",
            "gateway/a/__init__.py": "from gateway.b import y\nfrom . import own\n",
            "gateway/a/own.py": "from gateway import config\n",
            "gateway/b/__init__.py": "",
            "gateway/b/y.py": "from gateway.errors import E\n",
        },
    )
    edges = package_graph(tmp_path)
    # `from gateway import config` runs gateway/__init__.py too: an arrow to the node gateway.
    assert set(edges) == {("a", "b"), ("a", "config"), ("a", "gateway"), ("b", "errors")}
    assert find_cycle(edges) is None
    assert ground_violations(tmp_path) == []


def test_a_ground_package_may_import_itself_but_nothing_else(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "gateway/__init__.py": "",
            "gateway/config/__init__.py": "from gateway.config.load import f\n",
            "gateway/config/load.py": "from .schema import S\nfrom gateway.config import schema\n"
            "def f():\n    from gateway.a import x\n",
            "gateway/config/schema.py": "import os\n",
            "gateway/errors.py": "",
            "gateway/a/__init__.py": "",
            "gateway/a/x.py": "from gateway.config import S\n",
        },
    )
    edges = package_graph(tmp_path)
    assert set(edges) == {("a", "config"), ("config", "a")}  # none from config to itself
    assert ground_violations(tmp_path) == ["gateway/config/load.py:4 imports gateway.a"]
