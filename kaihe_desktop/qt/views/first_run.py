"""The welcome page of a first start: the machine card and one button, Get the recommended model.

The card says the tier, RAM, CPU, GPU, what the tier runs and what the next tier adds. Under it the core's
first-run pick is named (model, quant, size, why) with the one button that downloads it; the download's
progress shows here. When the Hub cannot be reached and the starter model is installed, the starter is
offered instead, so the app is useful offline from the first minute.
"""

from __future__ import annotations

import re

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from kaihe_desktop.core.hub.recommend import RecommendationSet
from kaihe_desktop.core.library import LibraryEntry
from kaihe_desktop.qt import format as fmt
from kaihe_desktop.qt.controllers.first_run import FirstRunController
from kaihe_desktop.qt.controllers.machine import MachineController
from kaihe_desktop.qt.models.downloads import DownloadRow, DownloadState
from kaihe_desktop.qt.views.machine import BADGE_STYLE
from kaihe_desktop.services import MachineSummary

GET_TEXT = "Get the recommended model"
STARTER_TEXT = "Use the starter model"


def _label(parent: QWidget, name: str, text: str = "", *, bold: bool = False) -> QLabel:
    label = QLabel(text, parent)
    label.setObjectName(name)
    label.setAccessibleName(name.replace("-", " "))
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    policy.setHeightForWidth(True)  # what setWordWrap set: a new policy would drop it (and pad the label)
    label.setSizePolicy(policy)
    if bold:
        font = QFont(label.font())
        font.setBold(True)
        label.setFont(font)
    return label


def _card(parent: QWidget, name: str) -> tuple[QFrame, QVBoxLayout]:
    card = QFrame(parent)
    card.setObjectName(name)
    card.setFrameShape(QFrame.Shape.StyledPanel)
    layout = QVBoxLayout(card)
    layout.setContentsMargins(12, 12, 12, 12)
    layout.setSpacing(6)
    return card, layout


