"""This machine: its tier, memory in use, what the next tier adds, the hardware, what was not detected.

The profile selector at the top acts as another machine (a shipped profile or a saved profile file):
the controller re-reads it off the GUI thread and every view connected to `active_machine_changed`
re-evaluates its badges, picks and warnings.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from kaihe_desktop.core.machine.spec import GpuInfo, Machine
from kaihe_desktop.qt import format as fmt
from kaihe_desktop.qt.controllers.machine import MachineController
from kaihe_desktop.qt.widgets.usage_bar import UsageBar
from kaihe_desktop.services import MachineSummary, ProfileChoice

# The one hard-coded colour: a badge accent that reads in light and dark palettes (white on mid teal).
BADGE_STYLE = "QLabel { background: #1f7a70; color: white; border-radius: 6px; padding: 4px 12px; }"
THIS_COMPUTER = "This computer"
THIS_COMPUTER_DATA = ""  # the combo's item data for this computer (a profile key is never empty)
POOL_GAP = 8  # pixels between one memory pool and the next
PROFILE_FILTER = "Machine profiles (*.json);;All files (*)"


def _value_label(parent: QWidget, name: str, text: str = "") -> QLabel:
    label = QLabel(text, parent)
    label.setObjectName(name)
    label.setAccessibleName(name.replace("-", " "))
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    return label


def _form(box: QWidget) -> QFormLayout:
    form = QFormLayout(box)
    form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
    form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
    return form


def _add_row(form: QFormLayout, title: str, value: QWidget) -> None:
    label = QLabel(title, form.parentWidget())
    label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
    form.addRow(label, value)


def _clear(layout: QGridLayout | QVBoxLayout | QFormLayout) -> None:
    while layout.count():
        item = layout.takeAt(0)
        widget = item.widget() if item is not None else None
        if widget is not None:
            _discard(widget)


def _discard(widget: QWidget) -> None:
    """Hidden now, deleted later; nameless at once, so findChild finds its successor only."""
    widget.setObjectName("")
    widget.hide()
    widget.deleteLater()


def _swatch(color: QColor, *, hollow: bool = False) -> str:
    return f'<span style="color:{color.name()}">{"□" if hollow else "■"}</span>'


class MachineView(QWidget):
    def __init__(self, controller: MachineController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("page-machine")
        self._controller = controller
        self._model_ram_bytes = 0
        self._model_gpu_bytes: tuple[int, ...] = ()
        self._populating = False

        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget(scroll)
        scroll.setWidget(body)
        self.scroll_area = scroll
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(16, 16, 16, 16)
        layout.setSpacing(12)

        # --- heading and the profile selector ---------------------------------------------------------
        top = QHBoxLayout()
        heading = QLabel("This machine", body)
        font = QFont(heading.font())
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        heading.setFont(font)
        layout.addWidget(heading)
        act_as = QLabel("&Act as", body)
        self.profile_combo = QComboBox(body)
        self.profile_combo.setObjectName("machine-profile")
        self.profile_combo.setAccessibleName("act as another machine")
        self.profile_combo.setToolTip(
            "Evaluate every fit badge, pick and warning for another machine, e.g. before buying one"
        )
        self.profile_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.profile_combo.setMinimumContentsLength(16)
        act_as.setBuddy(self.profile_combo)
        self.open_button = QPushButton("&Open profile file…", body)
        self.open_button.setObjectName("machine-open-profile")
        self.open_button.setAccessibleName("open a machine profile file")
        self.open_button.setToolTip("A profile saved with `kaihe hardware --save-profile FILE`")
        self.reprobe_button = QPushButton("&Probe again", body)
        self.reprobe_button.setObjectName("machine-reprobe")
        self.reprobe_button.setAccessibleName("probe this computer again")
        self.reprobe_button.setToolTip("Read this computer's memory, GPUs and free disk again")
        self.reprobe_button.hide()
        top.addWidget(act_as)
        top.addWidget(self.profile_combo)
        top.addWidget(self.open_button)
        top.addWidget(self.reprobe_button)
        top.addStretch(1)
        layout.addLayout(top)

        self.profile_label = _value_label(body, "machine-acting-as")
        self.profile_label.hide()
        layout.addWidget(self.profile_label)
        self.status_label = _value_label(body, "machine-status")
        layout.addWidget(self.status_label)

        # --- the tier card ------------------------------------------------------------------------------
        card = QFrame(body)
        card.setObjectName("tier-card")
        card.setFrameShape(QFrame.Shape.StyledPanel)
        card_layout = QVBoxLayout(card)
        card_layout.setContentsMargins(12, 12, 12, 12)
        tier_row = QHBoxLayout()
        self.tier_badge = QLabel("Detecting…", card)
        self.tier_badge.setObjectName("tier-badge")
        self.tier_badge.setAccessibleName("tier")
        badge_font = QFont(self.tier_badge.font())
        badge_font.setPointSizeF(badge_font.pointSizeF() * 1.3)
        badge_font.setBold(True)
        self.tier_badge.setFont(badge_font)
        self.tier_badge.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.usable_label = _value_label(card, "tier-usable")
        usable_font = QFont(self.usable_label.font())
        usable_font.setBold(True)
        self.usable_label.setFont(usable_font)
        tier_row.addWidget(self.tier_badge, 0, Qt.AlignmentFlag.AlignTop)
        tier_row.addWidget(self.usable_label, 1)
        card_layout.addLayout(tier_row)
        self.rule_label = _value_label(card, "tier-rule")
        card_layout.addWidget(self.rule_label)
        self.unlocks_label = _value_label(card, "tier-unlocks")
        card_layout.addWidget(self.unlocks_label)
        layout.addWidget(card)

        # --- memory in use --------------------------------------------------------------------------------
        memory_box = QGroupBox("Memory in use", body)
        memory_box.setObjectName("memory-box")
        self._memory_box = memory_box
        self.memory_grid = QGridLayout(memory_box)
        self.memory_grid.setColumnStretch(1, 1)
        self.memory_grid.setHorizontalSpacing(12)
        self.memory_grid.setVerticalSpacing(2)
        self.ram_bar = UsageBar("ram-bar", memory_box)
        self.ram_legend = _value_label(memory_box, "ram-legend")
        self.gpu_bars: list[UsageBar] = []
        self.gpu_legends: list[QLabel] = []
        self._memory_widgets: list[QWidget] = []
        self.memory_note = _value_label(memory_box, "memory-note")
        layout.addWidget(memory_box)

        # --- the next tier --------------------------------------------------------------------------------
        upgrade_box = QGroupBox("The next tier", body)
        upgrade_box.setObjectName("upgrade-box")
        upgrade_form = _form(upgrade_box)
        self.next_label = _value_label(upgrade_box, "tier-next")
        self.next_unlocks_label = _value_label(upgrade_box, "upgrade-unlocks")
        self.needed_label = _value_label(upgrade_box, "upgrade-needed")
        _add_row(upgrade_form, "Next tier", self.next_label)
        _add_row(upgrade_form, "Unlocks", self.next_unlocks_label)
        _add_row(upgrade_form, "Memory needed", self.needed_label)
        self._upgrade_form = upgrade_form
        layout.addWidget(upgrade_box)

        # --- the hardware ---------------------------------------------------------------------------------
        hw_box = QGroupBox("Hardware", body)
        hw_box.setObjectName("hardware-box")
        self.hw_form = _form(hw_box)
        self.cpu_label = _value_label(hw_box, "machine-cpu")
        self.isa_label = _value_label(hw_box, "machine-instruction-sets")
        self.bandwidth_label = _value_label(hw_box, "machine-bandwidth")
        self.ram_label = _value_label(hw_box, "machine-ram")
        self.swap_label = _value_label(hw_box, "machine-swap")
        self.gpu_label = _value_label(hw_box, "machine-gpu")
        self.offload_label = _value_label(hw_box, "machine-offload")
        self.disk_label = _value_label(hw_box, "machine-disk")
        self.os_label = _value_label(hw_box, "machine-os")
        for title, value in (
            ("CPU", self.cpu_label),
            ("Instruction sets", self.isa_label),
            ("RAM bandwidth", self.bandwidth_label),
            ("Memory", self.ram_label),
            ("Swap", self.swap_label),
            ("GPU", self.gpu_label),
            ("GPU offload", self.offload_label),
            ("Disk", self.disk_label),
            ("System", self.os_label),
        ):
            _add_row(self.hw_form, title, value)
        layout.addWidget(hw_box)

        # --- what could not be detected -------------------------------------------------------------------
        notes_box = QGroupBox("Not detected", body)
        notes_box.setObjectName("notes-box")
        self._notes_box = notes_box
        self.notes_layout = QVBoxLayout(notes_box)
        self.notes_layout.setSpacing(4)
        self.note_labels: list[QLabel] = []
        layout.addWidget(notes_box)
        layout.addStretch(1)

        self._boxes: tuple[QWidget, ...] = (card, memory_box, upgrade_box, hw_box, notes_box)
        for box in self._boxes:
            box.hide()  # until there is something to put in them
        self.status_label.setText("Reading the memory, CPU, GPUs and the llama.cpp build…")

        self._fill_choices(controller.choices)
        self.profile_combo.currentIndexChanged.connect(self._on_combo_changed)
        self.open_button.clicked.connect(self.choose_profile_file)
        self.reprobe_button.clicked.connect(controller.refresh)
        controller.loaded.connect(self.show_summary)
        controller.failed.connect(self.show_failure)
        controller.profiles_changed.connect(self._fill_choices)
        controller.loading_changed.connect(self._show_loading)
        controller.refresh_profiles()
        if controller.summary is not None:
            self.show_summary(controller.summary)

    # --- the profile selector -------------------------------------------------------------------------

    def _fill_choices(self, choices: tuple[ProfileChoice, ...]) -> None:
        """This computer, the shipped profiles, the saved files; the active (or wanted) one selected."""
        combo = self.profile_combo
        self._populating = True
        try:
            combo.clear()
            combo.addItem(THIS_COMPUTER, THIS_COMPUTER_DATA)
            combo.setItemData(
                0, "Probe this computer (RAM, CPU, GPUs, RAM bandwidth)", Qt.ItemDataRole.ToolTipRole
            )
            shipped = [c for c in choices if c.shipped]
            files = [c for c in choices if not c.shipped]
            for group in (shipped, files):
                if group:
                    combo.insertSeparator(combo.count())
                for choice in group:
                    self._add_choice(choice)
            current = self._controller.wanted
            if current and combo.findData(current) < 0:
                name = current if "/" not in current and "\\" not in current else Path(current).name
                self._add_choice(ProfileChoice(current, name, shipped="/" not in current))
            self._select_in_combo(current)
        finally:
            self._populating = False

    def _add_choice(self, choice: ProfileChoice) -> None:
        combo = self.profile_combo
        where = choice.key if choice.shipped else Path(choice.key).name
        text = choice.label if choice.label == where else f"{choice.label} ({where})"
        combo.addItem(text, choice.key)
        combo.setItemData(combo.count() - 1, choice.key, Qt.ItemDataRole.ToolTipRole)

    def _select_in_combo(self, profile: str | None) -> None:
        index = self.profile_combo.findData(profile or THIS_COMPUTER_DATA)
        if index >= 0 and index != self.profile_combo.currentIndex():
            was = self._populating
            self._populating = True
            self.profile_combo.setCurrentIndex(index)
            self._populating = was

    def _on_combo_changed(self, index: int) -> None:
        if self._populating or index < 0:
            return
        key = self.profile_combo.itemData(index)
        self._controller.select(key or None)

    def select_profile(self, profile: str | None) -> None:
        """Act as ``profile`` (None: this computer), as picking it in the selector does."""
        index = self.profile_combo.findData(profile or THIS_COMPUTER_DATA)
        if index >= 0:
            self.profile_combo.setCurrentIndex(index)
        else:
            self._controller.select(profile)

    def choose_profile_file(self) -> None:
        path, _filter = QFileDialog.getOpenFileName(self, "Open a machine profile", "", PROFILE_FILTER)
        if path:
            self.open_profile_file(path)

    def open_profile_file(self, path: str) -> None:
        """Act as the machine a profile file describes (the file dialog's slot)."""
        self._controller.open_file(path)
        self._fill_choices(self._controller.choices)

    def _show_loading(self, loading: bool) -> None:
        self.reprobe_button.setEnabled(not loading)
        if loading:
            wanted = self._controller.wanted
            self.status_label.setText(
                "Probing this computer: memory, CPU, GPUs, RAM bandwidth and the llama.cpp build…"
                if wanted is None
                else f"Reading the profile {wanted}…"
            )
            self.status_label.show()
        else:
            self.status_label.hide()

    # --- the machine ----------------------------------------------------------------------------------

    def show_failure(self, exc: BaseException) -> None:
        self._select_in_combo(self._controller.wanted)
        if self._controller.summary is not None:
            return  # still acting as the last machine that could be read; the banner says why not this one
        self.tier_badge.setStyleSheet("")
        self.tier_badge.setText("Not known")
        self.usable_label.setText("")
        self.rule_label.setText("The machine could not be read; the message above says why.")
        self._boxes[0].show()
        for box in self._boxes[1:]:
            box.hide()

    def show_summary(self, summary: MachineSummary) -> None:
        machine, tier = summary.machine, summary.tier
        self._select_in_combo(summary.profile)
        for box in self._boxes:
            box.show()
        if summary.profile:
            name = f" ({machine.name})" if machine.name else ""
            self.profile_label.setText(
                f"Acting as the profile {summary.profile}{name}: every fit badge, pick and warning in the "
                "app is for that machine, not this computer."
            )
            self.profile_label.show()
        else:
            self.profile_label.hide()
        self.reprobe_button.setVisible(summary.profile is None)
        self.tier_badge.setStyleSheet(BADGE_STYLE)
        self.tier_badge.setText(tier.tier.label)
        self.usable_label.setText(f"{fmt.bytes_text(tier.usable_bytes)} a model can use")
        self.rule_label.setText(tier.rule[:1].upper() + tier.rule[1:])
        self.unlocks_label.setText(f"Runs well: {tier.unlocks}")
        self._show_memory(machine, this_computer=summary.profile is None)
        self._show_upgrade(summary)
        self._show_hardware(machine, this_computer=summary.profile is None)
        self._show_notes(machine, this_computer=summary.profile is None)

    def set_model_memory(self, ram_bytes: int, gpu_bytes: tuple[int, ...] = ()) -> None:
        """What a loaded model holds in RAM and on each GPU: the bars' third segment."""
        self._model_ram_bytes, self._model_gpu_bytes = ram_bytes, gpu_bytes
        summary = self._controller.summary
        if summary is not None:
            self._show_memory(summary.machine, this_computer=summary.profile is None)

    def _show_memory(self, machine: Machine, *, this_computer: bool) -> None:
        grid = self.memory_grid
        box = self._memory_box
        for widget in self._memory_widgets:
            grid.removeWidget(widget)
            _discard(widget)
        self._memory_widgets = []
        self.gpu_bars, self.gpu_legends = [], []
        ram = machine.ram
        self.ram_bar.set_usage(
            total_bytes=ram.total_bytes,
            free_bytes=ram.available_bytes,
            model_bytes=self._model_ram_bytes if this_computer else 0,
        )
        self._memory_row(0, "RAM", self.ram_bar, self.ram_legend)
        for n, gpu in enumerate(machine.gpus):
            bar = UsageBar(f"gpu-bar-{n}", box)
            legend = _value_label(box, f"gpu-legend-{n}")
            model = self._model_gpu_bytes[n] if this_computer and n < len(self._model_gpu_bytes) else 0
            bar.set_usage(
                total_bytes=gpu.memory_total_bytes, free_bytes=gpu.memory_free_bytes, model_bytes=model
            )
            self.gpu_bars.append(bar)
            self.gpu_legends.append(legend)
            self._memory_widgets += [bar, legend]
            self._memory_row(3 * (n + 1), self._gpu_title(gpu, n, len(machine.gpus)), bar, legend)
        notes = []
        if any(g.unified for g in machine.gpus):
            notes.append("Unified GPU memory is part of RAM: its bar shows the share the GPU may use.")
        if not this_computer:
            notes.append("These are the profile's readings from when it was saved.")
        self.memory_note.setText(" ".join(notes))
        self.memory_note.setVisible(bool(notes))
        grid.addWidget(self.memory_note, 3 * (len(machine.gpus) + 1), 0, 1, 2)

    def _memory_row(self, row: int, title: str, bar: UsageBar, legend: QLabel) -> None:
        grid = self.memory_grid
        title_label = QLabel(title, self._memory_box)
        title_label.setObjectName(f"{bar.objectName()}-title")
        self._memory_widgets.append(title_label)
        grid.addWidget(title_label, row, 0, Qt.AlignmentFlag.AlignVCenter)
        grid.addWidget(bar, row, 1)
        other, model, _free = bar.segment_colors()
        held = (
            f"{_swatch(model)} {fmt.bytes_text(bar.model_bytes)} held by the loaded model"
            if bar.model_bytes
            else "no model loaded"
        )
        mid = bar.palette().color(QPalette.ColorRole.Mid)
        legend.setTextFormat(Qt.TextFormat.RichText)
        legend.setText(
            f"{_swatch(other)} {fmt.bytes_text(bar.other_bytes)} used by other programs &nbsp;·&nbsp; "
            f"{held} &nbsp;·&nbsp; {_swatch(mid, hollow=True)} {fmt.bytes_text(bar.free_bytes)} free"
            f" &nbsp;·&nbsp; {fmt.bytes_text(bar.total_bytes)} in all"
        )
        legend.setAccessibleDescription(bar.description())
        grid.addWidget(legend, row + 1, 1)
        grid.setRowMinimumHeight(row + 2, POOL_GAP)
        for widget in (title_label, bar, legend):
            widget.show()

    @staticmethod
    def _gpu_title(gpu: GpuInfo, n: int, count: int) -> str:
        short = gpu.name.removeprefix("NVIDIA ").removeprefix("GeForce ")
        return f"GPU {n + 1}: {short}" if count > 1 else f"GPU: {short}"

    def _show_upgrade(self, summary: MachineSummary) -> None:
        upgrade = self._controller.upgrade()
        tier = summary.tier
        rows_visible = upgrade is not None
        for label in (self.next_unlocks_label, self.needed_label):
            self._upgrade_form.setRowVisible(label, rows_visible)
        if upgrade is None:
            self.next_label.setText(f"{tier.tier.label} is the top tier: nothing above it to unlock.")
            return
        self.next_label.setText(f"{upgrade.label} ({upgrade.range_text})")
        self.next_unlocks_label.setText(upgrade.unlocks[:1].upper() + upgrade.unlocks[1:])
        self.needed_label.setText(
            f"{fmt.bytes_text(upgrade.missing_bytes)} more memory a model can use "
            f"(has {fmt.bytes_text(tier.usable_bytes)}); "
            f"{fmt.bytes_text(upgrade.needed_bytes)} with the {fmt.bytes_text(upgrade.margin_bytes)} "
            "safety margin llama.cpp keeps free"
        )

    def _show_hardware(self, machine: Machine, *, this_computer: bool) -> None:
        ram, cpu = machine.ram, machine.cpu
        self.cpu_label.setText(fmt.cpu_text(cpu).split(";")[0])
        self.isa_label.setText(fmt.instruction_sets_text(cpu))
        self.isa_label.setToolTip(
            "llama.cpp picks its CPU kernels by these: " + (", ".join(cpu.features) or "none")
        )
        self.bandwidth_label.setText(fmt.bandwidth_text(ram.bandwidth_gbps, measured=this_computer))
        self.ram_label.setText(fmt.ram_text(ram).split(";")[0])
        self.swap_label.setText(fmt.swap_text(ram))
        gpus = "\n".join(fmt.gpu_text(g) + self._gpu_extra(g) for g in machine.gpus)
        self.gpu_label.setText(gpus or fmt.no_gpu_text(machine))
        self.offload_label.setText(fmt.offload_text(machine))
        self.disk_label.setText(fmt.disk_text(machine.disk))
        self.os_label.setText(machine.os or "unknown")

    @staticmethod
    def _gpu_extra(gpu: GpuInfo) -> str:
        parts = [
            f"compute {gpu.compute_capability}" if gpu.compute_capability else "",
            f"driver {gpu.driver}" if gpu.driver else "",
        ]
        shown = "; ".join(p for p in parts if p)
        return f"; {shown}" if shown else ""

    def _show_notes(self, machine: Machine, *, this_computer: bool) -> None:
        _clear(self.notes_layout)
        self.note_labels = []
        notes = machine.notes
        self._notes_box.setTitle(
            "Not detected" if this_computer else "Not detected when the profile was saved"
        )
        if not notes:
            text = "Everything was detected." if this_computer else "The profile records nothing undetected."
            label = _value_label(self._notes_box, "note-none", text)
            label.setWordWrap(False)  # one short line; a wrapping label alone makes the box too tall
            self.notes_layout.addWidget(label)
            self.note_labels.append(label)
            return
        for n, note in enumerate(notes):
            label = _value_label(self._notes_box, f"note-{n}")
            label.setTextFormat(Qt.TextFormat.RichText)
            message = note.message.removeprefix("not detected: ")
            label.setText(f"<b>{_escape(note.component)}</b>: {_escape(message)}")
            label.setAccessibleDescription(f"{note.component}: {message}")
            self.notes_layout.addWidget(label)
            self.note_labels.append(label)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
