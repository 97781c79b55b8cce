"""Composition root of the GUI: builds the core services and hands them to the Qt layer."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kaihe_desktop.core.library import LibraryEntry
from kaihe_desktop.core.machine.probe import probe
from kaihe_desktop.core.machine.spec import Machine
from kaihe_desktop.core.machine.tiers import tier_for

if TYPE_CHECKING:
    from kaihe_desktop.qt.main_window import MachineSummary


def machine_summary(profile: Path | None = None) -> MachineSummary:
    """Runs on a worker thread: the probe reads /proc, sysfs, NVML and measures RAM bandwidth."""
    from kaihe_desktop.qt.main_window import MachineSummary

    machine = Machine.load(profile) if profile else probe()
    return MachineSummary(machine=machine, tier=tier_for(machine))


def library_entries() -> tuple[LibraryEntry, ...]:
    from kaihe_desktop.core.library import Library

    return Library().entries()


def run(argv: Sequence[str] | None = None) -> int:
    from PySide6.QtWidgets import QApplication

    from kaihe_desktop.qt.main_window import MainWindow

    args = list(sys.argv if argv is None else argv)
    app = QApplication.instance() or QApplication(args)
    window = MainWindow(load_machine=machine_summary, load_library=library_entries)
    window.show()
    window.refresh()
    return int(app.exec())