class FirstRunView(QWidget):
    def __init__(
        self, controller: FirstRunController, machine: MachineController, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("page-first-run")
        self.controller = controller
        self._controller = controller
        self._machine = machine

        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget(scroll)
        scroll.setWidget(body)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(24, 20, 24, 20)
        layout.setSpacing(12)

        heading = QLabel("Welcome to KAIHE Desktop", body)
        heading.setObjectName("first-run-heading")
        font = QFont(heading.font())
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        heading.setFont(font)
        layout.addWidget(heading)
        intro = _label(
            body,
            "first-run-intro",
            "Open-weight language models, run on this computer, offline. This is what it can run, and the "
            "model to start with.",
        )
        layout.addWidget(intro)

        # --- the machine card ------------------------------------------------------------------------
        card, card_layout = _card(body, "first-run-machine")
        tier_row = QHBoxLayout()
        self.tier_badge = QLabel("Detecting…", card)
        self.tier_badge.setObjectName("first-run-tier")
        self.tier_badge.setAccessibleName("tier")
        badge_font = QFont(self.tier_badge.font())
        badge_font.setPointSizeF(badge_font.pointSizeF() * 1.2)
        badge_font.setBold(True)
        self.tier_badge.setFont(badge_font)
        self.tier_badge.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.usable_label = _label(card, "first-run-usable", bold=True)
        tier_row.addWidget(self.tier_badge, 0, Qt.AlignmentFlag.AlignTop)
        tier_row.addWidget(self.usable_label, 1)
        card_layout.addLayout(tier_row)
        self.ram_label = _label(card, "first-run-ram")
        self.cpu_label = _label(card, "first-run-cpu")
        self.gpu_label = _label(card, "first-run-gpu")
        self.runs_label = _label(card, "first-run-runs")
        self.next_label = _label(card, "first-run-next")
        for label in (self.ram_label, self.cpu_label, self.gpu_label, self.runs_label, self.next_label):
            card_layout.addWidget(label)
        layout.addWidget(card)

        # --- the pick and the one button -------------------------------------------------------------
        pick, pick_layout = _card(body, "first-run-pick")
        title = _label(pick, "first-run-pick-title", "The model to start with", bold=True)
        pick_layout.addWidget(title)
        self.pick_label = _label(pick, "first-run-pick-model", "Choosing the best model for this machine…")
        self.why_label = _label(pick, "first-run-pick-why")
        self.why_label.hide()
        self.notice_label = _label(pick, "first-run-notice")
        self.notice_label.hide()
        pick_layout.addWidget(self.pick_label)
        pick_layout.addWidget(self.why_label)
        pick_layout.addWidget(self.notice_label)
        buttons = QHBoxLayout()
        self.get_button = QPushButton(GET_TEXT, pick)
        self.get_button.setObjectName("first-run-get-recommended")
        self.get_button.setAccessibleName("get the recommended model")
        self.get_button.setDefault(True)
        self.get_button.setEnabled(False)
        self.starter_button = QPushButton(STARTER_TEXT, pick)
        self.starter_button.setObjectName("first-run-use-starter")
        self.starter_button.setAccessibleName("use the starter model")
        self.starter_button.hide()
        buttons.addWidget(self.get_button)
        buttons.addWidget(self.starter_button)
        buttons.addStretch(1)
        pick_layout.addLayout(buttons)
        self.progress = QProgressBar(pick)
        self.progress.setObjectName("first-run-progress")
        self.progress.setAccessibleName("download progress")
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.hide()
        pick_layout.addWidget(self.progress)
        self.status_label = _label(pick, "first-run-status")
        self.status_label.hide()
        pick_layout.addWidget(self.status_label)
        layout.addWidget(pick)

        self.starter_label = _label(body, "first-run-starter")
        self.starter_label.hide()
        layout.addWidget(self.starter_label)
        layout.addStretch(1)

        self.get_button.clicked.connect(self._get)
        self.starter_button.clicked.connect(controller.use_starter)
        machine.loaded.connect(self.show_machine)
        machine.failed.connect(self._machine_failed)
        controller.pick_ready.connect(self.show_pick)
        controller.pick_failed.connect(self._pick_failed)
        controller.starter_ready.connect(self._show_starter)
        controller.download_changed.connect(self.show_download)
        controller.finished.connect(self._finished)
        if machine.summary is not None:
            self.show_machine(machine.summary)

    # --- the machine -----------------------------------------------------------------------------------

    def show_machine(self, summary: MachineSummary) -> None:
        machine, tier = summary.machine, summary.tier
        self.tier_badge.setStyleSheet(BADGE_STYLE)
        self.tier_badge.setText(tier.tier.label)
        self.usable_label.setText(f"{fmt.bytes_text(tier.usable_bytes)} a model can use")
        self.ram_label.setText(f"RAM: {fmt.ram_text(machine.ram).split(';')[0]}")
        self.cpu_label.setText(f"CPU: {fmt.cpu_text(machine.cpu).split(';')[0]}")
        gpus = "; ".join(fmt.gpu_text(g) for g in machine.gpus)
        self.gpu_label.setText(f"GPU: {gpus or fmt.no_gpu_text(machine)}")
        self.runs_label.setText(f"Runs well: {tier.unlocks}")
        upgrade = self._machine.upgrade()
        if upgrade is None:
            self.next_label.setText(f"{tier.tier.label} is the top tier.")
        else:
            self.next_label.setText(
                f"The next tier, {upgrade.label} ({upgrade.range_text}), adds {upgrade.unlocks}: "
                f"{fmt.bytes_text(upgrade.needed_bytes)} more memory, with the safety margin."
            )
        if self._controller.recommendations is None:
            self.pick_label.setText("Choosing the best model for this machine…")

    def _machine_failed(self, _exc: BaseException) -> None:
        if self._machine.summary is None:
            self.tier_badge.setStyleSheet("")
            self.tier_badge.setText("Not known")
            self.usable_label.setText("The machine could not be read; the message above says why.")

    # --- the pick --------------------------------------------------------------------------------------

    def show_pick(self, found: RecommendationSet) -> None:
        pick = self._controller.pick
        offline = found.offline or found.notice is not None
        starter = self._controller.starter is not None  # offered once it is listed (_show_starter)
        if pick is None:
            self.pick_label.setText("No curated model fits this machine with the safety margin.")
            reason = found.first_run.reason if found.first_run is not None else ""
            self.why_label.setText(reason[:1].upper() + reason[1:])
            self.why_label.setVisible(bool(reason))
            self.get_button.setEnabled(False)
        else:
            size = fmt.bytes_text(pick.size_bytes) if pick.size_bytes else "size unknown"
            self.pick_label.setText(f"<b>{_escape(pick.repo_id or '')}</b> · {pick.quant} · {size}")
            self.pick_label.setTextFormat(Qt.TextFormat.RichText)
            why = pick.reason[:1].upper() + pick.reason[1:]
            self.why_label.setText(f"Why: {why}")
            self.why_label.show()
            self.get_button.setEnabled(self._controller.download_key is None)
            self.get_button.setToolTip(f"Download {pick.repo_id} {pick.quant} ({size})")
            self.get_button.setAccessibleDescription(
                f"downloads {pick.repo_id} {pick.quant}, {size}: {pick.reason}"
            )
        if offline:
            where = (
                "The starter model below works now, without it."
                if starter
                else "The download needs it: try again when this computer is online."
            )
            self.notice_label.setText(f"⚠ The Hub cannot be reached ({_hub_reason(found)}). {where}")
            self.notice_label.setToolTip(found.notice or "")
            self.notice_label.show()
        else:
            self.notice_label.hide()
        # offline, the starter is what the page offers; the download stays for when the Hub is back
        self.get_button.setVisible(not (offline and starter) or pick is None)
        self._update_starter()

    def _pick_failed(self, exc: BaseException) -> None:
        self.pick_label.setText(f"The pick could not be made: {exc}")

    def _get(self) -> None:
        key = self._controller.get_recommended()
        if key is None:
            return
        self.get_button.setEnabled(False)
        self.progress.setValue(0)
        self.progress.setFormat("Starting…")
        self.progress.show()
        self.status_label.setText("Downloading. You can use the rest of the app meanwhile.")
        self.status_label.show()

    def show_download(self, row: DownloadRow) -> None:
        self.progress.show()
        self.status_label.show()
        if row.total_bytes:
            self.progress.setValue(int(row.fraction * 1000))
            self.progress.setFormat(
                f"{fmt.bytes_text(row.done_bytes)} of {fmt.bytes_text(row.total_bytes)} (%p%)"
            )
        if row.state is DownloadState.VERIFYING:
            self.status_label.setText("Verifying the download (sha256)…")
        elif row.state is DownloadState.RUNNING and row.speed_bps > 0:
            eta = f", {fmt.duration(row.eta_s)} left" if row.eta_s is not None else ""
            self.status_label.setText(f"Downloading at {fmt.bytes_text(row.speed_bps)}/s{eta}.")
        elif row.state is DownloadState.DONE:
            self.progress.setValue(1000)
            self.status_label.setText("Verified and in My models.")
        elif row.state is DownloadState.FAILED:
            self.status_label.setText(row.error.text if row.error is not None else "The download failed.")
            self.get_button.setText("Try again")
            self.get_button.setEnabled(True)
        elif row.state is DownloadState.PAUSED:
            self.status_label.setText("Paused: resume it on the Downloads page.")

    def _finished(self, entry: LibraryEntry) -> None:
        self.status_label.setText(f"{entry.name} is chosen for chat.")
        self.status_label.show()

    # --- the starter -----------------------------------------------------------------------------------

    def _show_starter(self, _entry: LibraryEntry) -> None:
        found = self._controller.recommendations
        if found is not None:
            self.show_pick(found)
        self._update_starter()

    def _update_starter(self) -> None:
        entry = self._controller.starter
        if entry is None:
            return
        size = fmt.bytes_text(entry.size_bytes)
        self.starter_label.setText(
            f"The starter model ({entry.name}, Gemma 3 270M {entry.quant or ''}, {size}) is in My models: "
            "a small base model for trying the app, not a chat assistant."
        )
        self.starter_label.show()
        offline = self._controller.hub_unreachable or (
            self._controller.recommendations is not None
            and self._controller.recommendations.notice is not None
        )
        self.starter_button.setVisible(offline or self._controller.pick is None)


def _hub_reason(found: RecommendationSet) -> str:
    """Why the Hub was not asked, from the core's notice ("not checked against the Hub (WHY): …")."""
    notice = found.notice or ""
    match = re.fullmatch(r"not checked against the Hub \((.*)\): sizes and fit are estimates", notice)
    reason = match.group(1) if match else notice or "offline"
    return f"{reason}; sizes and fit are estimates"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
