"""The core must stay Qt-free so the CLI, the GUI and the tests can all use it."""

from __future__ import annotations

import ast
from pathlib import Path

import kaihe_desktop

CORE = Path(kaihe_desktop.__file__).parent / "core"
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
