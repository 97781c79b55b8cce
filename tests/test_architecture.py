"""The core must stay Qt-free so the CLI, the GUI and the tests can all use it; imports follow the layers.

The layer rules are import-linter contracts in pyproject.toml ([tool.importlinter]); a test here runs
`lint-imports`, so the README's test command (and CI) checks them.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

import kaihe_desktop

PACKAGE = Path(kaihe_desktop.__file__).parent
CORE = PACKAGE / "core"
REPO = Path(__file__).resolve().parents[1]  # where pyproject.toml is
FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "kaihe_desktop.qt")


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_core_has_python_files() -> None:
    assert len(list(CORE.rglob("*.py"))) >= 5


def test_core_never_imports_qt() -> None:
    offenders = [
        f"{path.relative_to(CORE.parent)} imports {name}"
        for path in sorted(CORE.rglob("*.py"))
        for name in _imported_modules(path)
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
    ]
    assert offenders == []


def test_the_check_catches_a_qt_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from PySide6.QtCore import QObject\nimport kaihe_desktop.qt.widgets\n")
    found = _imported_modules(sample)
    assert "PySide6.QtCore" in found and "kaihe_desktop.qt.widgets" in found


def test_core_never_prints_or_exits() -> None:
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in {"print", "exit", "quit"}:
                    offenders.append(f"{path.name}:{node.lineno} {func.id}()")
                if (
                    isinstance(func, ast.Attribute)
                    and func.attr == "exit"
                    and isinstance(func.value, ast.Name)
                    and func.value.id == "sys"
                ):
                    offenders.append(f"{path.name}:{node.lineno} sys.exit()")
    assert offenders == []


def test_import_contracts_hold() -> None:
    """`lint-imports` (from this venv) keeps every contract in pyproject.toml's [tool.importlinter]."""
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports is not None, "lint-imports is missing: pip install -e '.[test]'"
    result = subprocess.run(
        [lint_imports, "--no-cache", "--no-logo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _import_cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """The strongly connected groups of two or more modules (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root) & modules)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        cycles.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child) & modules))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return cycles


def test_no_module_import_cycles() -> None:
    """No module of the package reaches itself through imports, function-local and TYPE_CHECKING ones
    included (break a cycle by moving the shared piece to a module both import, not by hiding an import)."""
    graph = grimp.build_graph("kaihe_desktop", cache_dir=None)
    assert _import_cycles(graph, set(graph.modules)) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(name)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.a")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert _import_cycles(graph, set(graph.modules)) == [["pkg.a", "pkg.b"]]
