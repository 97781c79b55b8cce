"""The Qt layer builds no core object: Services are composed in app.py and handed down."""

from __future__ import annotations

import ast
from pathlib import Path

import kaihe_desktop.qt

QT = Path(kaihe_desktop.qt.__file__).parent
BUILDERS = {
    "Services", "Library", "DownloadQueue", "Downloader", "HistoryStore", "Catalog", "EngineClient", "probe",
    "resolve_profile", "recommend", "Settings",
}  # fmt: skip


def _calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            names.append(name)
    return names


def test_no_view_model_controller_or_window_constructs_a_core_object() -> None:
    offenders = [
        f"{path.relative_to(QT)} calls {name}()"
        for path in sorted(QT.rglob("*.py"))
        for name in _calls(path)
        if name in BUILDERS
    ]
    assert offenders == []
