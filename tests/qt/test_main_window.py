"""The first window, real widgets offscreen: it shows the tier of a saved machine and the library."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from kaihe_desktop.app import library_entries, machine_summary
from kaihe_desktop.core.library import Library
from kaihe_desktop.core.machine.profiles import shipped_profiles
from kaihe_desktop.qt.main_window import MainWindow


def test_window_shows_the_tier_of_a_profile_off_the_gui_thread(qtbot: QtBot) -> None:
    profile = shipped_profiles()["rtx4060-16gb"]
    window = MainWindow(load_machine=lambda: machine_summary(profile), load_library=lambda: ())
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignals([window.machine_shown, window.library_shown], timeout=10_000):
        window.refresh()
    assert window.tier_label.text().startswith("Intermediate")
    assert "RTX 4060" in window.gpu_label.text()
    assert "No models yet" in window.library_list.item(0).text()


def test_window_lists_installed_models(qtbot: QtBot, kaihe_home: Path, tiny_llama_path: Path) -> None:
    Library().import_file(tiny_llama_path)
    window = MainWindow(load_machine=machine_summary, load_library=library_entries)
    qtbot.addWidget(window)
    with qtbot.waitSignals([window.machine_shown, window.library_shown], timeout=30_000):
        window.refresh()
    assert window.library_list.count() == 1
    assert tiny_llama_path.stem in window.library_list.item(0).text()


def test_a_failing_probe_shows_one_line_in_the_window(qtbot: QtBot) -> None:
    def broken() -> None:
        raise OSError("no /proc/meminfo")

    window = MainWindow(load_machine=broken, load_library=lambda: ())  # type: ignore[arg-type]
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.library_shown, timeout=10_000):
        window.refresh()
    qtbot.waitUntil(lambda: "no /proc/meminfo" in window.status_label.text(), timeout=10_000)
