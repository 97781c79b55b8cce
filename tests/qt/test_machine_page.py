"""This machine: the tier card, usage bars, the next tier, what was not detected, and acting as another
machine (the profile selector re-evaluates the app through `active_machine_changed`). Real Services over a
temporary KAIHE_HOME, shipped profiles and profile files; the probe of this computer is the real one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QThread
from PySide6.QtWidgets import QApplication, QComboBox, QPushButton
from pytestqt.qtbot import QtBot

from kaihe_desktop.core.fit.plan import DEFAULT_MARGIN_BYTES
from kaihe_desktop.core.machine.profiles import shipped_profiles
from kaihe_desktop.core.machine.spec import Machine, ProbeNote
from kaihe_desktop.core.machine.tiers import TIERS, Tier, tier_for
from kaihe_desktop.qt import format as fmt
from kaihe_desktop.qt.controllers.first_run import FIRST_RUN_KEY
from kaihe_desktop.qt.controllers.machine import PROFILE_FILES_KEY, PROFILE_KEY, MachineController
from kaihe_desktop.qt.main_window import MainWindow
from kaihe_desktop.qt.views.machine import THIS_COMPUTER, MachineView
from kaihe_desktop.qt.widgets.usage_bar import UsageBar
from kaihe_desktop.services import Services, Settings

MakeWindow = Callable[[Services], MainWindow]
GIB = 2**30


def _shipped(name: str) -> Machine:
    return Machine.load(shipped_profiles()[name])


def _services(home: Path, *, remembered: str | None = None, profile: str | None = None) -> Services:
    """Services with no --profile (unless given), the selector's last choice remembered in settings, past the
    first start (its welcome page and pick are tests/qt/test_first_run.py's)."""
    settings = Settings(home / "settings.json")
    settings.update({FIRST_RUN_KEY: True, **({PROFILE_KEY: remembered} if remembered is not None else {})})
    return Services.create(home=home, profile=profile)


def _page(qtbot: QtBot, window: MainWindow) -> tuple[MachineView, MachineController]:
    view = window.pages["machine"].widget
    assert isinstance(view, MachineView)
    controller = window._machine  # noqa: SLF001 - the window's own controller
    qtbot.waitUntil(lambda: controller.summary is not None and not controller.loading, timeout=20_000)
    qtbot.waitUntil(lambda: view.profile_combo.count() > 1, timeout=10_000)  # the profiles are listed
    return view, controller


def _pick(view: MachineView, key: str | None) -> None:
    """What a person does: choose an entry of the selector."""
    combo = view.findChild(QComboBox, "machine-profile")
    assert combo is view.profile_combo
    index = combo.findData(key or "")
    assert index >= 0, f"{key} is not offered"
    combo.setCurrentIndex(index)


def test_selecting_rtx4060_updates_the_tier_card_gpu_rows_and_usage_bars(
    qtbot: QtBot, kaihe_home: Path, make_window: MakeWindow
) -> None:
    services = _services(kaihe_home, remembered="netbook-4gb")
    window = make_window(services)
    view, controller = _page(qtbot, window)
    assert view.tier_badge.text() == "Minimal" and view.gpu_bars == []
    expected = _shipped("rtx4060-16gb")

    with qtbot.waitSignal(controller.active_machine_changed, timeout=10_000) as changed:
        _pick(view, "rtx4060-16gb")
    assert changed.args == [expected]  # the profile's Machine, for every view that evaluates fit
    assert view.tier_badge.text() == "Intermediate"
    assert view.usable_label.text() == f"{fmt.bytes_text(tier_for(expected).usable_bytes)} a model can use"
    assert "rtx4060-16gb" in view.profile_label.text() and view.profile_label.isVisibleTo(view)

    ram, gpu = expected.ram, expected.gpus[0]
    assert (view.ram_bar.total_bytes, view.ram_bar.free_bytes) == (ram.total_bytes, ram.available_bytes)
    assert view.ram_bar.other_bytes == ram.total_bytes - ram.available_bytes
    assert view.ram_bar.model_bytes == 0
    assert fmt.bytes_text(ram.total_bytes - ram.available_bytes) in view.ram_legend.text()
    [gpu_bar] = view.gpu_bars
    assert (gpu_bar.total_bytes, gpu_bar.free_bytes) == (gpu.memory_total_bytes, gpu.memory_free_bytes)
    assert gpu_bar.other_bytes == gpu.memory_total_bytes - gpu.memory_free_bytes
    assert fmt.bytes_text(gpu.memory_free_bytes) + " free" in view.gpu_legends[0].text()
    assert "RTX 4060" in view.gpu_label.text() and "compute 8.9" in view.gpu_label.text()
    assert view.isa_label.text() == "AVX ✓   AVX2 ✓   AVX-512 ✗   FMA ✓   F16C ✓"
    assert view.bandwidth_label.text() == "58.0 GB/s (from the profile)"

    assert window.machine_label.text() == "Acting as 16 GB + RTX 4060 8 GB"  # the status bar says so
    qtbot.waitUntil(lambda: services.settings.get(PROFILE_KEY) == "rtx4060-16gb", timeout=5_000)


def test_the_newest_choice_wins_when_reads_overlap(
    qtbot: QtBot, kaihe_home: Path, make_window: MakeWindow
) -> None:
    window = make_window(_services(kaihe_home, remembered="netbook-4gb"))
    view, controller = _page(qtbot, window)
    seen: list[Machine] = []
    controller.active_machine_changed.connect(seen.append)
    _pick(view, "rtx4090-32gb")
    _pick(view, "m3max-64gb")
    qtbot.waitUntil(lambda: bool(seen) and not controller.loading, timeout=10_000)
    assert seen == [_shipped("m3max-64gb")]
    assert view.tier_badge.text() == "Professional"
    assert view.profile_combo.currentData() == "m3max-64gb"


def test_back_to_this_computer_probes_it_again_off_the_gui_thread(
    qtbot: QtBot, kaihe_home: Path, make_window: MakeWindow
) -> None:
    base = _services(kaihe_home, remembered="rtx4060-16gb")
    on_gui_thread: list[bool] = []
    app = QApplication.instance()
    assert app is not None

    def probe_here() -> Machine:
        on_gui_thread.append(QThread.currentThread() is app.thread())
        return base.load_machine()  # the real probe: Services were made without a --profile

    services = replace(base, load_machine=probe_here)
    window = make_window(services)
    view, controller = _page(qtbot, window)
    assert view.tier_badge.text() == "Intermediate" and on_gui_thread == []  # the profile, not probed

    with qtbot.waitSignal(controller.active_machine_changed, timeout=30_000) as changed:
        _pick(view, None)
        assert "Probing this computer" in view.status_label.text()
    assert on_gui_thread == [False]
    machine = changed.args[0]
    assert isinstance(machine, Machine) and machine.name == "" and machine.ram.total_bytes > 0
    assert view.tier_badge.text() == tier_for(machine).tier.label
    assert view.profile_combo.currentText() == THIS_COMPUTER
    assert not view.profile_label.isVisibleTo(view) and not window.machine_label.isVisibleTo(window)
    assert view.ram_bar.total_bytes == machine.ram.total_bytes
    measured = view.bandwidth_label.text()
    assert measured.endswith("(measured on this computer)") or not machine.ram.bandwidth_gbps
    qtbot.waitUntil(lambda: services.settings.get(PROFILE_KEY, "unset") is None, timeout=5_000)


def test_the_choice_comes_back_at_the_next_start_and_a_command_line_profile_wins(
    qtbot: QtBot, kaihe_home: Path, make_window: MakeWindow
) -> None:
    first = make_window(_services(kaihe_home, remembered="netbook-4gb"))
    view, controller = _page(qtbot, first)
    with qtbot.waitSignal(controller.active_machine_changed, timeout=10_000):
        _pick(view, "m3max-64gb")
    qtbot.waitUntil(lambda: Settings(kaihe_home / "settings.json").get(PROFILE_KEY) == "m3max-64gb")
    first.close()

    second = make_window(Services.create(home=kaihe_home))
    view, _ = _page(qtbot, second)
    assert view.tier_badge.text() == "Professional"
    assert view.profile_combo.currentData() == "m3max-64gb"

    third = make_window(Services.create(home=kaihe_home, profile="netbook-4gb"))
    view, _ = _page(qtbot, third)
    assert view.tier_badge.text() == "Minimal"
    assert Settings(kaihe_home / "settings.json").get(PROFILE_KEY) == "m3max-64gb"  # not overwritten


def test_the_next_tier_and_the_memory_it_needs_are_core_numbers(
    qtbot: QtBot, kaihe_home: Path, make_window: MakeWindow
) -> None:
    window = make_window(_services(kaihe_home, remembered="netbook-4gb"))
    view, controller = _page(qtbot, window)
    tier = tier_for(_shipped("netbook-4gb"))
    assert tier.next_tier is Tier.ENTRY
    entry = next(s for s in TIERS if s.tier is Tier.ENTRY)
    assert view.next_label.text() == f"Entry ({entry.range_text})"
    assert view.next_unlocks_label.text() == f"{entry.models} for {entry.good_for}"
    needed = view.needed_label.text()
    assert needed.startswith(f"{fmt.bytes_text(tier.missing_bytes)} more memory a model can use")
    assert f"{fmt.bytes_text(tier.missing_bytes + DEFAULT_MARGIN_BYTES)} with the" in needed
    assert f"the {fmt.bytes_text(DEFAULT_MARGIN_BYTES)} safety margin" in needed

    with qtbot.waitSignal(controller.active_machine_changed, timeout=10_000):
        _pick(view, "m3max-64gb")  # the top tier: nothing to unlock
    assert view.next_label.text() == "Professional is the top tier: nothing above it to unlock."
    assert not view.needed_label.isVisibleTo(view)


def test_a_profile_file_opened_from_the_dialog_is_acted_as_offered_again_and_says_what_it_missed(
    qtbot: QtBot, kaihe_home: Path, make_window: MakeWindow, tmp_path: Path
) -> None:
    why = "not detected: cannot list /sys/class/drm (Permission denied)"
    saved = replace(_shipped("laptop-8gb"), name="My old laptop", notes=(ProbeNote("sysfs", why),))
    path = tmp_path / "old-laptop.json"
    saved.save(path)
    services = _services(kaihe_home, remembered="netbook-4gb")
    window = make_window(services)
    view, controller = _page(qtbot, window)

    with qtbot.waitSignal(controller.active_machine_changed, timeout=10_000) as changed:
        view.open_profile_file(str(path))  # the QFileDialog's slot
    assert changed.args == [saved]
    [note] = view.note_labels
    assert note.text() == "<b>sysfs</b>: cannot list /sys/class/drm (Permission denied)"
    assert view.findChild(type(note), "note-0") is note
    qtbot.waitUntil(lambda: services.settings.get(PROFILE_FILES_KEY) == [str(path)], timeout=5_000)
    qtbot.waitUntil(lambda: "My old laptop (old-laptop.json)" in _items(view.profile_combo), timeout=5_000)
    assert view.profile_combo.currentData() == str(path)


def test_this_computer_says_what_it_could_not_detect_and_why(
    qtbot: QtBot, kaihe_home: Path, make_window: MakeWindow
) -> None:
    window = make_window(_services(kaihe_home))  # no profile at all: the real probe at start
    view, controller = _page(qtbot, window)
    summary = controller.summary
    assert summary is not None and summary.profile is None
    texts = [label.text() for label in view.note_labels]
    if summary.machine.notes:
        for note, text in zip(summary.machine.notes, texts, strict=True):
            assert text.startswith(f"<b>{note.component}</b>: ")
            shown = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
            assert note.message.removeprefix("not detected: ") in shown
    else:
        assert texts == ["Everything was detected."]
    used = summary.machine.ram.total_bytes - summary.machine.ram.available_bytes
    view.set_model_memory(used // 2)  # what a loaded model holds is part of what is in use
    assert (view.ram_bar.model_bytes, view.ram_bar.other_bytes) == (used // 2, used - used // 2)
    assert f"{fmt.bytes_text(used // 2)} held by the loaded model" in view.ram_legend.text()


def test_a_file_that_is_no_profile_keeps_the_machine_and_says_why(
    qtbot: QtBot, kaihe_home: Path, make_window: MakeWindow, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    window = make_window(_services(kaihe_home, remembered="rtx4060-16gb"))
    view, controller = _page(qtbot, window)
    with qtbot.waitSignal(controller.failed, timeout=10_000):
        view.open_profile_file(str(broken))
    assert not window.banner.isHidden() and "broken.json" in window.banner_label.text()
    assert view.tier_badge.text() == "Intermediate"  # still acting as the last machine that could be read
    assert controller.profile == "rtx4060-16gb" and view.profile_combo.currentData() == "rtx4060-16gb"


def test_a_remembered_profile_file_that_is_gone_falls_back_to_this_computer(
    qtbot: QtBot, kaihe_home: Path, make_window: MakeWindow, tmp_path: Path
) -> None:
    window = make_window(_services(kaihe_home, remembered=str(tmp_path / "moved-away.json")))
    view, controller = _page(qtbot, window)
    assert controller.profile is None and view.profile_combo.currentText() == THIS_COMPUTER
    assert "moved-away.json" in window.banner_label.text()


def test_the_usage_bar_splits_other_programs_the_model_and_free(qtbot: QtBot) -> None:
    bar = UsageBar("ram-bar")
    qtbot.addWidget(bar)
    bar.set_usage(total_bytes=16 * GIB, free_bytes=6 * GIB, model_bytes=4 * GIB)
    assert (bar.other_bytes, bar.model_bytes, bar.free_bytes) == (6 * GIB, 4 * GIB, 6 * GIB)
    assert bar.accessibleDescription() == (
        "6.0 GiB used by other programs, 4.0 GiB held by the loaded model, 6.0 GiB free of 16.0 GiB"
    )
    bar.set_usage(total_bytes=8 * GIB, free_bytes=10 * GIB, model_bytes=GIB)  # readings never overflow
    assert (bar.other_bytes, bar.model_bytes, bar.free_bytes) == (0, 0, 8 * GIB)
    bar.resize(300, 16)
    assert not bar.grab().isNull()


def test_a_loaded_model_shows_in_the_bars_of_this_computer_only(
    qtbot: QtBot, kaihe_home: Path, make_window: MakeWindow
) -> None:
    window = make_window(_services(kaihe_home, remembered="rtx4060-16gb"))
    view, _ = _page(qtbot, window)
    view.set_model_memory(GIB, (2 * GIB,))
    assert view.ram_bar.model_bytes == 0 and view.gpu_bars[0].model_bytes == 0  # a profile runs nothing here
    assert "no model loaded" in view.ram_legend.text()


def _items(combo: QComboBox) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def test_probe_again_reads_this_computer_once_more(
    qtbot: QtBot, kaihe_home: Path, make_window: MakeWindow
) -> None:
    base = _services(kaihe_home)
    probes: list[bool] = []
    app = QApplication.instance()
    assert app is not None

    def probe_here() -> Machine:
        probes.append(QThread.currentThread() is app.thread())
        return base.load_machine()

    window = make_window(replace(base, load_machine=probe_here))
    view, controller = _page(qtbot, window)
    button = view.findChild(QPushButton, "machine-reprobe")
    assert button is view.reprobe_button and button.isVisibleTo(view)
    with qtbot.waitSignal(controller.active_machine_changed, timeout=30_000):
        button.click()
    assert probes == [False, False]
    qtbot.waitUntil(lambda: button.isEnabled())
