"""The shell: a sidebar over a stack of pages, an error banner, a status bar with live meters, menus.

The window builds no core object and calls no core function: pages and controllers come from
kaihe_desktop.app, which adds each page with one `add_page` line.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QByteArray, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QButtonGroup,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from kaihe_desktop.core.errors import KaiheError
from kaihe_desktop.qt import format as fmt
from kaihe_desktop.qt import workers
from kaihe_desktop.qt.controllers.machine import MachineController
from kaihe_desktop.qt.controllers.status import StatusController
from kaihe_desktop.qt.dialogs.about import AboutDialog, about_text
from kaihe_desktop.qt.errors import Action, ErrorPresenter, Presentation, Severity
from kaihe_desktop.services import Settings, StatusSnapshot, Versions

GEOMETRY_KEY = "window.geometry"
PAGE_KEY = "window.page"
DEFAULT_SIZE = (960, 640)

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Page:
    key: str
    title: str
    widget: QWidget
    button: QToolButton
    action: QAction
    nav: bool = True  # in the sidebar and the View menu


class MainWindow(QMainWindow):
    page_changed = Signal(str)
    status_shown = Signal()
    about_shown = Signal(object)  # the AboutDialog
    settings_requested = Signal()  # File > Settings… (Ctrl+,); app.py opens the dialog

    def __init__(
        self,
        *,
        errors: ErrorPresenter,
        status: StatusController,
        machine: MachineController,
        settings: Settings,
        versions: Callable[[], Versions],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("main-window")
        self.setWindowTitle("KAIHE Desktop")
        self.resize(*DEFAULT_SIZE)
        self._errors = errors
        self._status = status
        self._machine = machine
        self._settings = settings
        self._versions = versions
        self.pages: dict[str, Page] = {}
        self.about: AboutDialog | None = None

        central = QWidget(self)
        row = QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)

        self.sidebar = QFrame(central)
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setFrameShape(QFrame.Shape.StyledPanel)
        self.sidebar.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Preferred)
        self._nav = QVBoxLayout(self.sidebar)
        self._nav.setContentsMargins(8, 12, 8, 12)
        self._nav.setSpacing(4)
        self._nav.addStretch(1)
        self._nav_group = QButtonGroup(self)
        self._nav_group.setExclusive(True)
        row.addWidget(self.sidebar)

        content = QWidget(central)
        column = QVBoxLayout(content)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        self.banner = self._build_banner(content)
        column.addWidget(self.banner)
        self.stack = QStackedWidget(content)
        self.stack.setObjectName("pages")
        column.addWidget(self.stack, 1)
        row.addWidget(content, 1)
        self.setCentralWidget(central)

        self._build_menus()
        self._build_status_bar()
        errors.presented.connect(self._show_banner)
        errors.cleared.connect(self.banner.hide)
        status.updated.connect(self._show_status)
        status.failed.connect(self._show_status_failure)
        machine.active_machine_changed.connect(self._show_active_machine)

    # --- pages -----------------------------------------------------------------------------------------

    def add_page(self, key: str, title: str, widget: QWidget, *, nav: bool = True) -> Page:
        """One sidebar entry, one View-menu action (Ctrl+1, Ctrl+2, … in order) and one page.

        ``nav=False``: a page shown only by `show_page` (the first start's welcome), with no sidebar entry,
        menu action or shortcut."""
        number = sum(1 for p in self.pages.values() if p.nav) + 1
        button = QToolButton(self.sidebar)
        button.setObjectName(f"nav-{key}")
        button.setText(title)
        button.setAccessibleName(title)
        button.setCheckable(True)
        button.setAutoRaise(True)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        button.setMinimumWidth(150)
        button.setToolTip(f"{title} (Ctrl+{number})" if number <= 9 else title)
        self._nav_group.addButton(button)
        self._nav.insertWidget(self._nav.count() - 1, button)

        action = QAction(title, self)
        action.setObjectName(f"action-page-{key}")
        action.setCheckable(True)
        self._page_actions.addAction(action)
        if nav:
            if number <= 9:
                action.setShortcut(QKeySequence(f"Ctrl+{number}"))
            self._view_menu.addAction(action)
            self.addAction(action)  # the shortcut works in the whole window, menu bar or not
        else:
            button.hide()

        self.stack.addWidget(widget)
        page = Page(key, title, widget, button, action, nav)
        self.pages[key] = page
        button.clicked.connect(lambda: self.show_page(key))
        action.triggered.connect(lambda: self.show_page(key))
        if len(self.pages) == 1:
            self.show_page(key)
        return page

    def show_page(self, key: str) -> None:
        page = self.pages[key]
        page.button.setChecked(True)
        page.action.setChecked(True)
        self.stack.setCurrentWidget(page.widget)
        self.page_changed.emit(key)

    @property
    def current_page(self) -> str | None:
        current = self.stack.currentWidget()
        return next((k for k, p in self.pages.items() if p.widget is current), None)

    # --- start, state, quit ----------------------------------------------------------------------------

    def start(self) -> None:
        """Kick off the first reads (machine, meters) on workers; pages refresh through their controllers."""
        self._machine.refresh()
        self._status.start()

    def restore_state(self) -> None:
        """Geometry and last page from the settings store (read when it was built, not here)."""
        geometry = self._settings.get(GEOMETRY_KEY)
        if isinstance(geometry, str):
            try:
                self.restoreGeometry(QByteArray(base64.b64decode(geometry, validate=True)))
            except (binascii.Error, ValueError):
                _log.info("ignoring a saved window geometry that is not base64")
        page = self._settings.get(PAGE_KEY)
        if isinstance(page, str) and page in self.pages:
            self.show_page(page)

    def save_state(self) -> None:
        geometry = base64.b64encode(bytes(self.saveGeometry().data())).decode("ascii")
        try:
            self._settings.update({GEOMETRY_KEY: geometry, PAGE_KEY: self.current_page})
        except KaiheError as exc:  # a full disk at quit: nothing to show it in any more, so log it
            _log.warning("window state not saved: %s", exc)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        self._status.stop()
        self.save_state()
        if self.about is not None:
            self.about.close()
        workers.await_all()
        super().closeEvent(event)

    # --- menus -----------------------------------------------------------------------------------------

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        settings_action = QAction("&Settings…", self)
        settings_action.setObjectName("action-settings")
        settings_action.setShortcut(QKeySequence("Ctrl+,"))
        settings_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        settings_action.triggered.connect(self.settings_requested)
        file_menu.addAction(settings_action)
        self.addAction(settings_action)
        self.settings_action = settings_action
        quit_action = QAction("&Quit", self)
        quit_action.setObjectName("action-quit")
        quit_action.setShortcut(QKeySequence("Ctrl+Q"))
        quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        self._view_menu = bar.addMenu("&View")
        self._page_actions = QActionGroup(self)
        self._page_actions.setExclusive(True)
        help_menu = bar.addMenu("&Help")
        about_action = QAction("&About KAIHE Desktop", self)
        about_action.setObjectName("action-about")
        about_action.setMenuRole(QAction.MenuRole.AboutRole)
        about_action.triggered.connect(self.show_about)
        help_menu.addAction(about_action)
        self.quit_action = quit_action
        self.about_action = about_action

    def show_about(self) -> None:
        """Versions are read from package metadata off the GUI thread, then the dialog opens."""
        workers.run_query(self._versions, self._open_about, self._errors.show, name="versions")

    def _open_about(self, versions: Versions) -> None:
        summary = self._machine.summary
        text = about_text(versions, summary.machine if summary else None)
        if self.about is None:
            self.about = AboutDialog(text, self)
        else:
            self.about.text_label.setText(text)
        self.about.open()
        self.about_shown.emit(self.about)

    # --- error banner ----------------------------------------------------------------------------------

    def _build_banner(self, parent: QWidget) -> QFrame:
        banner = QFrame(parent)
        banner.setObjectName("error-banner")
        banner.setFrameShape(QFrame.Shape.StyledPanel)
        row = QHBoxLayout(banner)
        row.setContentsMargins(12, 6, 6, 6)
        self.banner_label = QLabel("", banner)
        self.banner_label.setObjectName("error-text")
        self.banner_label.setWordWrap(True)
        self.banner_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.banner_label, 1)
        self.banner_action = QPushButton("", banner)
        self.banner_action.setObjectName("error-action")
        self.banner_action.setAccessibleName("the error's action")
        self.banner_action.clicked.connect(self._banner_action_clicked)
        row.addWidget(self.banner_action)
        dismiss = QPushButton("Dismiss", banner)
        dismiss.setObjectName("error-dismiss")
        dismiss.clicked.connect(self._errors.clear)
        row.addWidget(dismiss)
        banner.hide()
        return banner

    def _show_banner(self, shown: Presentation) -> None:
        prefix = {Severity.INFO: "", Severity.WARNING: "⚠ ", Severity.ERROR: "✖ "}[shown.severity]
        text = f"<b>{_escape(prefix + shown.title)}</b>"
        if shown.detail:
            text += f": {_escape(shown.detail)}"
        if shown.hint:
            text += f"<br>{_escape(shown.hint)}"
        self.banner_label.setText(text)
        can_act = shown.action is Action.RETRY and self._errors.retry is not None
        self.banner_action.setText(shown.action.value)
        self.banner_action.setAccessibleName(shown.action.value)
        self.banner_action.setVisible(can_act)
        self.banner.setAccessibleDescription(shown.text)
        self.banner.show()

    def _banner_action_clicked(self) -> None:
        retry = self._errors.retry
        self._errors.clear()
        if retry is not None:
            retry()

    # --- status bar ------------------------------------------------------------------------------------

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.memory_label = QLabel("RAM …", bar)
        self.memory_label.setObjectName("status-memory")
        self.model_label = QLabel("No model loaded", bar)
        self.model_label.setObjectName("status-model")
        self.downloads_label = QLabel("", bar)
        self.downloads_label.setObjectName("status-downloads")
        bar.addWidget(self.model_label, 1)
        self.machine_label = QLabel("", bar)
        self.machine_label.setObjectName("status-machine")
        self.machine_label.setContentsMargins(0, 0, 12, 0)
        self.machine_label.hide()
        bar.addPermanentWidget(self.machine_label)
        bar.addPermanentWidget(self.downloads_label)
        bar.addPermanentWidget(self.memory_label)

    def show_chosen_model(self, name: str) -> None:
        """The model chosen for chat (ChosenModel.model_chosen), until the Chat view loads it."""
        self.model_label.setText(f"Chosen for chat: {name}")

    def _show_status(self, snapshot: StatusSnapshot) -> None:
        text = f"RAM {fmt.memory_use(snapshot.ram_used_bytes, snapshot.ram_total_bytes)}"
        if snapshot.vram_total_bytes and snapshot.vram_used_bytes is not None:
            text += f"  ·  VRAM {fmt.memory_use(snapshot.vram_used_bytes, snapshot.vram_total_bytes)}"
        self.memory_label.setText(text)
        active = snapshot.active_downloads
        self.downloads_label.setText(fmt.count_text(active, "download") if active else "No downloads")
        if snapshot.notices:
            self._show_banner(Presentation("Note", "; ".join(snapshot.notices), Severity.INFO, Action.NONE))
        self.status_shown.emit()

    def _show_active_machine(self, machine: object) -> None:
        """Acting as another machine: the status bar says so (its meters stay this computer's)."""
        profile = self._machine.profile
        name = getattr(machine, "name", "") or profile
        self.machine_label.setText(f"Acting as {name}" if profile else "")
        self.machine_label.setToolTip(
            f"Fit badges, picks and warnings are for the profile {profile}; the meters show this computer"
            if profile
            else ""
        )
        self.machine_label.setVisible(bool(profile))

    def _show_status_failure(self, exc: BaseException) -> None:
        self.memory_label.setText("RAM unknown")
        self.memory_label.setToolTip(str(exc))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
