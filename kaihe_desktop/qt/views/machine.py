"""This machine: its tier, what the tier runs, what the next tier adds, and the hardware behind it."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from kaihe_desktop.qt import format as fmt
from kaihe_desktop.qt.controllers.machine import MachineController
from kaihe_desktop.services import MachineSummary

# The one hard-coded colour: a badge accent that reads in light and dark palettes (white on mid teal).
BADGE_STYLE = "QLabel { background: #1f7a70; color: white; border-radius: 6px; padding: 4px 12px; }"


def _value_label(parent: QWidget, name: str) -> QLabel:
    label = QLabel("", parent)
    label.setObjectName(name)
    label.setAccessibleName(name.replace("-", " "))
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    return label


def _labels_on_top(form: QFormLayout) -> None:
    """Row labels stay level with the first line of a value that wraps."""
    for row in range(form.rowCount()):
        item = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
        label = item.widget() if item is not None else None
        if isinstance(label, QLabel):
            label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
            label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)


class MachineView(QWidget):
    def __init__(self, controller: MachineController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("page-machine")
        self._controller = controller

        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        body = QWidget(scroll)
        scroll.setWidget(body)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(16, 16, 16, 16)
        layout.setSpacing(12)

        heading = QLabel("This machine", body)
        font = QFont(heading.font())
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        heading.setFont(font)
        layout.addWidget(heading)

        self.profile_label = _value_label(body, "machine-acting-as")
        self.profile_label.hide()
        layout.addWidget(self.profile_label)

        tier_row = QHBoxLayout()
        self.tier_badge = QLabel("Detecting…", body)
        self.tier_badge.setObjectName("tier-badge")
        self.tier_badge.setAccessibleName("tier")
        badge_font = QFont(self.tier_badge.font())
        badge_font.setPointSizeF(badge_font.pointSizeF() * 1.3)
        badge_font.setBold(True)
        self.tier_badge.setFont(badge_font)
        self.tier_badge.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.usable_label = _value_label(body, "tier-usable")
        tier_row.addWidget(self.tier_badge)
        tier_row.addWidget(self.usable_label, 1)
        layout.addLayout(tier_row)
        self.rule_label = _value_label(body, "tier-rule")
        layout.addWidget(self.rule_label)

        tier_box = QGroupBox("What this machine runs", body)
        tier_form = QFormLayout(tier_box)
        tier_form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.unlocks_label = _value_label(tier_box, "tier-unlocks")
        self.next_label = _value_label(tier_box, "tier-next")
        tier_form.addRow("Runs well", self.unlocks_label)
        tier_form.addRow("Next tier", self.next_label)
        layout.addWidget(tier_box)

        hw_box = QGroupBox("Hardware", body)
        self.hw_form = QFormLayout(hw_box)
        self.hw_form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.ram_label = _value_label(hw_box, "machine-ram")
        self.swap_label = _value_label(hw_box, "machine-swap")
        self.cpu_label = _value_label(hw_box, "machine-cpu")
        self.gpu_label = _value_label(hw_box, "machine-gpu")
        self.offload_label = _value_label(hw_box, "machine-offload")
        self.disk_label = _value_label(hw_box, "machine-disk")
        self.hw_form.addRow("Memory", self.ram_label)
        self.hw_form.addRow("Swap", self.swap_label)
        self.hw_form.addRow("CPU", self.cpu_label)
        self.hw_form.addRow("GPU", self.gpu_label)
        self.hw_form.addRow("GPU offload", self.offload_label)
        self.hw_form.addRow("Disk", self.disk_label)
        layout.addWidget(hw_box)
        layout.addStretch(1)
        for form in (tier_form, self.hw_form):
            _labels_on_top(form)
        self._boxes = (tier_box, hw_box)
        for box in self._boxes:
            box.hide()  # until there is something to put in them
        self.rule_label.setText("Reading the memory, CPU, GPUs and the llama.cpp build…")

        controller.loaded.connect(self.show_summary)
        controller.failed.connect(self.show_failure)
        if controller.summary is not None:
            self.show_summary(controller.summary)

    def show_failure(self, exc: BaseException) -> None:
        self.tier_badge.setStyleSheet("")
        self.tier_badge.setText("Not known")
        self.usable_label.setText("")
        self.rule_label.setText("The machine could not be read; the message above says why.")
        for box in self._boxes:
            box.hide()

    def show_summary(self, summary: MachineSummary) -> None:
        machine, tier = summary.machine, summary.tier
        for box in self._boxes:
            box.show()
        if summary.profile:
            self.profile_label.setText(
                f"Acting as the profile {summary.profile}" + (f": {machine.name}" if machine.name else "")
            )
            self.profile_label.show()
        else:
            self.profile_label.hide()
        self.tier_badge.setStyleSheet(BADGE_STYLE)
        self.tier_badge.setText(tier.tier.label)
        self.usable_label.setText(f"{fmt.bytes_text(tier.usable_bytes)} a model can use")
        self.rule_label.setText(tier.rule)
        self.unlocks_label.setText(tier.unlocks[:1].upper() + tier.unlocks[1:])
        self.next_label.setText(tier.next_tier_adds or "This is the top tier.")
        self.ram_label.setText(fmt.ram_text(machine.ram))
        self.swap_label.setText(fmt.swap_text(machine.ram))
        self.cpu_label.setText(fmt.cpu_text(machine.cpu))
        gpus = "\n".join(fmt.gpu_text(g) for g in machine.gpus)
        self.gpu_label.setText(gpus or fmt.no_gpu_text(machine))
        self.offload_label.setText(fmt.offload_text(machine))
        self.disk_label.setText(fmt.disk_text(machine.disk))
