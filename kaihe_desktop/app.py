"""Composition root of the GUI: Services (Qt-free) → QApplication → MainWindow with its pages. No logic.

Each page gets only what it uses: the machine page its controller, the models page the library's.
Adding a page is one `window.add_page(...)` line in `create_window`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from PySide6.QtWidgets import QApplication

from kaihe_desktop.qt import workers
from kaihe_desktop.qt.controllers.library import LibraryController
from kaihe_desktop.qt.controllers.machine import MachineController
from kaihe_desktop.qt.controllers.status import StatusController
from kaihe_desktop.qt.errors import ErrorPresenter
from kaihe_desktop.qt.main_window import MainWindow
from kaihe_desktop.qt.views.machine import MachineView
from kaihe_desktop.qt.views.models import ModelsView
from kaihe_desktop.services import Services, versions


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kaihe-desktop", description="The KAIHE Desktop window.")
    parser.add_argument("--profile", help="act as a saved machine (a shipped profile name or a profile file)")
    args, _qt_args = parser.parse_known_args(list(argv)[1:])
    return args


def application(argv: Sequence[str]) -> QApplication:
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    app = QApplication(list(argv))
    app.setApplicationName("KAIHE Desktop")
    app.setOrganizationName("KAIHE")
    app.setDesktopFileName("kaihe-desktop")
    return app


def create_window(argv: Sequence[str] | None = None, *, services: Services | None = None) -> MainWindow:
    """The QApplication (made if none) and the main window with its first reads started; no event loop."""
    args_list = list(sys.argv if argv is None else argv) or ["kaihe-desktop"]
    application(args_list)
    if services is None:
        services = Services.create(profile=parse_args(args_list).profile)

    errors = ErrorPresenter()
    machine = MachineController(services.machine_summary, errors)
    library = LibraryController(services.library, errors)
    status = StatusController(services.status_snapshot)
    window = MainWindow(
        errors=errors, status=status, machine=machine, settings=services.settings, versions=versions
    )
    for controller in (errors, machine, library, status):
        controller.setParent(window)

    window.add_page("models", "My models", ModelsView(library))
    window.add_page("machine", "This machine", MachineView(machine))

    window.show_page("machine")
    window.restore_state()
    window.page_changed.connect(lambda key: library.refresh() if key == "models" else None)
    library.refresh()
    window.start()
    return window


def run(argv: Sequence[str] | None = None) -> int:
    window = create_window(argv)
    window.show()
    app = QApplication.instance()
    assert app is not None
    code = int(app.exec())
    workers.await_all()
    return code
