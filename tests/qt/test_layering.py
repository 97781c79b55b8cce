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


IO_LIBRARIES = (
    "huggingface_hub",
    "httpx2",
    "httpx",
    "requests",
    "llama_cpp",
    "gguf",
    "sqlite3",
    "shutil",
    "psutil",
)


def test_the_qt_layer_imports_no_io_library() -> None:
    """The window reaches the network, the disk and the engine only through core, off the GUI thread."""
    offenders = []
    for path in sorted(QT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{path.relative_to(QT)} imports {n}" for n in names if n.split(".")[0] in IO_LIBRARIES
            ]
    assert offenders == []
