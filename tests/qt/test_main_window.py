"""The shell, real widgets offscreen: pages, status bar meters, menus, state kept between runs, About."""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, QThread
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication, QTableView, QToolButton
from pytestqt.qtbot import QtBot

from kaihe_desktop.app import create_window
from kaihe_desktop.qt.controllers.first_run import FIRST_RUN_KEY
from kaihe_desktop.qt.controllers.status import StatusController
from kaihe_desktop.qt.main_window import MainWindow
from kaihe_desktop.qt.views.machine import MachineView
from kaihe_desktop.qt.views.models import ModelsView
from kaihe_desktop.services import Services, StatusSnapshot

MakeWindow = Callable[[Services], MainWindow]


def _loaded(qtbot: QtBot, window: MainWindow) -> MachineView:
    view = window.pages["machine"].widget
    assert isinstance(view, MachineView)
    qtbot.waitUntil(lambda: window._machine.summary is not None, timeout=10_000)  # noqa: SLF001
    return view


def test_the_machine_page_shows_the_tier_of_a_profile(
    qtbot: QtBot, services: Services, make_window: MakeWindow
) -> None:
    window = make_window(services)
    view = _loaded(qtbot, window)
    assert window.current_page == "machine"
    assert view.tier_badge.text() == "Intermediate"
    assert "RTX 4060" in view.gpu_label.text()
    assert "13B–20B" in view.unlocks_label.text()
    assert view.next_label.text().startswith("Professional (32 GB+)")
    assert "rtx4060-16gb" in view.profile_label.text()
    assert view.offload_label.text().startswith("on")


def test_the_sidebar_and_ctrl_number_switch_pages(
    qtbot: QtBot, services: Services, make_window: MakeWindow
) -> None:
    window = make_window(services)
    _loaded(qtbot, window)
    models = window.findChild(QToolButton, "nav-models")
    machine = window.findChild(QToolButton, "nav-machine")
    assert models is not None and machine is not None
    with qtbot.waitSignal(window.page_changed, check_params_cb=lambda key: key == "models"):
        models.click()
    assert window.stack.currentWidget() is window.pages["models"].widget
    assert models.isChecked() and not machine.isChecked()
    assert window.pages["models"].action.shortcut() == QKeySequence("Ctrl+1")
    assert window.pages["machine"].action.shortcut() == QKeySequence("Ctrl+2")
    window.pages["machine"].action.trigger()
    assert window.current_page == "machine" and machine.isChecked()
    assert window.quit_action.shortcut() == QKeySequence("Ctrl+Q")
    menus = [a.text() for a in window.menuBar().actions()]
    assert menus == ["&File", "&View", "&Help"]


def test_my_models_lists_the_library_in_a_table(
    qtbot: QtBot, services: Services, make_window: MakeWindow, tiny_llama_path: Path
) -> None:
    services.library.import_file(tiny_llama_path)
    window = make_window(services)
    _loaded(qtbot, window)
    window.pages["models"].action.trigger()
    table = window.findChild(QTableView, "models-table")
    assert table is not None
    qtbot.waitUntil(lambda: table.model().rowCount() == 1, timeout=10_000)
    assert table.model().index(0, 0).data() == tiny_llama_path.stem
    assert table.model().index(0, 3).data() == "Imported file"


def test_an_empty_library_says_how_to_get_a_model(
    qtbot: QtBot, services: Services, make_window: MakeWindow
) -> None:
    window = make_window(services)
    _loaded(qtbot, window)
    view = window.pages["models"].widget
    assert isinstance(view, ModelsView)
    window.show_page("models")
    qtbot.waitUntil(lambda: "No models yet" in view.summary_label.text(), timeout=10_000)
    assert view.table.model().rowCount() == 0


def test_the_status_bar_shows_live_ram_and_active_downloads(
    qtbot: QtBot, services: Services, make_window: MakeWindow
) -> None:
    window = make_window(services)
    _loaded(qtbot, window)
    qtbot.waitUntil(
        lambda: window.memory_label.text().startswith("RAM ") and "%" in window.memory_label.text(),
        timeout=10_000,
    )
    assert window.model_label.text() == "No model loaded"
    assert window.downloads_label.text() == "No downloads"
    services.queue.add("org/model-GGUF", "Q4_K_M", files=("model-Q4_K_M.gguf",), total_bytes=1000)
    qtbot.waitUntil(lambda: window.downloads_label.text() == "1 download", timeout=5_000)


