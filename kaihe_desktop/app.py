"""Composition root of the GUI: Services (Qt-free) → QApplication → MainWindow with its pages. No logic.

Each page gets only what it uses: the machine page its controller, the models page the library's.
Adding a page is one `window.add_page(...)` line in `create_window`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import QApplication

from kaihe_desktop.core.hub.catalog import CatalogRepo
from kaihe_desktop.core.library import LibraryEntry
from kaihe_desktop.qt import workers
from kaihe_desktop.qt.controllers.catalog import CatalogController
from kaihe_desktop.qt.controllers.download_guard import DownloadGuard
from kaihe_desktop.qt.controllers.downloads import DownloadsController
from kaihe_desktop.qt.controllers.first_run import ChosenModel, FirstRunController, first_run_done
from kaihe_desktop.qt.controllers.library import LibraryController
from kaihe_desktop.qt.controllers.machine import MachineController
from kaihe_desktop.qt.controllers.status import StatusController
from kaihe_desktop.qt.dialogs.settings import SettingsDialog
from kaihe_desktop.qt.errors import ErrorPresenter
from kaihe_desktop.qt.main_window import MainWindow
from kaihe_desktop.qt.views.discover import DiscoverView
from kaihe_desktop.qt.views.downloads import DownloadsView
from kaihe_desktop.qt.views.first_run import FirstRunView
from kaihe_desktop.qt.views.machine import MachineView
from kaihe_desktop.qt.views.models import ModelsView
from kaihe_desktop.services import Preferences, Services, versions

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
ICON_SIZES = (16, 32, 48, 64, 128, 256)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kaihe-desktop", description="The KAIHE Desktop window.")
    parser.add_argument("--profile", help="act as a saved machine (a shipped profile name or a profile file)")
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="probe the machine, run the engine on a tiny model, open and close the window; exit 0",
    )
    parser.add_argument("--screenshots", metavar="DIR", help="render every view offscreen into DIR/*.png")
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
    app.setWindowIcon(app_icon())
    return app


def app_icon() -> QIcon:
    """The KAIHE icon at every size rendered from resources/icons/kaihe-desktop.svg (empty when absent)."""
    icon = QIcon()
    for size in ICON_SIZES:
        png = RESOURCES / "icons" / f"kaihe-desktop-{size}.png"
        if png.is_file():
            icon.addFile(str(png))
    return icon


GUI_SWITCH_INTERVAL_S = 0.001


def create_window(argv: Sequence[str] | None = None, *, services: Services | None = None) -> MainWindow:
    """The QApplication (made if none) and the main window with its first reads started; no event loop."""
    args_list = list(sys.argv if argv is None else argv) or ["kaihe-desktop"]
    application(args_list)
    # Workers (downloads, catalog reads) share the interpreter with the GUI thread: hand the GIL over every
    # 1 ms instead of Python's 5 ms, so a busy worker never holds the event loop past ~10 ms
    # (benchmarks/gui_responsiveness.py: max gap during a loopback download 52-62 ms -> 12-15 ms).
    sys.setswitchinterval(GUI_SWITCH_INTERVAL_S)
    if services is None:
        services = Services.create(profile=parse_args(args_list).profile)

    errors = ErrorPresenter()
    machine = MachineController(
        services.machine_summary_for,
        errors,
        profiles=services.machine_profiles,
        settings=services.settings,
        profile=services.profile,  # --profile wins over the machine remembered from last time
        margin_bytes=lambda: Preferences.read(services.settings).margin_bytes,
    )
    Preferences.read(services.settings).apply_environment()
    library = LibraryController(
        services.library, errors, preferences=lambda: Preferences.read(services.settings)
    )
    machine.active_machine_changed.connect(library.set_machine)
    status = StatusController(services.status_snapshot)
    window = MainWindow(
        errors=errors, status=status, machine=machine, settings=services.settings, versions=versions
    )
    for controller in (errors, machine, library, status):
        controller.setParent(window)

    window.setWindowIcon(app_icon())
    models_view = ModelsView(library)
    window.add_page("models", "My models", models_view)
    window.add_page("machine", "This machine", MachineView(machine))
    catalog = CatalogController(services.catalog, services.recommendations, machine, errors, parent=window)
    discover = DiscoverView(catalog)
    window.add_page("discover", "Discover", discover)
    downloads = DownloadsController(  # the window's, not a view's: downloads go on across pages
        queue=services.queue, library=services.library, downloader=services.downloader(),
        machine=lambda: machine.machine or services.load_machine(), errors=errors, parent=window,
    )  # fmt: skip
    window.add_page(
        "downloads", "Downloads", DownloadsView(downloads, free_disk=lambda: window.show_page("models"))
    )
    downloads.installed.connect(lambda _entry: library.refresh())
    download_guard = DownloadGuard(  # Discover → guardrail → Downloads
        downloads, repo_of=lambda repo_id: _repo_of(discover, catalog, repo_id),
        machine=lambda: machine.machine,
        margin_bytes=lambda: Preferences.read(services.settings).margin_bytes, errors=errors,
        dialog_parent=lambda: window, parent=window,
    )  # fmt: skip
    discover.download_requested.connect(download_guard.request)
    find = QAction("Find models", window)
    find.setObjectName("action-find-models")
    find.setShortcut(QKeySequence("Ctrl+K"))

    def find_models() -> None:
        window.show_page("discover")
        discover.focus_search()

    find.triggered.connect(find_models)
    window.addAction(find)

    chosen = ChosenModel(window)  # the model chosen for chat: the Chat view (a later issue) loads it
    chosen.model_chosen.connect(window.show_chosen_model)
    models_view.chat_requested.connect(chosen.choose)
    first_run = FirstRunController(
        library=services.library, settings=services.settings,
        recommendations=lambda m: services.recommendations(m, services.catalog(m)), machine=machine,
        downloads=downloads, chosen=chosen, errors=errors, parent=window,
    )  # fmt: skip
    window.show_page("machine")
    window.restore_state()
    if not first_run_done(services.settings):  # a first start, unless the library already has models
        _add_first_run(window, first_run, machine, library, models_view)
    window.page_changed.connect(lambda key: library.refresh() if key == "models" else None)

    def open_settings() -> None:
        dialog = SettingsDialog(
            services.settings, default_models_dir=services.home / "models", profile=services.profile,
            errors=errors, parent=window,
        )  # fmt: skip
        dialog.accepted.connect(library.refresh_fits)
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()

    window.settings_requested.connect(open_settings)
    library.refresh()
    downloads.restore()
    window.start()
    first_run.start()
    return window


def _add_first_run(
    window: MainWindow, first_run: FirstRunController, machine: MachineController,
    library: LibraryController, models_view: ModelsView,
) -> None:  # fmt: skip
    """The welcome page, shown at once; left for the last page when the library turns out to have models.
    Once the pick is verified (or the starter chosen), My models opens with that model selected."""
    last = window.current_page or "machine"
    window.add_page("first-run", "Welcome", FirstRunView(first_run, machine), nav=False)
    window.show_page("first-run")
    first_run.decided.connect(lambda shown: None if shown else window.show_page(last))

    def show_chosen(entry: LibraryEntry) -> None:
        def select() -> None:
            if library.model.row_of(entry.name) >= 0:
                models_view.select(entry.name)
                library.loaded.disconnect(select)

        library.loaded.connect(select)
        window.show_page("models")  # which reads the library again

    first_run.finished.connect(show_chosen)


def _repo_of(discover: DiscoverView, catalog: CatalogController, repo_id: str) -> CatalogRepo | None:
    """The catalog's entry (with the header it read) of ``repo_id``: the one Discover shows, or a result."""
    if discover.repo is not None and discover.repo.repo_id.lower() == repo_id.lower():
        return discover.repo
    return next((r for r in catalog.model.repos if r.repo_id.lower() == repo_id.lower()), None)


def run(argv: Sequence[str] | None = None) -> int:
    window = create_window(argv)
    window.show()
    app = QApplication.instance()
    assert app is not None
    code = int(app.exec())
    workers.await_all()
    return code
