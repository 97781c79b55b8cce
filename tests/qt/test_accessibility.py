"""Every control of the full window (every page) has an objectName and a name a screen reader can say, and
the automation contract's objectNames exist."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QLineEdit,
    QSlider,
    QSpinBox,
    QWidget,
)
from pytestqt.qtbot import QtBot

from kaihe_desktop.qt import workers
from kaihe_desktop.qt.main_window import MainWindow
from kaihe_desktop.services import Services

CONTROLS = (QAbstractButton, QLineEdit, QComboBox, QSlider, QAbstractItemView, QSpinBox, QCheckBox)
CONTRACT = (
    "nav-discover",
    "nav-downloads",
    "nav-models",
    "nav-machine",
    "discover-search",
    "discover-results",
    "discover-download",
    "downloads-list",
    "models-table",
    "machine-profile",
)
FIRST_RUN = "first-run-get-recommended"


def _controls(window: MainWindow) -> list[QWidget]:
    found: list[QWidget] = []
    for kind in CONTROLS:
        found.extend(w for w in window.findChildren(kind) if w not in found)
    return found


def _qt_internal(widget: QWidget) -> bool:
    """Parts Qt builds inside its composite widgets (a combo box's popup list, a line edit's clear button,
    a table's corner button), which are not ours to name."""
    name = widget.objectName()
    if name.startswith("qt_"):
        return True
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QComboBox) or parent.objectName().startswith("qt_"):
            return True
        parent = parent.parentWidget()
    return isinstance(widget.parentWidget(), (QLineEdit, QAbstractItemView)) and not name


def _spoken(widget: QWidget) -> str:
    if widget.accessibleName().strip():
        return widget.accessibleName()
    if isinstance(widget, QAbstractButton) and widget.text().replace("&", "").strip():
        return widget.text()
    return ""


def test_every_control_has_an_object_name_and_an_accessible_name(
    qtbot: QtBot, services: Services, make_window: Callable[[Services], MainWindow]
) -> None:
    window = make_window(services)
    window.show()
    for key in list(window.pages):  # every page shown once, so lazily built parts exist
        window.show_page(key)
        qtbot.wait(50)
    qtbot.waitUntil(lambda: window._machine.summary is not None, timeout=15_000)  # noqa: SLF001
    qtbot.waitUntil(lambda: not workers.in_flight(), timeout=20_000)

    missing_name = []
    missing_spoken = []
    for widget in _controls(window):
        if _qt_internal(widget):
            continue
        label = f"{type(widget).__name__}({widget.objectName() or '?'}) under {_path(widget)}"
        if not widget.objectName():
            missing_name.append(label)
        if not _spoken(widget):
            missing_spoken.append(label)
    assert not missing_name, "controls without an objectName:\n" + "\n".join(missing_name)
    assert not missing_spoken, "controls without an accessible name:\n" + "\n".join(missing_spoken)

    names = {w.objectName() for w in window.findChildren(QWidget)}
    contract = list(CONTRACT)
    if "first_run" in window.pages or "first-run" in window.pages:
        contract.append(FIRST_RUN)
    assert [n for n in contract if n not in names] == []


def _path(widget: QWidget) -> str:
    names = []
    parent = widget.parentWidget()
    while parent is not None:
        names.append(parent.objectName() or type(parent).__name__)
        parent = parent.parentWidget()
    return "/".join(reversed(names))