def test_meters_are_read_off_the_gui_thread_at_most_once_a_second(qtbot: QtBot, services: Services) -> None:
    threads: list[bool] = []
    app = QApplication.instance()
    assert app is not None

    def read() -> StatusSnapshot:
        threads.append(QThread.currentThread() is app.thread())
        return services.status_snapshot()

    status = StatusController(read)
    assert status.timer.interval() >= 1000
    with qtbot.waitSignal(status.updated, timeout=5_000) as blocker:
        status.poll()
        status.poll()  # still busy: not a second reading
    status.stop()
    assert threads == [False]
    assert blocker.args is not None
    snapshot = blocker.args[0]
    assert isinstance(snapshot, StatusSnapshot) and snapshot.ram_total_bytes > 0


def test_geometry_and_last_page_come_back_on_the_next_start(
    qtbot: QtBot, services: Services, make_window: MakeWindow, kaihe_home: Path
) -> None:
    first = make_window(services)
    _loaded(qtbot, first)
    first.show()
    qtbot.waitExposed(first)
    first.resize(701, 453)  # inside the offscreen screen (800 x 600): restoreGeometry clamps to it
    first.pages["models"].action.trigger()
    first.close()
    assert (kaihe_home / "settings.json").is_file()

    second = make_window(Services.create(home=kaihe_home, profile="rtx4060-16gb"))
    _loaded(qtbot, second)
    assert second.current_page == "models"
    assert (second.width(), second.height()) == (701, 453)


def test_a_broken_profile_shows_one_banner_with_the_core_words(
    qtbot: QtBot, kaihe_home: Path, make_window: MakeWindow
) -> None:
    window = make_window(Services.create(home=kaihe_home, profile="no-such-profile"))
    qtbot.waitUntil(lambda: not window.banner.isHidden(), timeout=10_000)
    text = window.banner_label.text()
    assert "machine profile cannot be read" in text and "no-such-profile" in text
    view = window.pages["machine"].widget
    assert isinstance(view, MachineView)
    assert view.tier_badge.text() == "Not known"
    assert "could not be read" in view.rule_label.text()


def test_about_shows_versions_and_gpu_offload(
    qtbot: QtBot, services: Services, make_window: MakeWindow
) -> None:
    window = make_window(services)
    _loaded(qtbot, window)
    with qtbot.waitSignal(window.about_shown, timeout=5_000) as blocker:
        window.about_action.trigger()
    assert blocker.args is not None
    text = blocker.args[0].text_label.text()
    assert "KAIHE Desktop " + importlib.metadata.version("kaihe-desktop") in text
    assert "llama-cpp-python: " + importlib.metadata.version("llama_cpp_python") in text
    assert "GPU offload: on" in text  # the profile's llama.cpp can offload


def test_create_window_keeps_the_gui_thread_free(qtbot: QtBot, kaihe_home: Path) -> None:
    """Building the window starts the probe on a worker: the GUI thread never waits for it."""
    gate = threading.Event()
    services = Services.create(home=kaihe_home, profile="rtx4060-16gb")
    services.settings.set(FIRST_RUN_KEY, True)  # not a first start: no welcome page, no first-run pick
    slow = Services(
        **{**services.__dict__, "load_machine": lambda: (gate.wait(5), services.load_machine())[1]}
    )
    window = create_window(["kaihe-desktop"], services=slow)
    qtbot.addWidget(window)
    assert window._machine.summary is None  # noqa: SLF001 - returned before the probe finished
    gate.set()
    _loaded(qtbot, window)


def test_a_damaged_library_file_is_said_once_in_the_banner(
    qtbot: QtBot, services: Services, make_window: MakeWindow
) -> None:
    """The core moves an unusable state file aside and records a notice; the window says it."""
    services.library.index_path.parent.mkdir(parents=True, exist_ok=True)
    services.library.index_path.write_text("{not json", encoding="utf-8")
    window = make_window(services)
    _loaded(qtbot, window)
    qtbot.waitUntil(lambda: "kept it as" in window.banner_label.text(), timeout=10_000)
    assert "library index" in window.banner_label.text()


def test_ctrl_number_keys_reach_the_page_actions(
    qtbot: QtBot, services: Services, make_window: MakeWindow
) -> None:
    window = make_window(services)
    _loaded(qtbot, window)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=2_000)
    qtbot.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.current_page == "models", timeout=2_000)
    qtbot.keyClick(window, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.current_page == "machine", timeout=2_000)
