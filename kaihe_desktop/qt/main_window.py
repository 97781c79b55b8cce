"""The first window: this machine, its tier, and the models already installed.

Everything it shows comes from kaihe_desktop.core through workers; the window itself only renders data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QLabel,
    QListWidget,
    QMainWindow,
    QVBoxLayout,
    QWidget,
)

from kaihe_desktop.core.library import LibraryEntry
from kaihe_desktop.core.machine.spec import Machine
from kaihe_desktop.core.machine.tiers import TierInfo
from kaihe_desktop.core.units import format_bytes
from kaihe_desktop.qt.workers import submit


@dataclass(frozen=True)
class MachineSummary:
    machine: Machine
    tier: TierInfo


class MainWindow(QMainWindow):
    machine_shown = Signal()
    library_shown = Signal()

    def __init__(
        self,
        *,
        load_machine: Callable[[], MachineSummary],
        load_library: Callable[[], tuple[LibraryEntry, ...]],
    ) -> None:
        super().__init__()
        self.setWindowTitle("KAIHE Desktop")
        self.resize(720, 480)
        self._load_machine = load_machine
        self._load_library = load_library

        central = QWidget(self)
        layout = QVBoxLayout(central)

        machine_box = QGroupBox("This machine", central)
        form = QFormLayout(machine_box)
        self.tier_label = QLabel("Detecting…", machine_box)
        self.tier_label.setObjectName("tier")
        self.tier_label.setStyleSheet("font-size: 16pt; font-weight: bold;")
        self.unlocks_label = QLabel("", machine_box)
        self.unlocks_label.setWordWrap(True)
        self.next_label = QLabel("", machine_box)
        self.next_label.setWordWrap(True)
        self.ram_label = QLabel("", machine_box)
        self.cpu_label = QLabel("", machine_box)
        self.gpu_label = QLabel("", machine_box)
        self.gpu_label.setWordWrap(True)
        form.addRow("Tier", self.tier_label)
        form.addRow("Runs well", self.unlocks_label)
        form.addRow("Next tier", self.next_label)
        form.addRow("Memory", self.ram_label)
        form.addRow("CPU", self.cpu_label)
        form.addRow("GPU", self.gpu_label)
        layout.addWidget(machine_box)

        library_box = QGroupBox("Installed models", central)
        library_layout = QVBoxLayout(library_box)
        self.library_list = QListWidget(library_box)
        library_layout.addWidget(self.library_list)
        layout.addWidget(library_box)

        self.status_label = QLabel("", central)
        self.status_label.setAlignment(Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.status_label)
        self.setCentralWidget(central)

    def refresh(self) -> None:
        """Start the probe and the library read on worker threads."""
        submit(self._load_machine, on_done=self.show_machine, on_error=self.show_error)
        submit(self._load_library, on_done=self.show_library, on_error=self.show_error)

    def show_machine(self, summary: MachineSummary) -> None:
        machine, tier = summary.machine, summary.tier
        self.tier_label.setText(f"{tier.tier.value.capitalize()} ({format_bytes(tier.usable_bytes)} usable)")
        self.unlocks_label.setText(tier.unlocks)
        self.next_label.setText(tier.next_tier_adds or "This is the top tier.")
        self.ram_label.setText(
            f"{format_bytes(machine.ram.total_bytes)} RAM, {format_bytes(machine.ram.available_bytes)} free"
        )
        self.cpu_label.setText(f"{machine.cpu.brand} ({machine.cpu.cores_physical} cores)")
        if machine.gpus:
            self.gpu_label.setText(
                "; ".join(f"{g.name}: {format_bytes(g.memory_total_bytes)}" for g in machine.gpus)
            )
        else:
            why = "; ".join(n.message for n in machine.notes if n.component.startswith("gpu"))
            self.gpu_label.setText(f"none detected{f' ({why})' if why else ''}")
        self.machine_shown.emit()

    def show_library(self, entries: tuple[LibraryEntry, ...]) -> None:
        self.library_list.clear()
        for entry in entries:
            self.library_list.addItem(
                f"{entry.name}  ·  {entry.quant or '?'}  ·  {format_bytes(entry.size_bytes)}"
            )
        if not entries:
            self.library_list.addItem("No models yet: `kaihe recommend` suggests one that fits this machine.")
        self.library_shown.emit()

    def show_error(self, message: str) -> None:
        self.status_label.setText(message)
